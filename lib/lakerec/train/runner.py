"""Driver side of training: start `train_rank` on cfg.train.ranks Horovod ranks inside Spark tasks and collect.

horovod.spark.run places one rank per Spark task of the job's session (Gloo controller, no MPI). Two timeouts
keep a broken run from hanging: `start_timeout` for the tasks to start and register, and
HOROVOD_GLOO_TIMEOUT_SECONDS for a collective (a dead or stalled rank fails its peers instead of blocking them).
"""
from __future__ import annotations

from dataclasses import dataclass

import horovod.spark
import torch
from pyspark.sql import SparkSession

from lakerec.config import TrainConf
from lakerec.models.sasrec import SASRecConfig
from lakerec.train.loop import train_rank


class TrainingError(RuntimeError):
    """Training cannot start here, or the ranks finished but disagree (they must hold identical weights)."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    history: list[float]  # train loss per epoch, averaged across ranks
    ranks: list[dict]  # per rank: rank, device, rows, rows_read, steps_per_epoch, checksum, seconds


def train_distributed(spark: SparkSession, urls: list[str], model_config: SASRecConfig, conf: TrainConf) -> TrainResult:
    """Train on `conf.ranks` ranks reading the snapshot files `urls`; verify the ranks ended identical."""
    _check_slots(spark, conf.ranks)
    reports = horovod.spark.run(
        train_rank, args=(urls, model_config.to_dict(), conf), num_proc=conf.ranks, use_gloo=True,
        start_timeout=conf.timeout_s, env={"HOROVOD_GLOO_TIMEOUT_SECONDS": str(conf.timeout_s)}, verbose=0,
    )
    checksums = {r["checksum"] for r in reports}
    if len(checksums) != 1:
        raise TrainingError(f"ranks ended with different weights: {[r['checksum'][:12] for r in reports]}")
    lead = reports[0]
    return TrainResult(state_dict=lead["state_dict"], history=lead["history"],
                       ranks=[{k: v for k, v in r.items() if k not in ("state_dict", "history")} for r in reports])


def _check_slots(spark: SparkSession, ranks: int) -> None:
    """Every rank holds a Spark task for the whole run: a local master with fewer cores could only time out.

    (On a cluster, executors may still be arriving, so there start_timeout decides.)
    """
    sc = spark.sparkContext
    if sc.master.startswith("local") and sc.defaultParallelism < ranks:
        raise TrainingError(f"train.ranks={ranks} needs {ranks} concurrent Spark tasks, but {sc.master} runs "
                            f"{sc.defaultParallelism}: lower train.ranks or use more local cores")
