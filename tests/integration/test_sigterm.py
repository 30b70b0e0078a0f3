"""A scheduler's SIGTERM leaves no MLflow run RUNNING: the pipeline run and the stage in progress end FAILED."""
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lakerec import tracking
from tests.conftest import REPO


def _runs(cfg):
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    return MlflowClient().search_runs([exp.experiment_id]) if exp else []


def _stage_running(cfg) -> bool:
    return any(r.info.status == "RUNNING" and not r.data.tags.get(tracking.STAGE_TAG, "").startswith("pipeline:")
               for r in _runs(cfg))


@pytest.mark.slow
def test_sigterm_marks_the_open_runs_failed(make_cfg):
    cfg = make_cfg()
    tracking.setup(cfg)
    log = open(cfg.lake.root + ".log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "run", "--profile", "test", "--set",
                             f"lake.root={cfg.lake.root}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not _stage_running(cfg):  # a condition, polled: the pipeline is inside a stage (its run is RUNNING)
            assert proc.poll() is None and time.monotonic() < deadline, "the pipeline never reached a stage"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    log.seek(0)
    output = log.read()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "marked 2 MLflow run(s) FAILED" in output
    statuses = {(r.data.tags.get(tracking.STAGE_TAG), r.info.status) for r in _runs(cfg)}
    assert ("pipeline:lakerec", "FAILED") in statuses
    assert not any(status == "RUNNING" for _, status in statuses), statuses
    assert sum(status == "FAILED" for _, status in statuses) == 2  # the pipeline run and the stage in progress
