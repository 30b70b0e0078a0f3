"""The Airflow DAG and the Databricks job are generated from the pipeline definition and stay in step with it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lakerec.pipeline import Pipeline, load_pipeline
from lakerec.schedule import AIRFLOW_FILE, DATABRICKS_FILE, databricks_job, render, stale_files

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "pipelines" / "generated"


def test_generated_files_are_up_to_date_with_the_definition():
    assert stale_files(load_pipeline(REPO / "pipelines/lakerec.yaml"), GENERATED) == [], \
        "run `lakerec schedule` and commit pipelines/generated/"


def test_check_command_fails_on_a_changed_definition(tmp_path):
    definition = yaml.safe_load((REPO / "pipelines/lakerec.yaml").read_text())
    definition["stages"][-1]["retries"] = 7
    changed = tmp_path / "lakerec.yaml"
    changed.write_text(yaml.safe_dump(definition))
    cli = [sys.executable, "-m", "jobs.cli", "schedule", "--pipeline", str(changed), "--out", str(GENERATED)]
    out = subprocess.run([*cli, "--check"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0 and "out of date" in out.stderr
    fresh = subprocess.run([*cli[:-2], "--out", str(tmp_path / "gen")], capture_output=True, text=True, cwd=REPO)
    assert fresh.returncode == 0, fresh.stderr
    assert stale_files(load_pipeline(changed), tmp_path / "gen") == []


def test_databricks_job_has_one_task_per_stage_with_its_edges_and_the_daily_partition():
    pipeline = load_pipeline(REPO / "pipelines/lakerec.yaml")
    job = databricks_job(pipeline)
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert set(tasks) == {s.name for s in pipeline.stages}
    for stage in pipeline.stages:
        assert [d["task_key"] for d in tasks[stage.name]["depends_on"]] == stage.depends_on
        assert tasks[stage.name]["max_retries"] == pipeline.retries(stage)
        assert tasks[stage.name]["python_wheel_task"]["parameters"][:3] == [stage.name, "--profile", "cluster"]
    ingest_args = tasks["ingest"]["python_wheel_task"]["parameters"]
    assert "input.events.path={{job.parameters.raw_events}}/dt={{job.start_time.iso_date}}" in ingest_args
    assert job["schedule"]["quartz_cron_expression"] == "0 0 3 ? * SUN"
    assert json.loads(render(pipeline)[DATABRICKS_FILE]) == job


def test_the_refresh_set_is_a_job_of_its_own_chained_in_order_on_its_own_days():
    pipeline = load_pipeline(REPO / "pipelines/lakerec.yaml")
    files = render(pipeline)
    assert set(files) == {AIRFLOW_FILE, DATABRICKS_FILE, "airflow_lakerec_refresh.py", "databricks_lakerec_refresh.json"}
    job = json.loads(files["databricks_lakerec_refresh.json"])
    assert [(t["task_key"], [d["task_key"] for d in t["depends_on"]]) for t in job["tasks"]] == [
        ("ingest", []), ("silver", ["ingest"]), ("sequences", ["silver"]), ("train", ["sequences"]),
        ("evaluate", ["train"]), ("score", ["evaluate"])]
    assert job["schedule"]["quartz_cron_expression"] == "0 0 3 ? * MON-SAT"
    for task in job["tasks"]:
        assert "train.init=champion" in task["python_wheel_task"]["parameters"]
    assert "dag_id='lakerec_refresh'" in files["airflow_lakerec_refresh.py"]
    assert "lakerec score --profile cluster" in files["airflow_lakerec_refresh.py"]


def test_numbered_weekdays_are_refused_they_differ_between_cron_and_quartz():
    definition = yaml.safe_load((REPO / "pipelines/lakerec.yaml").read_text())
    definition["schedule"]["cron"] = "0 3 * * 0"
    with pytest.raises(ValueError, match="name the weekdays"):
        databricks_job(Pipeline.model_validate(definition))


def test_a_daily_override_naming_an_unknown_param_is_rejected(tmp_path):
    definition = yaml.safe_load((REPO / "pipelines/lakerec.yaml").read_text())
    definition["stages"][1]["daily"] = ["input.events.path={nowhere}/dt={ds}"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(definition))
    with pytest.raises(ValueError, match="nowhere"):
        load_pipeline(bad)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the Airflow install (minutes, once) + a 600 s probe
def test_generated_dag_loads_in_a_real_airflow(tmp_path):
    """Airflow lives in its own venv (scripts/setup_airflow.sh: its pins clash with the stack's)."""
    venv = subprocess.run(["bash", str(REPO / "scripts/setup_airflow.sh")], capture_output=True, text=True)
    assert venv.returncode == 0, venv.stderr[-2000:]
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    probe = subprocess.run([f"{venv.stdout.strip()}/bin/python", str(Path(__file__).with_name("airflow_probe.py")),
                            str(GENERATED / AIRFLOW_FILE)], capture_output=True, text=True, env=env, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["import_errors"] == {}
    pipeline = load_pipeline(REPO / "pipelines/lakerec.yaml")
    tasks = found["dags"][pipeline.name]["tasks"]
    assert set(tasks) == {s.name for s in pipeline.stages}
    for stage in pipeline.stages:
        assert tasks[stage.name]["upstream"] == sorted(stage.depends_on)
        assert tasks[stage.name]["retries"] == pipeline.retries(stage)
    assert "dt={{ ds }}" in tasks["ingest"]["bash_command"]
    assert "lake.root={{ params.lake_root }}" in tasks["train"]["bash_command"]
