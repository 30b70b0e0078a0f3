"""Replay MovieLens 100K by time: a daily-style warm refresh beside a retrain from scratch, a stale model and recent
popularity, period after period.

    .venv/bin/python benchmarks/refresh_replay.py [--periods 8] [--days 7] [--refresh-epochs 10] [--lake DIR]
                                                  [--text] [--set key=value ...]

Never a random split: the ratings are cut by time. D0 is (periods + 1) x days before the last rating. A model is
trained from scratch on everything before D0 (lakerec's sequences and train stages, conf/sources/movielens.yaml).
Then for each period k = 1..periods, the ratings of [t(k-1), t(k)) join silver.events (t(0) = D0), the sequences
stage grows the item index, and
  (i)   refresh: the train stage warm-started from the previous refresh's version (train.init=<version>,
        --refresh-epochs; the new windows + the train.replay_share sample),
  (ii)  full: the train stage from scratch on everything so far,
  (iii) stale: the D0 model, never updated,
  (iv)  pop: the most rated items of the last period,
  (v)   refresh_recent: (i) times a prior (1 + n)^w, n an item's raters in the last period: the score stage's
        score.recent_weight = w, score.recent_days = days (with_recent); w chosen among
        RECENT_WEIGHTS on the period before, every input of which is past (for period 1: the week after D0, D0's
        model, the counts of the week before it): never on the period it is reported on,
are evaluated on the next period [t(k), t(k+1)) as gold.topn would be: each user's list is made at t(k) from their
history before it, and every rating in the period by a user who rated before t(k) is a target of that list (full
ranking over every item known at t(k), the items released during the replay included; history before t(k)
excluded; a target no model can know yet is a miss). Slice `cold`: targets first rated on or after D0. With
--text the items and embed stages run and a text-only kNN joins (vi). Printed per period and in total (each target
weighs the same): NDCG@10, HR@10, cold NDCG@10, the training wall time of (i) and (ii); the last line is
`refresh_ndcg10_ratio_vs_full=<x> refresh_time_ratio_vs_full=<y> stale_ndcg10_ratio_vs_full=<z>
newest_cold_ndcg10=<c> newest_cold_ratio_vs_textknn=<r>` (c: the refresh model's cold NDCG@10 over the replay;
r: nan without --text). silver.events is written from u.data directly (ids, rating time, line order breaking
ties): the ETL is the same for every strategy and not what is measured. Reads ../shared/data/ml-100k (licensed,
never copied here); exits with a clear message where it is absent.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from movielens import DATA, REPO, source_config  # benchmarks/: the script's folder
sys.path.insert(0, str(REPO))
REFRESH, FULL, STALE, POP, TEXT_KNN = "refresh", "full", "stale", "pop", "text_knn"
RECENT = "refresh_recent"  # the refresh model times a recent-popularity prior (with_recent)
RECENT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # 8 since the 4-week run picked 4 twice
K = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", type=int, default=8, help="replayed periods after D0 (default 8)")
    parser.add_argument("--days", type=int, default=7, help="days per period (default 7: weeks)")
    parser.add_argument("--refresh-epochs", type=int, default=10, help="epoch budget of a refresh (default 10)")
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--text", action="store_true", help="also run items + embed and a text-only kNN")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    args = parser.parse_args()
    if not (DATA / "u.data").is_file():
        print(f"skipped: MovieLens 100K not found at {DATA} (u.data; licensed data, never in the repository)")
        return 0

    import numpy as np
    import pandas as pd
    import torch

    import jobs.sequences
    import jobs.train
    from lakerec import tables as T
    from lakerec import tracking
    from lakerec.context import run_stage
    from lakerec.data.sequences import item_ids_in_order
    from lakerec.evaluate.baselines import same_for_everyone
    from lakerec.lake import Lake
    from lakerec.models.registry import load_model
    from lakerec.spark import get_spark

    lake_root = Path(args.lake or tempfile.mkdtemp(prefix="lakerec-replay-")) / "lake"
    base = [f"lake.root={lake_root}", f"input.items.path={DATA / 'u.item'}", *args.overrides]
    config = source_config(base)

    cfg = config()
    spark = get_spark(cfg)
    tracking.setup(cfg)
    lake = Lake(cfg.lake.root, spark)
    ratings = read_ratings(DATA / "u.data")
    end = ratings["ts"].max()
    d0 = (end - pd.Timedelta(days=args.days * (args.periods + 1))).normalize()
    bounds = [d0 + pd.Timedelta(days=args.days * k) for k in range(args.periods + 2)]
    first_rated = ratings.groupby("item_id")["ts"].min()
    write_items(spark, lake, args.text)
    text = None
    if args.text:
        text = item_texts(cfg, spark, lake)

    def append_events(frame) -> None:
        lake.write(T.SILVER_EVENTS, events_frame(spark, frame), mode="append", partition_by=[T.DT])

    def train(name: str, *extra: str):
        result = run_stage("train", jobs.train.run, config(f"mlflow.registered_model=replay-{name}", *extra), spark)
        return str(int(result.metrics["model_version"])), result.seconds

    append_events(ratings[ratings["ts"] < d0])
    run_stage("sequences", jobs.sequences.run, cfg, spark)
    v0, seconds0 = train(REFRESH)
    print(f"D0 {d0.date()}: {int((ratings['ts'] < d0).sum())} ratings, model from scratch in {seconds0:.0f} s",
          flush=True)
    versions = {REFRESH: v0, FULL: None}
    stale = load_model(("replay-refresh", v0))
    # the prior's weight for period 1, chosen on the week after D0 with D0's model and the week before D0's counts
    d0_items = item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX))
    weight = pick_weight(aligned(stale[0], stale[1]["item_ids"], d0_items),
                         recent_counts(ratings, d0 - pd.Timedelta(days=args.days), d0, d0_items),
                         next_period(ratings, bounds[0], bounds[1], d0_items, cfg.sequences.max_len), len(d0_items))
    rows = []
    for k in range(1, args.periods + 1):
        append_events(ratings[(ratings["ts"] >= bounds[k - 1]) & (ratings["ts"] < bounds[k])])
        run_stage("sequences", jobs.sequences.run, cfg, spark)
        versions[REFRESH], refresh_s = train(REFRESH, f"train.init={versions[REFRESH]}",
                                             f"train.epochs={args.refresh_epochs}")
        versions[FULL], full_s = train(FULL)
        item_ids = item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX))
        scorers = {REFRESH: load_model(("replay-refresh", versions[REFRESH])),
                   FULL: load_model(("replay-full", versions[FULL])), STALE: stale}
        split = next_period(ratings, bounds[k], bounds[k + 1], item_ids, cfg.sequences.max_len)
        counts = recent_counts(ratings, bounds[k - 1], bounds[k], item_ids)
        cold = first_rated.reindex(split["target_item"]).to_numpy() >= np.datetime64(d0)
        row = {"period": k, "start": bounds[k].date(), "users": len(set(split["users"])),
               "targets": len(split["targets"]), "cold": int(cold.sum()), "recent_weight": weight,
               f"{REFRESH}_s": refresh_s, f"{FULL}_s": full_s}
        fns = {name: aligned(model, meta["item_ids"], item_ids) for name, (model, meta) in scorers.items()}
        fns[RECENT] = with_recent(fns[REFRESH], counts, weight)
        fns[POP] = same_for_everyone(counts)
        if text is not None:
            fns[TEXT_KNN] = text_knn(text, item_ids)
        for name, fn in fns.items():
            ranks = rank(fn, split, len(item_ids))
            row[f"{name}_ndcg"], row[f"{name}_hr"] = ndcg(ranks), hit(ranks)
            row[f"{name}_cold_ndcg"] = ndcg(ranks[torch.as_tensor(cold)]) if cold.any() else float("nan")
        rows.append(row)
        weight = pick_weight(fns[REFRESH], counts, split, len(item_ids))  # for the next period: this one is past
        print(" ".join(f"{key}={fmt(value)}" for key, value in row.items()), flush=True)

    table = pd.DataFrame(rows)
    names = [n for n in (REFRESH, RECENT, FULL, STALE, POP, TEXT_KNN) if f"{n}_ndcg" in table]
    total = {f"{n}_{m}": weighted(table, f"{n}_{m}", "cold" if m == "cold_ndcg" else "targets")
             for n in names for m in ("ndcg", "hr", "cold_ndcg")}
    pd.set_option("display.width", 250)
    print(f"\nlake {lake_root}; D0 {d0.date()}, {args.periods} periods of {args.days} days\n"
          f"{table.round(4).to_string(index=False)}")
    print("total (target-weighted): " + " ".join(f"{k}={v:.4f}" for k, v in total.items()) +
          f" {REFRESH}_s={table[f'{REFRESH}_s'].sum():.0f} {FULL}_s={table[f'{FULL}_s'].sum():.0f}")
    text_cold = total.get(f"{TEXT_KNN}_cold_ndcg", float("nan"))
    print(f"refresh_ndcg10_ratio_vs_full={total['refresh_ndcg'] / total['full_ndcg']:.3f} "
          f"refresh_time_ratio_vs_full={table[f'{REFRESH}_s'].sum() / table[f'{FULL}_s'].sum():.3f} "
          f"stale_ndcg10_ratio_vs_full={total['stale_ndcg'] / total['full_ndcg']:.3f} "
          f"newest_cold_ndcg10={total['refresh_cold_ndcg']:.4f} "
          f"newest_cold_ratio_vs_textknn={total['refresh_cold_ndcg'] / text_cold if text_cold else float('nan'):.3f}")
    return 0


def read_ratings(path: Path):
    """u.data as (line, user_id, item_id, ts), in time order, the file's line order breaking ties."""
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", header=None, names=["user_id", "item_id", "rating", "ts"], dtype=str)
    frame["line"] = range(len(frame))
    frame["ts"] = pd.to_datetime(frame["ts"].astype(int), unit="s")
    return frame.sort_values(["ts", "line"]).reset_index(drop=True)


