"""A large catalog: training with the sampled loss and full-ranking evaluation over every item, at 1M items.

    .venv/bin/python benchmarks/large_catalog.py [--items 1000000] [--users 8000] [--ranks 2] [--epochs 1]
        [--eval-users 2000] [--batch-size 256] [--item-chunk 65536] [--work DIR] [--driver-memory 4g]

Untimed: generated events (history lengths log-normal around 20 items, capped at 200; items drawn from a Zipf(1)
popularity over the whole catalog, the popularity rank scattered over the item ids), written to a lake and turned
into silver.sequences and silver.train_windows by the sequences stage's own functions (`build_sequences`,
`build_train_windows`, `layout_for_feed`). Timed:
- train: `train_distributed` (Horovod ranks in Spark tasks, Petastorm shards), `train.loss: sampled`, a SASRec
  (d 64, 2 layers, max length 50) over the whole catalog, `--epochs` epochs with each epoch's validation (every
  rank ranks its validation users against all items, as training does);
- evaluate: `evaluate_all` on the test split of the first `--eval-users` users, the trained model and the
  popularity baseline, each ranking every target against all items (batch_size users x item_chunk items at a time).
Prints the time and peak resident memory of each Horovod rank process (sampled every 0.2 s), of the driver process
tree, and of this process during evaluation (above what it held before), and the largest score block a scorer
returned. The last line is `large_catalog_items=<n> train_peak_rss_gib=<x> eval_peak_rss_gib=<y>`: x the largest
rank's peak, y this process's peak during evaluation.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import load_config
from lakerec.data.feed import petastorm_urls
from lakerec.data.sequences import build_sequences, build_train_windows, layout_for_feed
from lakerec.evaluate.baselines import popularity_scorer
from lakerec.evaluate.metrics import EVAL_COLUMNS, ScoreFn, evaluate_all, model_scores, overall
from lakerec.lake import Lake
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.spark import get_spark
from lakerec.train.runner import train_distributed
from measure import HOROVOD_RANK, PeakMemory  # benchmarks/: the script's folder

GIB = 1024 ** 3
MAX_LEN, DIM, LAYERS, HEADS = 50, 64, 2, 2


def generated_events(spark, n_users: int, n_items: int, seed: int = 7):
    """(user_id, item_id, event_type, ts, event_id): Zipf(1) item popularity over the whole catalog (rank r drawn
    with probability ~ 1/r: r = floor((n + 1) ** u)), the rank scattered over ids by a multiplier prime to n."""
    length = F.least(F.lit(200), F.greatest(F.lit(3), F.exp(F.randn(seed) * 0.8 + F.log(F.lit(20.0))).cast("int")))
    users = spark.range(n_users).select(F.col("id").alias("u"), length.alias("n"))
    events = users.select("u", F.explode(F.sequence(F.lit(1), "n")).alias("pos"))
    rank = F.least(F.lit(n_items), F.pow(F.lit(n_items + 1.0), F.rand(seed + 1)).cast("long"))
    item = (rank * F.lit(_coprime(n_items))) % F.lit(n_items)
    return events.select(
        F.format_string("u%07d", "u").alias(T.USER_ID), F.format_string("i%07d", item).alias(T.ITEM_ID),
        F.lit("view").alias(T.EVENT_TYPE),
        (F.lit("2026-01-01").cast("timestamp") + F.make_interval(mins=F.col("pos"))).alias(T.TS),
        F.concat_ws("-", "u", "pos").alias(T.EVENT_ID))


def _coprime(n: int) -> int:
    """A multiplier that permutes 0..n-1 (prime to n), near the golden ratio of n so neighbours land far apart."""
    m = int(n * 0.618) | 1
    while np.gcd(m, n) != 1:
        m += 2
    return m


def build_lake(spark, lake: Lake, cfg, n_users: int, n_items: int) -> None:
    """silver.sequences and silver.train_windows over a catalog of n_items (every item indexed, most never seen)."""
    index = spark.range(n_items).select(F.format_string("i%07d", "id").alias(T.ITEM_ID),
                                        (F.col("id") + 1).cast("int").alias(T.ITEM_IDX))
    sequences = build_sequences(generated_events(spark, n_users, n_items), index, cfg.sequences)
    lake.write(T.SILVER_SEQUENCES, layout_for_feed(sequences, 4), mode="overwrite")
    windows = build_train_windows(lake.read(T.SILVER_SEQUENCES), cfg.sequences)
    lake.write(T.SILVER_TRAIN_WINDOWS, layout_for_feed(windows, 4), mode="overwrite")


def recorded(score_fn: ScoreFn, shapes: list) -> ScoreFn:
    """score_fn, recording the shape of every score block it returns (the evaluator's largest allocation)."""
    def batch(inputs: torch.Tensor):
        scores = score_fn(inputs)

        def asked(items: torch.Tensor) -> torch.Tensor:
            block = scores(items)
            shapes.append(tuple(block.shape))
            return block

        return asked

    return batch


def train(spark, lake: Lake, cfg, n_items: int, ranks: int, epochs: int):
    model_config = ModelConfig(n_items=n_items, max_len=MAX_LEN, dim=DIM, layers=LAYERS, heads=HEADS, dropout=0.2)
    conf = cfg.train.model_copy(update={"ranks": ranks, "epochs": epochs, "loss": "sampled", "timeout_s": 600})
    with PeakMemory(workers=(HOROVOD_RANK,)) as memory:
        start = time.perf_counter()
        result = train_distributed(spark, petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS)),
                                   petastorm_urls(lake.files(T.SILVER_SEQUENCES)), model_config, conf,
                                   str(Path(cfg.lake.root) / "checkpoints"))
        seconds = time.perf_counter() - start
    model = build_model(model_config)
    model.load_state_dict(result.state_dict)
    return model, result, seconds, memory


