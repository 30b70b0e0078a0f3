"""A job runs the same as `lakerec <stage>`, `python -m jobs.<stage>` and `spark-submit jobs/<stage>.py`."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("launcher", [
    [str(BIN / "lakerec"), "generate"],
    [sys.executable, "-m", "jobs.generate"],
    [str(BIN / "spark-submit"), "--master", "local[1]", "jobs/generate.py"],
], ids=["cli", "python-m", "spark-submit"])
def test_generate_job_runs_from_every_entry_point(launcher, tmp_path):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([*launcher, "--profile", "test", "--set", f"lake.root={tmp_path}/lake"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[generate] done" in out.stdout
    assert sorted(p.suffix for p in (tmp_path / "lake" / "raw" / "events").iterdir()) == [".jsonl", ".jsonl"]
    assert (tmp_path / "lake" / "mlflow.db").is_file()


def test_bad_config_stops_before_any_work_naming_the_key(tmp_path):
    out = subprocess.run([str(BIN / "lakerec"), "ingest", "--profile", "test", "--set", f"lake.root={tmp_path}/lake",
                          "--set", "etl.sesion_gap_minutes=5"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "etl.sesion_gap_minutes" in out.stderr
    assert not (tmp_path / "lake").exists()
