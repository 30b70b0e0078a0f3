"""The baselines on MovieLens 100K through lakerec's evaluator: most popular, co-occurrence and ALS tuned on valid.

    .venv/bin/python benchmarks/evaluate_ml100k.py [--max-len 50] [--set evaluate.als.ranks=[64] ...]

All 100,000 ratings are interactions, ordered per user by time with ties broken by file order (the library's
item index and leave-last-out sequences: last item test, second-last valid). Full ranking over all 1,682 items,
the user's history excluded. Prints HR/NDCG/MRR at 5/10/20, MRR, coverage and popularity bias of the top-10 lists
per baseline and the evaluator's wall time per model (and with a SASRec forward pass, as each epoch would run
it), then the co-occurrence decays and the ALS grid on valid, both from conf (evaluate.cooc_decays, evaluate.als).
Reads ../shared/data/ml-100k (licensed, never copied here); exits with a message where absent.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import SequencesConf, load_config
from lakerec.data.sequences import build_item_index, build_sequences
from lakerec.evaluate import baselines as B
from lakerec.evaluate.metrics import EVAL_COLUMNS, evaluate_all, model_scores
from lakerec.evaluate.metrics import overall as overall_of
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.spark import get_spark

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-100k" / "u.data"
COLUMNS = ("hr_5", "ndcg_5", "hr_10", "ndcg_10", "mrr_10", "hr_20", "ndcg_20", "mrr", "coverage_10",
           "pop_bias_10", "seconds")


def movielens_sequences(spark, max_len: int) -> tuple[pd.DataFrame, int]:
    """u.data -> silver.sequences-like rows (the evaluation columns) and the catalog size."""
    raw = pd.read_csv(DATA, sep="\t", names=[T.USER_ID, T.ITEM_ID, "rating", "timestamp"], dtype=str)
    raw[T.EVENT_ID] = [f"{i:06d}" for i in range(len(raw))]  # file order breaks ties in time
    raw[T.EVENT_TYPE] = "rating"
    events = (spark.createDataFrame(raw)
              .withColumn(T.TS, F.timestamp_seconds(F.col("timestamp").cast("long"))))
    items = events.select(T.ITEM_ID).distinct()
    index = build_item_index(events, items).cache()
    rows = build_sequences(events, index, SequencesConf(max_len=max_len)).select(*EVAL_COLUMNS).toPandas()
    return rows, index.count()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=50, help="items of the input the co-occurrence scorer sees")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: MovieLens 100K not found at {DATA} (licensed data, never in the repository)")
        return 0
    cfg = load_config("local", args.overrides)
    conf, g = cfg.evaluate, cfg.evaluate.als
    spark = get_spark(cfg)
    rows, n_items = movielens_sequences(spark, args.max_len)
    print(f"MovieLens 100K: {len(rows)} users, {n_items} items, {sum(len(h) for h in rows[T.HISTORY])} interactions")

    start = time.perf_counter()
    best, grid = B.tune_als(spark, rows, n_items, B.als_grid(g.ranks, g.reg_params, g.alphas, g.max_iter, g.seed),
                            conf.ks)
    tuning = time.perf_counter() - start
    decay, decays = B.tune_cooccurrence(rows, n_items, conf.cooc_decays, conf.ks)
    fitted = {}
    for name, fit in ((B.POP, lambda: B.popularity_scorer(rows, n_items)),
                      (B.COOC, lambda: B.cooccurrence_scorer(rows, n_items, "test", decay)),
                      (B.ALS_NAME, lambda: B.als_scorer(spark, rows, n_items, "test", best))):
        start = time.perf_counter()
        fitted[name] = (fit(), time.perf_counter() - start)
    table = evaluate_all(rows, n_items, conf.ks, {name: fn for name, (fn, _) in fitted.items()}, "test",
                         conf.batch_size, head_share=conf.head_share, length_edges=conf.length_edges)

    overall = table[table["slice"] == "all"].pivot(index="model", columns="metric", values="value")
    overall = overall.loc[list(fitted), [c for c in COLUMNS if c in overall]]
    overall.insert(len(overall.columns), "fit_s", [s for _, s in fitted.values()])
    pd.set_option("display.width", 200)
    print(f"\ntest split, full ranking ({n_items} items, history excluded); seconds = evaluator wall time per model,"
          f" fit_s = fitting it\n{overall.round(4).to_string()}")
    by_slice = table[table["metric"] == "ndcg_10"].pivot(index="slice", columns="model", values="value")
    users = table[(table["metric"] == "users") & (table["model"] == B.POP)].set_index("slice")["value"]
    print(f"\nNDCG@10 by slice\n{by_slice[list(fitted)].assign(users=users).round(4).to_string()}")
    untrained = SASRec(SASRecConfig(n_items=n_items, max_len=args.max_len))  # speed only: d=64, 2 layers
    timing = evaluate_all(rows, n_items, conf.ks, {"sasrec": model_scores(untrained)}, "valid", conf.batch_size)
    print(f"\nevaluator with a SASRec forward pass (untrained, d=64, 2 layers, max length {args.max_len}), valid "
          f"split as in every epoch: {overall_of(timing, 'sasrec')['seconds']:.2f} s")
    print(f"\nco-occurrence decay on valid (best {decay})\n"
          f"{decays[['decay', 'hr_10', 'ndcg_10', 'mrr_10']].round(4).to_string(index=False)}")
    print(f"\nALS grid on valid ({tuning:.0f} s; best rank={best.rank} reg={best.reg_param} alpha={best.alpha})\n"
          f"{grid[['rank', 'reg_param', 'alpha', 'hr_10', 'ndcg_10', 'mrr_10']].round(4).to_string(index=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
