"""lakerec.train.tune without training: the space file, the study's budget and resume, the epoch reporter."""
import optuna
import pytest
import yaml

from lakerec.config import ConfigError, load_config
from lakerec.train import tune
from lakerec.train.runner import TrainResult
from tests.conftest import CONF_DIR


def space_file(tmp_path, space: dict):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_the_shipped_space_loads_and_its_values_validate(cfg):
    space = tune.load_space(CONF_DIR / "tune" / "space.yaml", cfg)
    assert "train.lr" in space and space["train.lr"].log and all(k.startswith("train.") for k in space)


@pytest.mark.parametrize("space, message", [
    ({"sequences.max_len": {"type": "int", "low": 10, "high": 50}}, "only train"),
    ({"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "low < high"),
    ({"train.model": {"type": "categorical"}}, "choices"),
    ({"train.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log needs low > 0"),
    ({"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.01}}, "learning_rate"),
    ({"train.model": {"type": "categorical", "choices": ["gru4rec"]}}, "train.model"),
])
def test_a_bad_space_is_refused_before_any_trial(cfg, tmp_path, space, message):
    with pytest.raises(ConfigError, match=message):
        tune.load_space(space_file(tmp_path, space), cfg)


def test_suggestions_follow_the_specs_and_the_study_name_follows_the_search(cfg, tmp_path):
    space = tune.load_space(space_file(tmp_path, {
        "train.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
        "train.layers": {"type": "int", "low": 1, "high": 3},
        "train.model": {"type": "categorical", "choices": ["sasrec", "bsarec"]}}), cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = {k: s.suggest(trial, k) for k, s in space.items()}
        assert 0.001 <= params["train.lr"] <= 0.01 and params["train.layers"] in (1, 2, 3)
        assert params["train.model"] in ("sasrec", "bsarec")
    layers = {"train": {"epochs": 3}}
    assert tune.study_name(space, layers) == tune.study_name(space, {**layers, "tune": {"trials": 9}})
    assert tune.study_name(space, layers) != tune.study_name(space, {"train": {"epochs": 4}})


def test_the_reporter_records_the_epoch_and_says_what_the_pruner_decides(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask()
    never = tune.EpochReporter(storage, "s", tune.epoch_reporter(study, storage, trial).trial_id,
                               optuna.pruners.NopPruner())
    always = tune.EpochReporter(storage, "s", never.trial_id, optuna.pruners.ThresholdPruner(lower=2.0))
    assert never(1, 0.3) is False
    assert always(2, 0.4) is True  # NDCG@10 never reaches 2.0: told to prune
    assert study.trials[0].intermediate_values == {1: 0.3, 2: 0.4}


def test_a_stopped_training_raises_trial_pruned_and_a_finished_one_gives_its_best():
    best = {"epoch": 2, "valid_ndcg_10": 0.25}
    finished = TrainResult(state_dict={}, history=[best, best], best=best, ranks=[], resumed_from=0)
    assert tune.trial_value(finished) == 0.25
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        tune.trial_value(TrainResult(state_dict={}, history=[best, best], best=best, ranks=[], resumed_from=0,
                                     stopped=True))


def test_resume_counts_finished_trials_fails_stale_ones_and_draws_anew(make_cfg, tmp_path):
    cfg = make_cfg("tune.seed=3", "tune.random_trials=10")
    storage = tune.default_storage(cfg)
    assert storage == f"sqlite:///{tmp_path / 'lake' / 'tune' / 'optuna.db'}"
    study = tune.open_study(cfg, storage, "s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.ask()  # a trial a killed run left RUNNING
    again = tune.open_study(cfg, storage, "s")
    states = [t.state for t in again.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.FAIL]
    assert tune.trials_left(again, 5) == 3 and tune.trials_left(again, 1) == 0
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    xs = [t.params["x"] for t in again.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(xs) == 3 and len(set(xs)) == 3  # the resumed sampler does not replay the first random draw


def test_the_best_config_is_the_layers_plus_the_tuned_keys_and_loads(cfg, tmp_path):
    layers = {"train": {"epochs": 3, "lr": 0.1}, "tune": {"trials": 4}, "lake": {"root": str(tmp_path / "lake")}}
    conf = tune.best_config(layers, {"train.lr": 0.002, "train.bsarec.window": 4})
    assert conf == {"train": {"epochs": 3, "lr": 0.002, "bsarec": {"window": 4}},
                    "lake": {"root": str(tmp_path / "lake")}}  # the tune block is no setting of the run
    path = tune.write_config(tmp_path / "out" / "best.yaml", conf, ["a header"])
    assert path.read_text().startswith("# a header\n")
    loaded = load_config("test", config_files=[str(path)], conf_dir=CONF_DIR)
    assert (loaded.train.lr, loaded.train.epochs, loaded.train.bsarec.window) == (0.002, 3, 4)


def test_the_command_refuses_a_bad_space_before_any_work(tmp_path):
    from click.testing import CliRunner

    from jobs.cli import main

    bad = space_file(tmp_path, {"sequences.max_len": {"type": "int", "low": 10, "high": 50}})
    out = CliRunner().invoke(main, ["tune", "--profile", "test", "--conf-dir", str(CONF_DIR), "--set",
                                    f"lake.root={tmp_path / 'lake'}", "--set", f"tune.space={bad}", "--trials", "2"])
    assert out.exit_code == 2 and "sequences.max_len" in out.output
    assert not (tmp_path / "lake").exists()
    assert "tune" in main.list_commands(None)
