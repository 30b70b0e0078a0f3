"""Search train.* settings (tune.space) with Optuna on the lake's silver sequences, scored on validation NDCG@10
only: TPE proposes, bad trials are pruned by epoch, each trial is a nested MLflow run under this one, the study is
kept in tune.storage (a rerun continues it up to --trials), and the best trial is written as a conf file that
`lakerec run --config <file>` takes."""
from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import click
import mlflow
import optuna

from jobs import train as train_job
from jobs.common import JobOption, build_config, config_options, print_result
from lakerec import tracking
from lakerec.config import Config, ConfigError, load_config, nested, user_layers, with_settings
from lakerec.context import StageContext, StageResult, run_stage
from lakerec.models import model_config
from lakerec.spark import get_spark
from lakerec.train import tune
from lakerec.train.runner import train_distributed

log = logging.getLogger("lakerec")

OPTIONS = [
    JobOption("--trials", "tune.trials", "The study's budget: trials completed or pruned, counting earlier runs of "
              "the same study.", metavar="N"),
    JobOption("--timeout-s", "tune.timeout_s", "Start no new trial after this many seconds.", metavar="S"),
    JobOption("--out", "tune.out", "Where the best trial's conf file goes (default: "
              "<lake.root>/tune/<study>/best.yaml).", metavar="FILE"),
]


def run(ctx: StageContext, space: dict[str, tune.ParamSpec], layers: dict, conf_dir: str | None) -> StageResult:
    cfg = ctx.cfg
    inputs = train_job.training_inputs(ctx, cfg.train.text.enabled or "train.text.enabled" in space)
    storage = tune.default_storage(cfg)
    name = cfg.tune.study or tune.study_name(space, layers)
    study = tune.open_study(cfg, storage, name)
    left = tune.trials_left(study, cfg.tune.trials)
    mlflow.set_tags({"lakerec.tune.study": name, "lakerec.tune.storage": storage})
    mlflow.log_params({f"space.{k}": s.model_dump_json(exclude_none=True) for k, s in space.items()})
    log.info("[tune] study %s in %s: %d trial(s) to run for a budget of %d", name, storage, left, cfg.tune.trials)

    def objective(trial: optuna.Trial) -> float:
        params = {key: spec.suggest(trial, key) for key, spec in space.items()}
        return run_trial(ctx, with_settings(cfg, nested(params)), inputs, params, trial,
                         tune.epoch_reporter(study, storage, trial), Path(storage_folder(cfg, name)))

    before = len(study.trials)
    if left:
        study.optimize(objective, n_trials=left, timeout=cfg.tune.timeout_s)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {name}: no trial completed; raise --trials or --timeout-s")
    best = study.best_trial
    out = Path(cfg.tune.out or storage_folder(cfg, name) / "best.yaml")
    tune.write_config(out, tune.best_config(layers, best.params), [
        f"lakerec tune: study {name} ({storage}), best of {len(complete)} completed trial(s): trial {best.number},",
        f"validation NDCG@10 {best.value:.4f}. Run it with: lakerec run --profile {cfg.profile} --config {out}",
    ])
    check_written(out, cfg, best.params, conf_dir)
    mlflow.log_artifact(str(out))
    mlflow.set_tag("lakerec.tune.best_config", str(out))
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    return StageResult(metrics={"best_valid_ndcg_10": best.value, "best_trial": best.number,
                                "trials_run": len(study.trials) - before, "trials_complete": len(complete),
                                "trials_pruned": len(pruned)})


def run_trial(ctx: StageContext, cfg: Config, inputs: train_job.TrainingInputs, params: dict, trial: optuna.Trial,
              reporter: tune.EpochReporter, folder: Path) -> float:
    """One trial: the real training under its own nested MLflow run; its value is the best validation NDCG@10."""
    text = inputs.text if cfg.train.text.enabled else None
    config = model_config(cfg, len(inputs.item_ids), 0 if text is None else text.shape[1])
    checkpoints = folder / "checkpoints" / f"trial-{trial.number}"
    shutil.rmtree(checkpoints, ignore_errors=True)  # a trial starts fresh, never from a killed run's checkpoint
    with tracking.stage_run(cfg, "tune.trial", parent_run_id=ctx.run_id, pipeline_run_id=ctx.pipeline_run_id) as run:
        mlflow.log_params({**params, "trial": trial.number})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        result = train_distributed(ctx.spark, inputs.train_urls, inputs.valid_urls, config, cfg.train,
                                   str(checkpoints), text, exclude_types=cfg.score.exclude_event_types,
                                   on_epoch=reporter)
        shutil.rmtree(checkpoints, ignore_errors=True)
        for row in result.history:
            mlflow.log_metrics({k: row[k] for k in ("train_loss", "valid_ndcg_10", "valid_hr_10")}, step=row["epoch"])
        mlflow.log_metrics({"best_valid_ndcg_10": result.best["valid_ndcg_10"], "epochs_run": len(result.history)})
        mlflow.set_tag("lakerec.tune.state", "pruned" if result.stopped else "complete")
    return tune.trial_value(result)


def storage_folder(cfg: Config, study: str) -> Path:
    return Path(cfg.lake.root).resolve() / "tune" / study


def check_written(path: Path, cfg: Config, params: dict, conf_dir: str | None) -> None:
    """The written file, loaded as `lakerec run --config` would, must give the best trial's train settings."""
    loaded = load_config(cfg.profile, config_files=[str(path)], conf_dir=conf_dir)
    if loaded.train != with_settings(cfg, nested(params)).train:
        raise RuntimeError(f"{path} does not reproduce the best trial's train settings")


def _command(profile, config_files, overrides, conf_dir, verbose, log_format, **job_options):
    extra = [o.override(job_options[o.dest]) for o in OPTIONS]
    overrides = (*overrides, *(e for e in extra if e is not None))
    cfg = build_config(profile, config_files, overrides, conf_dir, verbose, log_format)
    try:
        space = tune.load_space(cfg.tune.space, cfg)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    tracking.fail_runs_on_sigterm()
    parent = cfg.mlflow.parent_run_id
    fn = functools.partial(run, space=space, layers=user_layers(config_files, overrides), conf_dir=conf_dir)
    print_result("tune", run_stage("tune", fn, cfg, get_spark(cfg), parent_run_id=parent, pipeline_run_id=parent))


for _option in OPTIONS:
    _command = _option.decorate(_command)
command = click.command(name="tune", help=__doc__)(config_options(_command))

if __name__ == "__main__":
    command()