def events_frame(spark, frame):
    """silver.events rows (the columns the sequences stage reads; event ids sort like the file's lines)."""
    from lakerec import tables as T

    rows = [(f"{line:06d}", user, item, "rating", ts.to_pydatetime(), ts.date())
            for line, user, item, ts in frame[["line", "user_id", "item_id", "ts"]].itertuples(index=False)]
    return spark.createDataFrame(rows, f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, "
                                       f"{T.EVENT_TYPE} string, {T.TS} timestamp, {T.DT} date")


def write_items(spark, lake, with_text: bool) -> None:
    """silver.items: the catalog from the items stage with --text; else empty, so the item index holds the items
    rated so far and grows period by period as new ones are rated."""
    from lakerec import tables as T

    if not with_text:
        lake.write(T.SILVER_ITEMS, spark.createDataFrame([], f"{T.ITEM_ID} string"), mode="overwrite")


def item_texts(cfg, spark, lake):
    """items + embed stages -> the encoder's vectors by item id."""
    import jobs.embed
    import jobs.items
    from lakerec import tables as T
    from lakerec.context import run_stage
    from lakerec.text.embeddings import read_item_embeddings

    for name, job in (("items", jobs.items), ("embed", jobs.embed)):
        print(run_stage(name, job.run, cfg, spark).describe(name), flush=True)
    return read_item_embeddings(lake.read(T.SILVER_ITEM_EMBEDDINGS), cfg.text.encoder).toPandas()


