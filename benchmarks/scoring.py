"""Scoring every user, side by side: lakerec's scorer and Spark ALS `recommendForAllUsers`, same users, items and N.

    .venv/bin/python benchmarks/scoring.py [--sizes ml100k,50000x50000,200000x50000] [--top-n 10]
        [--precision fp32,bf16] [--shortlist N] [--work DIR]

For each size, untimed: the events (MovieLens 100K's ratings from ../shared/data/ml-100k, or generated: history
lengths log-normal around 12 items, capped at 200, items drawn with a heavy head), cached in memory; ALS (rank 64,
implicit) fitted on them; a SASRec (d 64, 2 layers, 2 heads, max length 50; untrained, as speed does not depend on
the weights). Timed, each forced to completion by Spark's noop sink:
- ALS: `recommendForAllUsers(N)` from the fitted factors (no history excluded, no reasons);
- for each `--precision` (score.precision): lakerec `user_states` from the events + `score_users` (the Transformer,
  the history excluded, a reason per row), and lakerec -> Delta: popularity, the same scoring and the rows written
  to a Delta table in one commit (the job's work);
Untimed after that: every mode's Delta table is compared with fp32's, user by user (the share of users whose
top-N items or order differ from exact fp32 scoring: 0 by construction), and bf16's users from the proven
shortlist / scored in fp32 are counted. Prints users/s and the peak memory of the process tree and of the largest
Spark Python worker (one task: bounded by the batch size, so flat as users grow); the last line is
`scoring_end_to_end_speedup_vs_als=<x>`: users/s with the Delta write over ALS's, at the last size, for the
fastest mode whose lists equal fp32's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k" / "u.data"

from lakerec import tables as T  # noqa: E402
from lakerec.config import ScoreConf, load_config  # noqa: E402
from lakerec.lake import Lake  # noqa: E402
from lakerec.models.sasrec import SASRec, SASRecConfig  # noqa: E402
from lakerec.score.batch import (Candidates, ScoreCounters, item_users, popularity, score_users, stamp,  # noqa: E402
                                 user_states)
from lakerec.spark import get_spark  # noqa: E402
from measure import PeakMemory  # noqa: E402

T0 = datetime(2026, 1, 1)
MAX_LEN, DIM, RANK = 50, 64, 64


def movielens_events(spark) -> tuple[DataFrame, list[str]]:
    raw = spark.read.csv(str(ML100K), sep="\t", schema="u string, i string, r double, t long")
    events = raw.select(F.concat(F.lit("u"), "u").alias(T.USER_ID), F.col("i").alias(T.ITEM_ID),
                        F.lit("rating").alias(T.EVENT_TYPE), F.timestamp_seconds("t").alias(T.TS),
                        F.monotonically_increasing_id().cast("string").alias(T.EVENT_ID))
    items = sorted(r[0] for r in raw.select("i").distinct().collect())
    return events, items


def generated_events(spark, n_users: int, n_items: int, seed: int = 7) -> tuple[DataFrame, list[str]]:
    length = F.least(F.lit(200), F.greatest(F.lit(1), F.exp(F.randn(seed) + F.log(F.lit(12.0))).cast("int")))
    users = spark.range(n_users).select(F.col("id").alias("u"), length.alias("n"))
    events = users.select("u", F.explode(F.sequence(F.lit(1), "n")).alias("pos"))
    item = (F.pow(F.rand(seed + 1), 3) * n_items).cast("int")  # a heavy head, a long tail
    return events.select(
        F.concat(F.lit("u"), "u").alias(T.USER_ID), F.concat(F.lit("i"), item).alias(T.ITEM_ID),
        F.lit("view").alias(T.EVENT_TYPE), (F.lit(T0) + F.make_interval(mins=F.col("pos"))).alias(T.TS),
        F.concat_ws("-", "u", "pos").alias(T.EVENT_ID),
    ), [f"i{k}" for k in range(n_items)]


def fit_als(events: DataFrame, item_ids: list[str], seed: int = 42):
    """ALS on integer ids (its requirement), fitted briefly: recommending costs the same whatever the fit."""
    item_num = events.sparkSession.createDataFrame(list(enumerate(item_ids)), f"item int, {T.ITEM_ID} string")
    ratings = (events.join(F.broadcast(item_num), T.ITEM_ID)
               .groupBy(F.expr(f"int(substr({T.USER_ID}, 2))").alias("user"), "item").count())
    als = ALS(rank=RANK, maxIter=2, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="count",
              seed=seed, coldStartStrategy="drop")
    return als.fit(ratings)


def run_timed(name: str, n_users: int, fn) -> dict:
    with PeakMemory() as memory:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return {"scorer": name, "seconds": seconds, "users_per_s": n_users / seconds,
            "peak_gib": memory.peak / 2**30, "worker_peak_mib": memory.peak_worker / 2**20}


def bench_size(spark, lake: Lake, size: str, top_n: int, batch_size: int, precisions: list[str],
               shortlist: int | None) -> tuple[dict, list[dict]]:
    if size == "ml100k":
        events, item_ids = movielens_events(spark)
    else:
        n_users, n_items = (int(x) for x in size.lower().split("x"))
        events, item_ids = generated_events(spark, n_users, n_items)
    events = events.persist()
    stats = events.agg(F.count(F.lit(1)).alias("events"), F.countDistinct(T.USER_ID).alias("users")).first()
    users = int(stats["users"])
    info = {"size": size, "users": users, "items": len(item_ids), "events": int(stats["events"])}

    model = fit_als(events, item_ids)
    torch.manual_seed(0)
    sasrec = SASRec(SASRecConfig(n_items=len(item_ids), max_len=MAX_LEN, dim=DIM, layers=2, heads=2)).eval()
    everything = Candidates(np.arange(1, len(item_ids) + 1, dtype=np.int64), np.zeros(len(item_ids), np.float32))

    def lakerec_topn(conf: ScoreConf, candidates: Candidates, counters=None) -> DataFrame:
        return score_users(spark, user_states(events, item_ids, MAX_LEN, None), sasrec, item_ids, candidates, conf,
                           counters=counters)

    def publish(conf: ScoreConf, table: str, counters) -> None:
        (recent,), total = item_users(events, item_ids, [30])
        candidates = Candidates(everything.item_idx, popularity(recent, total)[everything.item_idx])
        lake.write(table, stamp(lakerec_topn(conf, candidates, counters), "bench", "0", "bench", 0),
                   mode="overwrite")

    rows = [run_timed("Spark ALS recommendForAllUsers", users,
                      lambda: model.recommendForAllUsers(top_n).write.format("noop").mode("overwrite").save())]
    for precision in precisions:
        conf = ScoreConf(top_n=top_n, batch_size=batch_size, precision=precision, shortlist=shortlist)
        scored = run_timed(f"lakerec {precision} + reasons", users,
                           lambda: lakerec_topn(conf, everything).write.format("noop").mode("overwrite").save())
        counters = ScoreCounters.create(spark) if precision == "bf16" else None  # counted in the Delta run
        published = run_timed(f"lakerec {precision} -> Delta gold.topn", users,
                              lambda: publish(conf, f"gold.topn_{precision}", counters))
        for row in (scored, published):
            row["precision"] = precision
        if counters is not None:
            published["shortlisted"], published["fallback"] = counters.shortlisted.value, counters.fallback.value
        rows += [scored, published]
    reference = f"gold.topn_{precisions[0]}" if "fp32" not in precisions else "gold.topn_fp32"
    for row in rows[2::2]:
        row["differ"] = differing_users(lake, f"gold.topn_{row['precision']}", reference, top_n)
    events.unpersist()
    return info, rows


def differing_users(lake: Lake, table: str, reference: str, top_n: int) -> float:
    """Share of users whose ranked top-N item list in `table` is not the one in `reference`."""
    def lists(name: str) -> DataFrame:
        ranked = F.sort_array(F.collect_list(F.struct(T.RANK, T.ITEM_ID)))
        return lake.read(name).groupBy(T.USER_ID).agg(ranked.alias("items"))
    joined = lists(table).alias("a").join(lists(reference).alias("b"), T.USER_ID, "full_outer")
    counts = joined.agg(F.count(F.lit(1)).alias("users"),
                        F.sum((~F.coalesce(F.col("a.items") == F.col("b.items"), F.lit(False))).cast("long"))
                        .alias("differ")).first()
    return counts["differ"] / max(counts["users"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="ml100k,50000x50000,200000x50000")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=ScoreConf().batch_size)
    parser.add_argument("--precision", default="fp32,bf16", help="score.precision modes, comma-separated")
    parser.add_argument("--shortlist", type=int, default=None, help="score.shortlist for bf16 (default: 4 x top-n)")
    parser.add_argument("--work", default=None, help="folder for the Delta output (default: a temporary one)")
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    ScoreConf(top_n=args.top_n, shortlist=args.shortlist)  # a shortlist below top-n fails here, not after ALS
    for precision in precisions:
        ScoreConf(precision=precision)
    if "ml100k" in sizes and not ML100K.is_file():
        print(f"skipping ml100k: MovieLens 100K not found at {ML100K} (licensed, never in the repository)")
        sizes.remove("ml100k")
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-scoring-"))
    cfg = load_config("local", [f"lake.root={work}", f"spark.extra={{spark.driver.memory: {args.driver_memory}}}"])
    spark = get_spark(cfg)
    lake = Lake(str(work), spark)
    shortlist = args.shortlist or 4 * args.top_n
    print(f"{spark.sparkContext.defaultParallelism} cores, top {args.top_n}, scoring batch {args.batch_size}, "
          f"SASRec d={DIM} L={MAX_LEN}, ALS rank {RANK}, bf16 shortlist {shortlist}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    header = f"{'size':>14} {'users':>8} {'items':>7} {'events':>9}  {'scorer':<34} {'s':>7} {'users/s':>9} " \
             f"{'peak GiB':>8} {'worker MiB':>10} {'vs ALS':>6} {'differ':>7} {'fp32 fallback':>13}"
    print(header)
    best = None
    for size in sizes:
        info, rows = bench_size(spark, lake, size, args.top_n, args.batch_size, precisions, args.shortlist)
        als = rows[0]["users_per_s"]
        for row in rows:
            differ = f"{row['differ']:.4%}" if "differ" in row else "-"
            fallback = (f"{row['fallback'] / max(row['fallback'] + row['shortlisted'], 1):.2%}"
                        if "fallback" in row else "-")
            print(f"{info['size']:>14} {info['users']:>8} {info['items']:>7} {info['events']:>9}  "
                  f"{row['scorer']:<34} {row['seconds']:>7.1f} {row['users_per_s']:>9.0f} {row['peak_gib']:>8.2f} "
                  f"{row['worker_peak_mib']:>10.0f} {row['users_per_s'] / als:>6.2f} {differ:>7} {fallback:>13}",
                  flush=True)
        exact = [row for row in rows[2::2] if row["differ"] == 0]
        best = max(exact, key=lambda row: row["users_per_s"]) if exact else None
        if best is not None:
            print(f"{'':>14} fastest exact mode: {best['precision']}, {best['users_per_s'] / als:.2f}x ALS with the "
                  f"Delta write (compute only: {rows[rows.index(best) - 1]['users_per_s'] / als:.2f}x); "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if best is None:
        return 1
    print(f"scoring_end_to_end_speedup_vs_als={best['users_per_s'] / rows[0]['users_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
