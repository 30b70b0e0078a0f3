"""--resume after a real kill: the train job is SIGKILLed (with its Spark and Horovod processes) right after its
epoch-2 checkpoint, resumed, and must end where an uninterrupted run ends (same per-epoch metrics to 1e-6)."""
import os
import signal
import subprocess
import sys

import psutil
import pytest
from mlflow.tracking import MlflowClient

from jobs import sequences as sequences_job
from jobs import train as train_job
from lakerec.context import run_stage
from lakerec.lake import Lake
from tests.conftest import REPO
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

pytestmark = pytest.mark.slow
EPOCHS, KILL_AFTER = 4, 2
SETTINGS = ["train.ranks=2", f"train.epochs={EPOCHS}", f"train.patience={EPOCHS}", "train.lr=0.01",
            "train.batch_size=8", "train.warmup_steps=5", "train.timeout_s=60"]
CURVES = ("train_loss", "valid_ndcg_10", "valid_hr_10")


def train_command(root, *extra):
    sets = [x for s in [f"lake.root={root}", *SETTINGS] for x in ("--set", s)]
    return [sys.executable, "-m", "jobs.train", "--profile", "test", *sets, *extra]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the job and everything it started (Spark JVM, Python workers, Horovod rank processes)."""
    family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def curves(client, run_id):
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in CURVES}


def test_resume_after_sigkill_ends_at_the_uninterrupted_metrics(spark, make_cfg):
    with own_mlflow_store():
        cfg = make_cfg(*SETTINGS)
        lake = Lake(cfg.lake.root, spark)
        write_silver(spark, lake, event_rows(sequential_histories(60, 30, 12, seed=2)),
                     [f"i{i:03d}" for i in range(30)])
        run_stage("sequences", sequences_job.run, cfg, spark)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

        job = subprocess.Popen(train_command(cfg.lake.root), cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in job.stdout:  # rank 0 prints a line per saved checkpoint
            seen.append(line)
            if f"checkpoint {KILL_AFTER} saved" in line:
                kill_tree(job)
                break
        assert job.returncode == -signal.SIGKILL, "".join(seen[-20:])

        resumed = subprocess.run(train_command(cfg.lake.root, "--resume"), cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        whole = run_stage("train", train_job.run, cfg, spark)  # the same run, uninterrupted, from scratch

        client = MlflowClient(cfg.tracking_uri)
        runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                                  "attributes.run_name = 'train'", order_by=["attributes.start_time ASC"])
        resumed_run = next(r for r in runs if r.data.metrics.get("resumed_from_epoch", 0) >= KILL_AFTER)
        assert resumed_run.data.metrics["resumed_from_epoch"] < EPOCHS  # it did train after resuming
        expected, got = curves(client, whole.run_id), curves(client, resumed_run.info.run_id)
        for key in CURVES:
            assert [s for s, _ in got[key]] == list(range(1, EPOCHS + 1))
            assert [v for _, v in got[key]] == pytest.approx([v for _, v in expected[key]], abs=1e-6)
        for key in ("best_valid_ndcg_10", "best_valid_hr_10", "best_epoch", "final_train_loss"):
            assert resumed_run.data.metrics[key] == pytest.approx(whole.metrics[key], abs=1e-6)