def next_period(ratings, start, stop, item_ids: list[str], max_len: int) -> dict:
    """The lists made at `start` (as gold.topn is) against what their users rated in [start, stop): every rating in
    it by a user who rated before start is a target of that user's list, whose input is their history before start,
    left-padded (item_idx); target 0 where its item is not in the index yet (a miss for every model)."""
    import numpy as np

    idx = {item: i + 1 for i, item in enumerate(item_ids)}
    before = ratings[ratings["ts"] < start].groupby("user_id")["item_id"].apply(list)
    during = ratings[(ratings["ts"] >= start) & (ratings["ts"] < stop) & ratings["user_id"].isin(before.index)]
    users = during["user_id"].tolist()
    histories = {u: [idx[i] for i in before[u]] for u in set(users)}
    excluded = {u: np.unique(np.array(h, dtype=np.int64)) for u, h in histories.items()}  # once per user's list
    inputs = np.zeros((len(users), max_len), dtype=np.int64)
    for row, user in enumerate(users):
        tail = histories[user][-max_len:]
        inputs[row, max_len - len(tail):] = tail
    return {"inputs": inputs, "targets": np.array([idx.get(i, 0) for i in during["item_id"]], dtype=np.int64),
            "target_item": during["item_id"].tolist(), "users": users, "excluded": [excluded[u] for u in users]}