def evaluate(lake: Lake, model, n_items: int, eval_users: int, batch_size: int, item_chunk: int):
    rows = (lake.read(T.SILVER_SEQUENCES).where(f"{T.TEST_TARGET} > 0").orderBy(T.USER_ID).limit(eval_users)
            .select(*EVAL_COLUMNS).toPandas())
    shapes: list = []
    scorers = {"sasrec": recorded(model_scores(model), shapes),
               "pop": recorded(popularity_scorer(rows, n_items), shapes)}
    before = psutil.Process().memory_info().rss
    with PeakMemory(workers=(HOROVOD_RANK,)) as memory:
        start = time.perf_counter()
        table = evaluate_all(rows, n_items, [10], scorers, "test", batch_size, item_chunk=item_chunk)
        seconds = time.perf_counter() - start
    return table, len(rows), seconds, memory.peak_self, before, max(shapes, key=lambda s: s[0] * s[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--item-chunk", type=int, default=65536)
    parser.add_argument("--work")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-catalog-"))
    cfg = load_config("local", [f"lake.root={work}", f"spark.extra={{spark.driver.memory: {args.driver_memory}}}",
                                f"sequences.max_len={MAX_LEN}"])
    spark = get_spark(cfg)
    lake = Lake(str(work), spark)
    print(f"{spark.sparkContext.defaultParallelism} cores, {args.items:,} items, {args.users:,} users, "
          f"{args.ranks} rank(s), SASRec d={DIM} L={MAX_LEN}, sampled loss ({cfg.train.negatives} negatives), "
          f"train batch {cfg.train.batch_size}; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    start = time.perf_counter()
    build_lake(spark, lake, cfg, args.users, args.items)
    windows = lake.read(T.SILVER_TRAIN_WINDOWS).count()
    print(f"lake: {windows:,} training windows in {time.perf_counter() - start:.0f}s (untimed)", flush=True)

    model, result, train_s, memory = train(spark, lake, cfg, args.items, args.ranks, args.epochs)
    rank_peaks = sorted(memory.worker_peaks.values(), reverse=True)
    steps = result.ranks[0]["steps_per_epoch"] * len(result.history)
    print(f"train: {train_s:.0f}s, {len(result.history)} epoch(s), {steps} steps per rank, valid ndcg@10 "
          f"{result.best['valid_ndcg_10']:.4f}; peak RSS per rank (GiB): "
          f"{', '.join(f'{p / GIB:.2f}' for p in rank_peaks) or 'none seen'}; driver tree {memory.peak / GIB:.2f}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    table, users, eval_s, eval_peak, before, block = evaluate(lake, model, args.items, args.eval_users,
                                                              args.batch_size, args.item_chunk)
    for name in ("sasrec", "pop"):
        m = overall(table, name)
        print(f"evaluate {name}: ndcg@10 {m['ndcg_10']:.4f} hr@10 {m['hr_10']:.4f} coverage@10 "
              f"{m['coverage_10']:.5f}, {m['seconds']:.0f}s", flush=True)
    print(f"evaluate: {users:,} users x {args.items + 1:,} columns in {eval_s:.0f}s; largest score block "
          f"{block[0]} x {block[1]} ({block[0] * block[1] * 4 / 2 ** 20:.0f} MiB fp32; one users x items block "
          f"would be {users * (args.items + 1) * 4 / GIB:.1f} GiB); process peak RSS {eval_peak / GIB:.2f} GiB "
          f"({(eval_peak - before) / GIB:+.2f} over the {before / GIB:.2f} held before); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"large_catalog_items={args.items} train_peak_rss_gib={(rank_peaks[0] if rank_peaks else 0) / GIB:.2f} "
          f"eval_peak_rss_gib={eval_peak / GIB:.2f}")
    return 0 if rank_peaks else 1


if __name__ == "__main__":
    sys.exit(main())
