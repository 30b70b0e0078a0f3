"""Two jobs starting at once on a new lake: real processes, released together once both are up.

Each child prints "ready" when its imports (and Spark) are up, then waits for a line on stdin; the test writes
that line to both, so the racy step (creating the MLflow store, creating a table) starts in both within
milliseconds. Before the locks, one of the two failed: MLflow's alembic migration of the new sqlite store, or
delta-rs refusing to create a table another process had just created.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lakerec import tables as T
from lakerec.lake import Lake
from tests.conftest import CONF_DIR, REPO
from tests.data.helpers import own_mlflow_store
from tests.etl.conftest import etl_cfg

MLFLOW_CHILD = """
import json, sys
from lakerec import tracking
from lakerec.config import load_config
cfg = load_config("test", [f"lake.root={sys.argv[1]}"], conf_dir=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
experiment = tracking.setup(cfg)
with tracking.stage_run(cfg, "first-run") as run:
    pass
print(json.dumps({"experiment": experiment, "run": run.info.run_id}), flush=True)
"""

TABLE_CHILD = """
import json, sys
from lakerec.config import load_config
from lakerec.lake import Lake
from lakerec.spark import get_spark
cfg = load_config("test", [f"lake.root={sys.argv[1]}"], conf_dir=sys.argv[2])
spark = get_spark(cfg)
lake = Lake(cfg.lake.root, spark)
df = spark.createDataFrame([(sys.argv[3], "2026-11-01")], "who string, day string")
print("ready", flush=True)
sys.stdin.readline()
# several new tables in a row: each is a race of the two children to create it
print(json.dumps([lake.write(f"silver.first{n}", df, partition_by=["day"]) for n in range(int(sys.argv[4]))]),
      flush=True)
"""
TABLES = 8


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{REPO}"}  # this tree's lib first
    env.pop("MLFLOW_TRACKING_URI", None)  # each child's store is its lake's
    return env


def _released_together(*argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """Starts the children, waits until each printed "ready", releases them at once, and waits for them."""
    children = [subprocess.Popen(argv, cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line.strip() == "ready", (line, child.stderr.read()[-3000:] if child.poll() is not None else "")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        done = [child.communicate(timeout=300) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return [subprocess.CompletedProcess(c.args, c.returncode, out, err) for c, (out, err) in zip(children, done)]


@pytest.mark.slow
def test_two_first_runs_create_one_mlflow_store_and_both_log(tmp_path):
    root = tmp_path / "lake"
    results = _released_together(*([sys.executable, "-c", MLFLOW_CHILD, str(root), str(CONF_DIR)] for _ in range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-3000:] for r in results]
    out = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert out[0]["experiment"] == out[1]["experiment"]
    with own_mlflow_store():
        client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
        runs = client.search_runs([out[0]["experiment"]])
    assert sorted(r.info.run_id for r in runs) == sorted(o["run"] for o in out)
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_two_first_writes_to_a_new_table_both_commit(tmp_path, spark):
    root = tmp_path / "lake"
    results = _released_together(
        *([sys.executable, "-c", TABLE_CHILD, str(root), str(CONF_DIR), who, str(TABLES)] for who in ("a", "b")))
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-3000:] for r in results]
    versions = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert [sorted(pair) for pair in zip(*versions)] == [[0, 1]] * TABLES  # one created each, the other appended
    lake = Lake(str(root), spark)
    for n in range(TABLES):
        assert sorted(r.who for r in lake.read(f"silver.first{n}").collect()) == ["a", "b"]


@pytest.mark.slow
def test_two_daily_ingests_on_a_new_lake_both_succeed(tmp_path, spark):
    """What a scheduler does on day one: two ingest jobs (two days' drops) start together on an empty lake."""
    lines = {day: [json.dumps({"event_id": f"{day}-{n}", "user_id": f"u{n}", "item_id": "i1", "event_type": "view",
                               "ts": f"2026-11-0{day}T10:00:0{n}Z"}) for n in range(3)] for day in (1, 2)}
    for day, rows in lines.items():
        (tmp_path / f"day{day}").mkdir()
        (tmp_path / f"day{day}" / "events.jsonl").write_text("\n".join(rows) + "\n")
    cfg = etl_cfg(tmp_path / "lake")
    argv = [sys.executable, "-m", "jobs.ingest", "--profile", "test", "--conf-dir", str(CONF_DIR),
            "--set", f"lake.root={cfg.lake.root}", "--set", f"demo.start='{cfg.demo.start}'"]
    children = [subprocess.Popen([*argv, "--set", f"input.events.path={tmp_path / f'day{day}'}"], cwd=REPO,
                                 env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for day in (1, 2)]
    done = [c.communicate(timeout=600) for c in children]
    assert [c.returncode for c in children] == [0, 0], [err[-3000:] for _, err in done]
    lake = Lake(cfg.lake.root, spark)
    assert sorted(r.event_id for r in lake.read(T.BRONZE_EVENTS).collect()) == sorted(
        json.loads(line)["event_id"] for rows in lines.values() for line in rows)
    with own_mlflow_store():
        mlflow.set_tracking_uri(cfg.tracking_uri)
        runs = MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id])
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [("ingest", "FINISHED")] * 2
