"""`lakerec tune` end to end on a tiny lake: real trials (Horovod, one rank), a real sqlite study, a real MLflow
store; the written conf loads as `lakerec run --config` loads it, and a rerun continues the same study."""
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from jobs import sequences as sequences_job
from jobs.cli import main
from lakerec import tracking
from lakerec.config import load_config
from lakerec.context import run_stage
from lakerec.lake import Lake
from tests.conftest import CONF_DIR
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

pytestmark = pytest.mark.slow
SPACE = {"train.lr": {"type": "float", "low": 0.003, "high": 0.03, "log": True},
         "train.model": {"type": "categorical", "choices": ["sasrec", "bsarec"]},
         "train.bsarec.window": {"type": "int", "low": 2, "high": 6}}


def test_a_tiny_search_writes_a_conf_that_loads_and_a_rerun_adds_trials_to_the_study(spark, tmp_path):
    root = tmp_path / "lake"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    layers = [f"lake.root={root}", "train.ranks=1", "train.epochs=1", "train.batch_size=8", "train.timeout_s=60",
              f"tune.space={space}"]
    args = ["tune", "--profile", "test", "--conf-dir", str(CONF_DIR), *(a for s in layers for a in ("--set", s))]
    with own_mlflow_store():
        cfg = load_config("test", layers, conf_dir=CONF_DIR)
        lake = Lake(cfg.lake.root, spark)
        write_silver(spark, lake, event_rows(sequential_histories(40, 20, 10)), [f"i{i:03d}" for i in range(20)])
        run_stage("sequences", sequences_job.run, cfg, spark)

        first = CliRunner().invoke(main, [*args, "--trials", "2"], catch_exceptions=False)
        assert first.exit_code == 0, first.output
        storage = f"sqlite:///{root / 'tune' / 'optuna.db'}"
        (name,) = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=name, storage=storage)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        best = study.best_trial

        out = root / "tune" / name / "best.yaml"
        written = yaml.safe_load(out.read_text())
        assert "tune" not in written and written["train"]["epochs"] == 1
        loaded = load_config("test", config_files=[str(out)], conf_dir=CONF_DIR)  # what lakerec run --config does
        assert loaded.train.lr == best.params["train.lr"] and loaded.train.model == best.params["train.model"]
        assert loaded.train.bsarec.window == best.params["train.bsarec.window"]

        tracking.setup(cfg)
        client = MlflowClient()
        experiment = client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id
        (parent,) = client.search_runs([experiment], f"tags.`{tracking.STAGE_TAG}` = 'tune'")
        trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert sorted(int(r.data.params["trial"]) for r in trials) == [0, 1]
        for run in trials:  # each trial's value is its validation NDCG@10, as its run logged it
            trial = study.trials[int(run.data.params["trial"])]
            assert run.data.metrics["valid_ndcg_10"] == pytest.approx(trial.value)
            assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert parent.data.metrics["best_valid_ndcg_10"] == pytest.approx(best.value)

        again = CliRunner().invoke(main, [*args, "--trials", "3"], catch_exceptions=False)
        assert again.exit_code == 0, again.output
        assert optuna.get_all_study_names(storage) == [name]  # the same search: the same study, continued
        study = optuna.load_study(study_name=name, storage=storage)
        assert [t.number for t in study.trials] == [0, 1, 2] and "trials_run=1" in again.output
