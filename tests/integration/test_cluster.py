"""The whole pipeline, Horovod ranks included, submitted with spark-submit to a real standalone cluster."""
import os
import socket
import subprocess

import pytest

from lakerec import tables as T
from lakerec.lake import Lake
from tests.conftest import REPO

CLUSTER = ["bash", str(REPO / "scripts" / "cluster.sh")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # spark-submit may take 1500 s
def test_pipeline_runs_on_a_standalone_cluster(tmp_path, spark):
    env = {**os.environ, "LAKEREC_MASTER_PORT": str(_free_port()), "SPARK_WORKER_CORES": "2",
           "SPARK_WORKER_MEMORY": "3g", "LAKEREC_VENV": str(REPO / ".venv")}
    cluster_dir = tmp_path / "cluster"
    started = subprocess.run([*CLUSTER, "start", str(cluster_dir)], cwd=REPO, env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    pids = [int((cluster_dir / f"{n}.pid").read_text()) for n in ("master", "worker")]
    try:
        assert subprocess.run([*CLUSTER, "package"], cwd=REPO, capture_output=True).returncode == 0
        lake = tmp_path / "lake"
        submit = subprocess.run(
            [str(REPO / ".venv/bin/spark-submit"), "--master", (cluster_dir / "master.url").read_text().strip(),
             "--py-files", str(REPO / "dist/lakerec.zip"), str(REPO / "jobs/cli.py"), "run", "--profile", "test",
             "--set", "spark.master=null", "--set", f"lake.root={lake}", "--retries", "0"],
            cwd=REPO, capture_output=True, text=True, timeout=1500,
            env={**env, "PYSPARK_PYTHON": str(REPO / ".venv/bin/python"),
                 "PYSPARK_DRIVER_PYTHON": str(REPO / ".venv/bin/python")})
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "=== lakerec summary" in submit.stdout
        master_log = (cluster_dir / "master.log").read_text()
        assert "Registering app lakerec" in master_log  # the stages ran on the cluster, not in local mode
        topn = Lake(str(lake), spark).read(T.GOLD_TOPN)
        assert topn.count() > 0
    finally:
        stopped = subprocess.run([*CLUSTER, "stop", str(cluster_dir)], cwd=REPO, env=env, capture_output=True,
                                 text=True)
    assert stopped.returncode == 0, stopped.stderr
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