def rank(score_fn, split: dict, n_items: int):
    """1-based rank of each target (inf where the target is not in the index)."""
    import torch

    from lakerec.evaluate.metrics import rank_users

    known = split["targets"] > 0
    ranks = torch.full((len(known),), float("inf"), dtype=torch.float64)
    if known.any():
        ranks[torch.as_tensor(known)] = rank_users(score_fn, split["inputs"][known], split["targets"][known],
                                                   [e for e, k in zip(split["excluded"], known) if k],
                                                   n_items).double()
    return ranks


def ndcg(ranks) -> float:
    import torch

    return float(torch.where(ranks <= K, 1.0 / torch.log2(ranks + 1), torch.zeros_like(ranks)).mean()) \
        if len(ranks) else float("nan")


def hit(ranks) -> float:
    return float((ranks <= K).double().mean()) if len(ranks) else float("nan")


def aligned(model, model_item_ids, item_ids):
    """A model's scores in the current item index (items it does not know rank last)."""
    from lakerec.evaluate.champion import aligned_scores

    return aligned_scores(model, model_item_ids, item_ids)


def recent_counts(ratings, start, stop, item_ids: list[str]):
    """[n_items + 1] distinct users per item in [start, stop) (index 0: padding): the score stage's n."""
    import torch

    window = ratings[(ratings["ts"] >= start) & (ratings["ts"] < stop)]
    counts = window.groupby("item_id")["user_id"].nunique()
    return torch.tensor([0.0] + [float(counts.get(i, 0)) for i in item_ids])


def with_recent(score_fn, counts, weight: float):
    """The model's logit + the score stage's recent prior (score.recent_weight = weight, lakerec.score.batch): its
    softmax times a prior that grows with what is being rated now (weight 0: the model alone)."""
    import torch

    from lakerec.score.batch import recent_prior

    prior = torch.as_tensor(recent_prior(counts.numpy(), weight))

    def score(inputs):
        base = score_fn(inputs)
        return lambda items: base(items) + prior[items]

    return score


def pick_weight(score_fn, counts, split: dict, n_items: int) -> float:
    """The RECENT_WEIGHTS entry with the best NDCG@10 on a past period (the lowest wins ties)."""
    import numpy as np

    cached = once(score_fn, n_items)
    scores = [ndcg(rank(with_recent(cached, counts, w), split, n_items)) for w in RECENT_WEIGHTS]
    return RECENT_WEIGHTS[int(np.argmax(scores))]


def once(score_fn, n_items: int):
    """score_fn with each batch's scores of every item kept: pick_weight's weights run the model once per batch,
    not once per weight (rank_users hands it the same batches each time). Holds a period's users x items scores:
    fine at MovieLens 100K's size."""
    import torch

    kept = {}

    def score(inputs):
        key = inputs.numpy().tobytes()
        if key not in kept:
            kept[key] = score_fn(inputs)(torch.arange(n_items + 1))
        return lambda items: kept[key][:, items]

    return score


def text_knn(texts, item_ids: list[str]):
    from lakerec.evaluate.coldstart import text_scorer
    from lakerec.text.embeddings import embedding_matrix

    return text_scorer(embedding_matrix(texts, item_ids))


def weighted(table, column: str, weight: str) -> float:
    valid = table[column].notna() & (table[weight] > 0)
    w = table.loc[valid, weight]
    return float((table.loc[valid, column] * w).sum() / w.sum()) if w.sum() else float("nan")


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
