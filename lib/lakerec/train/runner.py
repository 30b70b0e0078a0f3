"""Driver side of training: start `train_rank` on cfg.train.ranks Horovod ranks inside Spark tasks and collect.

horovod.spark.run places one rank per Spark task of the job's session (Gloo controller, no MPI). Two timeouts
keep a broken run from hanging: `start_timeout` for the tasks to start and register, and
HOROVOD_GLOO_TIMEOUT_SECONDS for a collective (a dead or stalled rank fails its peers instead of blocking them),
with HOROVOD_STALL_SHUTDOWN_TIME_SECONDS shutting down a collective that not every rank joins.
A rank that raises fails the Spark job, and the driver turns that into a TrainingError naming the run. What the
driver can check from the files (every rank gets a row group, the shuffle buffer fits the smallest shard) it checks
before any rank starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import horovod.spark
import numpy as np
import torch
from pyspark.sql import SparkSession

from lakerec.config import TrainConf
from lakerec.data.feed import plan_feed
from lakerec.models.base import ModelConfig
from lakerec.train.loop import train_rank


ITEM_TEXT = "item_text.npy"


class TrainingError(RuntimeError):
    """Training cannot start here, or the ranks finished but disagree (they must hold identical weights)."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # the best epoch's weights
    history: list[dict]  # per epoch: epoch, train_loss (averaged across ranks), valid_ndcg_10, valid_hr_10, seconds
    best: dict  # the history entry of the best validation NDCG@10
    ranks: list[dict]  # per rank: rank, device, rows, row_groups, shuffle_buffer, feed_peak_rows, valid_users,
    #                   steps_per_epoch, checksum, seconds
    resumed_from: int  # the epoch the checkpoint this run continued had reached (0: a fresh run)
    stopped: bool = False  # on_epoch asked to stop (a pruned tuning trial)


def train_distributed(spark: SparkSession, train_urls: list[str], valid_urls: list[str], model_config: ModelConfig,
                      conf: TrainConf, checkpoint_dir: str, text: np.ndarray | None = None,
                      progress: bool = False, exclude_types: list[str] | None = None,
                      on_epoch: Callable[[int, float], bool] | None = None,
                      init_state: dict | None = None, fail_rank: int | None = None) -> TrainResult:
    """Train on `conf.ranks` ranks reading the snapshot files; verify the ranks ended identical.

    text: the item text embeddings a text-aware model needs ([n_items + 1, text_dim]): written once to
    <checkpoint_dir>/item_text.npy, which every rank loads (the checkpoints' folder: already shared by the ranks).
    `progress`: rank 0 draws a bar over the epochs (on the driver's stderr in local mode, in the executor's log on
    a cluster). exclude_types: score.exclude_event_types, the serving rule validation ranks under. on_epoch: runs
    on rank 0 after each epoch's validation, (epoch, NDCG@10) -> stop?; it is pickled to the rank. init_state: a
    warm start's initial weights (every rank loads them). fail_rank: drill.fail_rank (that rank fails on purpose).

    The ranks' output is left to Horovod's default: it reaches the Spark worker's stderr, which locally is the
    driver JVM's, which `lakerec.spark` forwards as it comes. (Horovod's stdout=/stderr= streams deliver it in 64 KiB
    chunks, an epoch line minutes late.)"""
    _check_slots(spark, conf.ranks)
    # read once, here: a FeedError before any rank starts, and the ranks take this plan rather than reread footers
    plan = plan_feed(train_urls, conf.ranks, conf.shuffle_buffer)
    text_path = None if text is None else write_item_text(text, Path(checkpoint_dir))
    env = rank_env(conf)
    try:
        reports = horovod.spark.run(
            train_rank, args=(train_urls, valid_urls, plan, model_config.to_dict(), conf, checkpoint_dir, text_path,
                              progress, exclude_types, on_epoch, init_state, fail_rank),
            num_proc=conf.ranks, use_gloo=True, start_timeout=conf.timeout_s, env=env, verbose=0,
        )
    except Exception as e:  # horovod names the first rank that failed; its traceback is in the job's stderr
        raise TrainingError(f"training on {conf.ranks} Horovod rank(s) failed (the rank's traceback is in the "
                            f"log above): {_first_lines(e)}") from e
    checksums = {r["checksum"] for r in reports}
    if len(checksums) != 1:
        raise TrainingError(f"ranks ended with different weights: {[r['checksum'][:12] for r in reports]}")
    lead = reports[0]
    return TrainResult(state_dict=lead["state_dict"], history=lead["history"], best=lead["best"],
                       resumed_from=lead["resumed_from"], stopped=lead["stopped"],
                       ranks=[{k: v for k, v in r.items() if k not in ("state_dict", "history", "best")}
                              for r in reports])


def rank_env(conf: TrainConf) -> dict[str, str]:
    """The ranks' environment: this process's, plus Horovod's timeouts (a collective some rank never joins is a
    stall: shut down instead of waiting) and train.malloc_mmap_threshold for glibc (read when the rank starts)."""
    timeout = str(conf.timeout_s)
    env = {**os.environ, "HOROVOD_GLOO_TIMEOUT_SECONDS": timeout, "HOROVOD_STALL_CHECK_TIME_SECONDS": timeout,
           "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": timeout}
    if conf.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(conf.malloc_mmap_threshold)
    return env


def write_item_text(text: np.ndarray, folder: Path) -> str:
    """The item text matrix as float32 .npy in `folder`, written atomically (temp file, then rename); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path, tmp = folder / ITEM_TEXT, folder / f".{ITEM_TEXT}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(text, dtype=np.float32))
    os.replace(tmp, path)
    return str(path)


def _first_lines(error: Exception, n: int = 4) -> str:
    """The head of a (possibly Spark-wrapped, JVM-stack-long) error on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:n]) or type(error).__name__


def _check_slots(spark: SparkSession, ranks: int) -> None:
    """Every rank holds a Spark task for the whole run: a local master with fewer cores could only time out.

    (On a cluster, executors may still be arriving, so there start_timeout decides.)
    """
    sc = spark.sparkContext
    if sc.master.startswith("local") and sc.defaultParallelism < ranks:
        raise TrainingError(f"train.ranks={ranks} needs {ranks} concurrent Spark tasks, but {sc.master} runs "
                            f"{sc.defaultParallelism}: lower train.ranks or use more local cores")
