"""Hyperparameter search (`lakerec tune`): an Optuna study over train.* keys declared in a space file.

Each trial is the real training (lakerec.train.runner) on the lake's silver sequences, scored by its best
validation NDCG@10, never the test split. The TPE sampler proposes, a MedianPruner stops a trial whose epoch-k
validation falls below the median of earlier trials at epoch k: rank 0 reports each epoch to the study through
`EpochReporter` and the loop stops every rank when it says so. The study lives in an RDB storage (sqlite in the
lake by default), so rerunning the same search continues it until the budget of finished trials is reached.
The best trial becomes a conf file: the --config/--set layers the search ran with plus the tuned keys.
MLflow stays in jobs/tune.py.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from lakerec.config import Config, ConfigError, deep_merge, nested, packaged_file, with_settings

if TYPE_CHECKING:  # the ranks unpickle EpochReporter from this module: no Horovod driver import for them
    from lakerec.train.runner import TrainResult

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
TUNABLE = "train."  # trials reuse the lake's sequences, so only training settings can vary


class ParamSpec(BaseModel):
    """One searched key: a float or int range (log-uniform with `log`, on a grid with `step`) or choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> "ParamSpec":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical key needs a non-empty choices list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} key needs low < high")
        elif self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log needs low > 0 and no step")
        return self

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(key, self.choices)
        if self.type == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)

    def sample(self) -> Any:
        """A value inside the space (for checking that the key exists and validates)."""
        return self.choices[0] if self.type == "categorical" else (int(self.low) if self.type == "int" else self.low)


def load_space(path: str | Path, cfg: Config) -> dict[str, ParamSpec]:
    """The search space file (key -> spec), checked before any trial: specs well formed, keys under train.,
    and a value of each key validating in the configuration. A relative path not found in the current folder is
    looked up among the files lakerec ships (the default conf/tune/space.yaml, from any folder)."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute():
        path = packaged_file(str(path)) or path
    if not path.is_file():
        raise ConfigError(f"tune.space: search space file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of config keys to {{type, low, high, ...}}")
    space = {}
    for key, spec in raw.items():
        if not str(key).startswith(TUNABLE):
            raise ConfigError(f"{path}: {key}: only {TUNABLE}* keys can be tuned (trials reuse the lake's sequences)")
        try:
            space[key] = ParamSpec.model_validate(spec)
        except ValidationError as e:
            raise ConfigError(f"{path}: {key}: {'; '.join(err['msg'] for err in e.errors())}") from None
    with_settings(cfg, nested({k: s.sample() for k, s in space.items()}))  # an unknown key fails here
    return space


def study_name(space: dict[str, ParamSpec], layers: dict) -> str:
    """The default study name: the same space over the same --config/--set layers is the same study."""
    key = json.dumps({"space": {k: s.model_dump() for k, s in space.items()},
                      "layers": {k: v for k, v in layers.items() if k != "tune"}}, sort_keys=True, default=str)
    return "tune-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def default_storage(cfg: Config) -> str:
    if cfg.tune.storage:
        return cfg.tune.storage
    if "://" in cfg.lake.root:
        raise ConfigError("tune.storage: the lake is remote; give an RDB URL every rank can reach")
    folder = Path(cfg.lake.root).resolve() / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def open_study(cfg: Config, storage: str, name: str) -> optuna.Study:
    """Create the study or load it to continue. Trials left RUNNING by a killed run are marked FAIL (one tune
    per study at a time), and the sampler's seed is offset by the trials already there, so a resumed search
    does not replay the random proposals of its first run."""
    tc = cfg.tune
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.create_study(storage=rdb, study_name=name, direction="maximize", load_if_exists=True)
    study_id = rdb.get_study_id_from_name(name)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, stale.number)
        rdb.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    study.sampler = optuna.samplers.TPESampler(seed=tc.seed + len(study.trials), n_startup_trials=tc.random_trials)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=tc.prune_after_trials,
                                               n_warmup_steps=tc.prune_after_epochs)
    return study


def trials_left(study: optuna.Study, budget: int) -> int:
    """How many more trials the budget allows: it counts trials completed or pruned (a failed one is retried)."""
    return max(0, budget - len(study.get_trials(deepcopy=False, states=FINISHED)))


@dataclass(frozen=True)
class EpochReporter:
    """The training loop's on_epoch for one trial: report the epoch's validation NDCG@10 to the study and say
    whether the pruner stops the trial. Pickled to rank 0, which opens the study from the storage URL."""

    storage: str
    study: str
    trial_id: int
    pruner: optuna.pruners.BasePruner

    def __call__(self, epoch: int, valid_ndcg: float) -> bool:
        trial = optuna.trial.Trial(optuna.load_study(study_name=self.study, storage=self.storage, pruner=self.pruner),
                                   self.trial_id)
        trial.report(valid_ndcg, epoch)
        return trial.should_prune()


def trial_value(result: TrainResult) -> float:
    """A finished training's value to the study, its best validation NDCG@10; optuna.TrialPruned when the pruner
    stopped it (the loop cannot raise it: an exception on a rank fails the whole Horovod job)."""
    if result.stopped:
        raise optuna.TrialPruned(f"pruned after epoch {len(result.history)}")
    return result.best["valid_ndcg_10"]


def epoch_reporter(study: optuna.Study, storage: str, trial: optuna.Trial) -> EpochReporter:
    rdb = optuna.storages.RDBStorage(storage)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name(study.study_name), trial.number)
    return EpochReporter(storage, study.study_name, trial_id, study.pruner)


def best_config(layers: dict, params: dict[str, Any]) -> dict:
    """The conf file of a trial: the --config/--set layers the search ran with (the tune block aside), and the
    trial's tuned keys over them. `lakerec run --config <it>` (same profile) trains that trial's configuration."""
    return deep_merge({k: v for k, v in layers.items() if k != "tune"}, nested(params))


def write_config(path: str | Path, conf: dict, header: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(conf, sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # a kill mid-write leaves the previous file
    return path
