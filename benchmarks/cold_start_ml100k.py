"""Cold start on MovieLens 100K: the text-aware model beside the ID-only model, popularity and a text-only baseline.

    .venv/bin/python benchmarks/cold_start_ml100k.py [--lake DIR] [--protocols random newest] [--set key=value ...]
        [--reuse-models] [--encoders FOLDER ...]

The real stages, in one Spark session, on conf/sources/movielens.yaml: ingest, items, silver, embed once; then
per holdout protocol (sequences.holdout: `random` = 10% of the items by a seeded hash, `newest` = the 10% of
dated movies with the latest release dates) the sequences stage, the train stage twice (ID-only, then
train.text.enabled, each registered under its own name) and a full-ranking test evaluation on the cold, long-tail
and warm slices (lakerec.evaluate.coldstart), beside most popular, new-items popularity (the items released within
evaluate.new_items_window_days before the newest event of silver.events first) and the text-only kNN; `_age`
rows add the item-age prior (lakerec.evaluate.itemage, weight evaluate.age_prior_weight) to the text-aware model
and the kNN for items without ID history. --reuse-models evaluates what an earlier run of one protocol left in
the same --lake (its tables and newest registered versions; a model not registered yet is left out) without
running any stage; --encoders adds a text-only kNN per local sentence-encoder folder (texts/s printed), the
encoder comparison without a retrain. The comparison goes to MLflow (run `cold_start`: metrics, tables, plots)
and is printed; the last line is
`cold_ndcg10_text=<x> cold_ndcg10_best_baseline=<y> warm_ndcg10_ratio_text_vs_id=<z>` for the first protocol.
Reads ../shared/data/ml-100k (licensed, never copied here); exits with a clear message where it is absent.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from movielens import DATA, REPO, source_config  # benchmarks/: the script's folder
ID, TEXT, POP, NEW_POP, TEXT_ONLY = "id_only", "text_aware", "pop", "new_pop", "text_knn"
BASELINES = (ID, POP, NEW_POP, TEXT_ONLY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--protocols", nargs="+", default=["random", "newest"], choices=["random", "newest"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    parser.add_argument("--reuse-models", action="store_true", help="evaluate an earlier run's lake and models")
    parser.add_argument("--encoders", nargs="*", default=[], help="local sentence-encoder folders for extra kNNs")
    args = parser.parse_args()
    if not (DATA / "u.data").is_file() or not (DATA / "u.item").is_file():
        print(f"skipped: MovieLens 100K not found at {DATA} (u.data, u.item; licensed data, never in the repository)")
        return 0

    import mlflow
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    import jobs.embed
    import jobs.ingest
    import jobs.items
    import jobs.sequences
    import jobs.silver
    import jobs.train
    from lakerec import tables as T
    from lakerec import tracking
    from lakerec.context import run_stage
    from lakerec.data.sequences import item_ids_in_order
    from lakerec.evaluate import itemage
    from lakerec.evaluate.baselines import new_items_popularity_scorer, popularity_scorer, release_dates
    from lakerec.evaluate.coldstart import (coldstart_table, comparison_artifacts, comparison_metrics, text_scorer,
                                            wide)
    from lakerec.evaluate.metrics import EVAL_COLUMNS, model_scores, split_data, split_popularity
    from lakerec.lake import Lake
    from lakerec.models.registry import load_model
    from lakerec.spark import get_spark
    from lakerec.text.embeddings import embedding_matrix, item_text, read_item_embeddings
    from lakerec.text.encoder import encode

    lake_root = Path(args.lake or tempfile.mkdtemp(prefix="lakerec-coldstart-")) / "lake"
    base = [f"lake.root={lake_root}", f"input.events.path={DATA / 'u.data'}", f"input.items.path={DATA / 'u.item'}",
            *args.overrides]
    config = source_config(base)

    cfg = config()
    spark = get_spark(cfg)
    experiment = tracking.setup(cfg)  # the run below goes to lakerec's experiment (artifacts in the lake)
    start = time.perf_counter()
    if args.reuse_models and len(args.protocols) > 1:
        raise SystemExit("--reuse-models evaluates the lake as the earlier run left it: name one protocol, its last")
    for name, job in (("ingest", jobs.ingest), ("items", jobs.items), ("silver", jobs.silver), ("embed", jobs.embed)):
        if not args.reuse_models:
            result = run_stage(name, job.run, cfg, spark)
            print(result.describe(name), flush=True)
    lake = Lake(cfg.lake.root, spark)
    texts = read_item_embeddings(lake.read(T.SILVER_ITEM_EMBEDDINGS), cfg.text.encoder).toPandas()
    cut = lake.read(T.SILVER_EVENTS).agg(F.max(T.TS)).first()[0]  # the day the new-items list is made for
    item_texts = lake.read(T.SILVER_ITEMS).select(F.col(T.ITEM_ID).cast("string"), item_text().alias("text")).toPandas()
    extra_text = {}
    for folder in args.encoders:
        encode(["warm up"], folder)
        begin = time.perf_counter()
        vectors = encode(list(item_texts["text"]), folder)
        rate = len(item_texts) / (time.perf_counter() - begin)
        name = f"{TEXT_ONLY}_{Path(folder).name}"
        extra_text[name] = dict(zip(item_texts[T.ITEM_ID], vectors))
        print(f"encoder {folder}: dim {vectors.shape[1]}, {rate:.0f} texts/s ({len(item_texts)} texts)", flush=True)

    tables = {}
    for protocol in args.protocols:
        holdout = f"sequences.holdout.protocol={protocol}"
        if not args.reuse_models:
            result = run_stage("sequences", jobs.sequences.run, config(holdout), spark)
            print(f"[{protocol}] {result.describe('sequences')}", flush=True)
        versions = {}
        for label, extra in ((ID, ()), (TEXT, ("train.text.enabled=true",))):
            train_cfg = config(holdout, f"mlflow.registered_model=coldstart-{protocol}-{label}", *extra)
            if args.reuse_models:
                name = train_cfg.mlflow.registered_model
                found = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
                if found:
                    versions[label] = (name, str(max(int(v.version) for v in found)))
                else:
                    print(f"[{protocol}] {label}: no registered model {name!r} yet: left out", flush=True)
                continue
            result = run_stage("train", jobs.train.run, train_cfg, spark)
            print(f"[{protocol}] {label}: {result.describe('train')}", flush=True)
            versions[label] = (train_cfg.mlflow.registered_model, str(int(result.metrics["model_version"])))

        rows = (lake.read(T.SILVER_SEQUENCES).where(f"{T.TEST_TARGET} > 0").select(*EVAL_COLUMNS).toPandas())
        models = {label: load_model(ref) for label, ref in versions.items()}
        item_ids = item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX))
        if any(meta["item_ids"] != item_ids for _, meta in models.values()):
            raise SystemExit("a model's item index is not silver.item_index's: rerun without --reuse-models")
        n_items = len(item_ids)
        scorers = {label: model_scores(model) for label, (model, _) in models.items()}
        scorers[POP] = popularity_scorer(rows, n_items, "test")
        seen = itemage.events_but_newest(lake.read(T.SILVER_EVENTS))  # no test target dates an undated item
        released = release_dates(lake.read(T.SILVER_ITEMS), seen, item_ids)
        scorers[NEW_POP] = new_items_popularity_scorer(rows, n_items, released, cut,
                                                       cfg.evaluate.new_items_window_days, "test")
        scorers[TEXT_ONLY] = text_scorer(embedding_matrix(texts, item_ids))
        for name, by_id in extra_text.items():
            dim = len(next(iter(by_id.values())))
            matrix = np.stack([np.zeros(dim, np.float32)] + [by_id.get(i, np.zeros(dim, np.float32)) for i in item_ids])
            scorers[name] = text_scorer(matrix)
        no_history = split_popularity(split_data(rows, "test"), n_items) == 0
        before = itemage.events_before_test(seen, item_ids, no_history)
        days = itemage.release_day_numbers(released)
        propensity = itemage.age_propensity(before[T.ITEM_IDX].to_numpy(), before["day"].to_numpy(), days)
        print(f"[{protocol}] item-age propensity by bucket (edges {itemage.AGE_EDGES_DAYS} days): "
              f"{np.round(propensity / propensity.mean(), 3).tolist()}", flush=True)
        now = before.groupby(T.USER_ID)["day"].max().to_dict()
        for label in [m for m in (TEXT, TEXT_ONLY) if m in scorers]:
            scorers[f"{label}_age"] = itemage.age_prior_scorer(scorers[label], now, days, propensity, no_history,
                                                               cfg.evaluate.age_prior_weight)
        tables[protocol] = coldstart_table(rows, n_items, scorers, cfg.evaluate.ks, cfg.evaluate.head_share)

    with mlflow.start_run(experiment_id=experiment, run_name="cold_start"):
        mlflow.log_params({"protocols": ",".join(args.protocols), "share": cfg.sequences.holdout.share,
                           "seed": cfg.sequences.holdout.seed, "encoder": cfg.text.encoder,
                           "new_items_window_days": cfg.evaluate.new_items_window_days,
                           "age_prior_weight": cfg.evaluate.age_prior_weight})
        mlflow.log_metrics(comparison_metrics(tables))
        tracking.log_artifacts(comparison_artifacts(tables))
    pd.set_option("display.width", 200)
    print(f"\n{time.perf_counter() - start:.0f} s; lake {lake_root}; MLflow run 'cold_start' in {cfg.tracking_uri}")
    for protocol, table in tables.items():
        users = table[(table["model"] == table["model"].iloc[0]) & (table["metric"] == "users")]
        users = users.set_index("slice")["value"]
        print(f"\nholdout protocol {protocol} (test users per slice: "
              f"{', '.join(f'{s} {int(n)}' for s, n in users.items())})\n{wide(table).round(4).to_string()}")
    print(summary_line(tables[args.protocols[0]]))
    return 0


def summary_line(table) -> str:
    """The benchmark's last line, from one protocol's tidy table."""
    def ndcg(model: str, slice_: str) -> float:
        rows = table[(table["model"] == model) & (table["slice"] == slice_) & (table["metric"] == "ndcg_10")]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")

    best = max((v for v in (ndcg(m, "cold") for m in BASELINES) if v == v), default=float("nan"))  # nan: left out
    ratio = ndcg(TEXT, "warm") / ndcg(ID, "warm")
    return f"cold_ndcg10_text={ndcg(TEXT, 'cold'):.4f} cold_ndcg10_best_baseline={best:.4f} " \
           f"warm_ndcg10_ratio_text_vs_id={ratio:.3f}"


if __name__ == "__main__":
    sys.exit(main())
