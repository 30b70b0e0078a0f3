"""`lakerec run`: retries, and resuming a failed run from its failed stage (a three-stage pipeline keeps it quick).

The failure is injected with LAKEREC_FAIL_STAGE (the drill.fail_stages drill): everything else is real.
"""
import mlflow
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from jobs.cli import main
from lakerec import tables as T
from lakerec import tracking
from lakerec.lake import Lake
from tests.conftest import REPO


@pytest.fixture
def short_pipeline(tmp_path):
    full = yaml.safe_load((REPO / "pipelines" / "lakerec.yaml").read_text())
    full["stages"] = [s for s in full["stages"] if s["name"] in ("generate", "ingest", "silver")]
    full.pop("sets", None)  # the stage sets name stages this pipeline does not have
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(full))
    return str(path)


def _run(root, pipeline, *extra):
    return CliRunner().invoke(main, ["run", "--profile", "test", "--set", f"lake.root={root}", "--pipeline", pipeline,
                                     *extra], catch_exceptions=True)


def _stage_runs(cfg, pipeline_run_id):
    tracking.setup(cfg)
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                                      f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run_id}'")
    return [(r.data.tags[tracking.STAGE_TAG], r.info.status) for r in runs if r.info.run_id != pipeline_run_id]


@pytest.mark.slow
def test_failed_run_resumes_at_its_failed_stage(short_pipeline, make_cfg, spark, monkeypatch):
    cfg = make_cfg()
    monkeypatch.setenv("LAKEREC_FAIL_STAGE", "silver")
    failed = _run(cfg.lake.root, short_pipeline, "--retries", "1")
    assert failed.exit_code != 0 and "failure injected" in failed.output
    assert "attempt 1/2 failed" in failed.output and "resume with: lakerec run --resume" in failed.output
    parent = MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                                        f"tags.`{tracking.STAGE_TAG}` = 'pipeline:lakerec'")[0]
    assert parent.info.status == "FAILED"
    assert sorted(_stage_runs(cfg, parent.info.run_id)) == [
        ("generate", "FINISHED"), ("ingest", "FINISHED"), ("silver", "FAILED"), ("silver", "FAILED")]
    bronze_version = Lake(cfg.lake.root, spark).version(T.BRONZE_EVENTS)

    monkeypatch.delenv("LAKEREC_FAIL_STAGE")
    resumed = _run(cfg.lake.root, short_pipeline, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {parent.info.run_id}" in resumed.output
    assert "[ingest] skipped: finished in run" in resumed.output and "[silver] done in" in resumed.output
    assert MlflowClient().get_run(parent.info.run_id).info.status == "FINISHED"
    assert sorted(_stage_runs(cfg, parent.info.run_id)).count(("silver", "FINISHED")) == 1
    lake = Lake(cfg.lake.root, spark)
    assert lake.version(T.BRONZE_EVENTS) == bronze_version  # ingest did not run again
    assert lake.read(T.SILVER_EVENTS).count() > 0

    again = _run(cfg.lake.root, short_pipeline, "--resume")
    assert again.exit_code == 2 and "no unfinished run" in again.output


def test_resume_with_another_configuration_is_refused_before_any_work(short_pipeline, make_cfg, spark, monkeypatch):
    cfg = make_cfg()
    monkeypatch.setenv("LAKEREC_FAIL_STAGE", "generate")
    assert _run(cfg.lake.root, short_pipeline, "--retries", "0").exit_code != 0
    monkeypatch.delenv("LAKEREC_FAIL_STAGE")
    out = CliRunner().invoke(main, ["run", "--profile", "test", "--set", f"lake.root={cfg.lake.root}", "--set",
                                    "train.epochs=1", "--pipeline", short_pipeline, "--resume"])
    assert out.exit_code == 2 and "another configuration" in out.output
    assert not Lake(cfg.lake.root, spark).exists(T.BRONZE_EVENTS)
