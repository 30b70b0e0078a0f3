"""The peers every model is compared with, as scorers for `evaluate_all`, each fitted only on what comes before
the split's target (history[:-2] for valid, history[:-1] for test), so none sees the item it must rank.

- popularity_scorer: interactions per item, the same list for everyone;
- new_items_popularity_scorer: the same, with the items released within a window before the cut ranked first
  (a "new releases" shelf: the baseline a production team tries first for cold items);
- cooccurrence_scorer: item-item cosine over users' histories (a sparse matrix, never a dense items x items),
  summed over the items of the user's input with a recency decay tuned on the valid split (tune_cooccurrence);
- als_scorer: Spark MLlib ALS with implicit feedback (user factors x item factors), tuned by `tune_als` on the
  valid split over a grid from conf and refitted for test.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec import tables as T

from lakerec.evaluate.metrics import (ITEM_CHUNK, ItemScores, ScoreFn, evaluate_all, overall, split_data,
                                      split_popularity, user_aware)
from lakerec.models.sasrec import PAD

POP, COOC, ALS_NAME = "pop", "cooc", "als"  # model names in the evaluation table and MLflow metric names


def popularity_scorer(sequences: pd.DataFrame, n_items: int, split: str = "test") -> ScoreFn:
    """Most popular: the item counts before the split, the same scores for every user."""
    return same_for_everyone(torch.as_tensor(split_popularity(split_data(sequences, split), n_items),
                                             dtype=torch.float32))


def same_for_everyone(flat: torch.Tensor) -> ScoreFn:
    """A scorer giving every user the [n_items + 1] scores `flat` (a view per asked block, no copy per user)."""
    return lambda inputs: lambda items: flat[items].expand(len(inputs), -1)


def release_dates(items: DataFrame, events: DataFrame, item_ids: list[str]) -> np.ndarray:
    """[n_items + 1] datetime64[D] by item_idx (item_ids[i] is item_idx i + 1): silver.items.published where
    present, else the day of the item's first event in `events`; NaT for padding and items with neither. Pass only
    the events the evaluated split may see (itemage.events_but_newest for test): a target's own event would date
    an undated item to the day it is picked, and make it look new."""
    first = events.groupBy(T.ITEM_ID).agg(F.to_date(F.min(T.TS)).alias("_first"))
    dated = (items.select(F.col(T.ITEM_ID).cast("string"), F.col(T.PUBLISHED))
             .join(first.select(F.col(T.ITEM_ID).cast("string"), "_first"), T.ITEM_ID, "full")
             .select(T.ITEM_ID, F.coalesce(T.PUBLISHED, "_first").alias("_day")).toPandas())
    by_id = dict(zip(dated[T.ITEM_ID], pd.to_datetime(dated["_day"]).to_numpy().astype("datetime64[D]")))
    return np.array([np.datetime64("NaT")] + [by_id.get(str(i), np.datetime64("NaT")) for i in item_ids],
                    dtype="datetime64[D]")


def new_items_popularity_scorer(sequences: pd.DataFrame, n_items: int, released: np.ndarray, cut: np.datetime64,
                                window_days: int, split: str = "test") -> ScoreFn:
    """Recent popularity among new items: the items released in (cut - window_days, cut] first, most interactions
    before the split first, newest release first on ties (a held-out item has none); then every other item by
    popularity. released: release_dates; cut: the day the list is made for (no item released after it counts)."""
    if len(released) != n_items + 1:
        raise ValueError(f"released has {len(released)} entries, expected n_items + 1 = {n_items + 1}")
    counts = split_popularity(split_data(sequences, split), n_items).astype(np.float64)
    age = (np.datetime64(cut, "D") - released).astype(np.int64).astype(np.float64)  # days
    new = ~np.isnat(released) & (age >= 0) & (age < window_days)
    recency = np.where(new, 1.0 - age / window_days, 0.0)  # in (0, 1]: newest highest
    scores = np.where(new, counts.max() + 2.0 + counts + recency, counts)
    scores[PAD] = 0.0
    return same_for_everyone(torch.as_tensor(scores, dtype=torch.float32))


def cooccurrence_matrix(histories: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Sparse [n+1, n+1] cosine of items over users: users with both / sqrt(users with i * users with j),
    diagonal and padding dropped."""
    distinct = [np.unique(h[h != PAD]) for h in histories]
    rows = np.repeat(np.arange(len(distinct)), [len(d) for d in distinct])
    cols = np.concatenate(distinct) if distinct else np.zeros(0, np.int64)
    x = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(distinct), n_items + 1))
    both = (x.T @ x).tocsr()
    both.setdiag(0)
    both.eliminate_zeros()
    users_with = np.asarray(x.sum(axis=0)).ravel()
    norm = sp.diags(np.divide(1.0, np.sqrt(users_with), out=np.zeros_like(users_with), where=users_with > 0))
    return (norm @ both @ norm).astype(np.float32).tocsr()


def cooccurrence_scorer(sequences: pd.DataFrame, n_items: int, split: str = "test", decay: float = 1.0,
                        matrix: sp.csr_matrix | None = None) -> ScoreFn:
    """Item-item co-occurrence: an item scores the sum of its cosines with the items of the user's input, each
    weighted decay ** age (the newest item 1, the one before decay, ...): decay < 1 favours the last items.
    matrix: the split's co-occurrence matrix when already built (tuning reuses it). Columns are taken per asked
    block (CSC); each score sums over the user's items in the same order whatever the block, so it is the same."""
    if matrix is None:
        matrix = cooccurrence_matrix(split_data(sequences, split).histories, n_items)
    by_column = matrix.tocsc()

    def score(inputs: torch.Tensor) -> ItemScores:
        items = inputs.numpy()
        weights = np.broadcast_to(decay ** np.arange(items.shape[1] - 1, -1, -1, dtype=np.float64), items.shape)
        keep = items != PAD
        users = np.broadcast_to(np.arange(len(items))[:, None], items.shape)
        seen = sp.csr_matrix((weights[keep], (users[keep], items[keep])), shape=(len(items), n_items + 1))
        return lambda asked: torch.from_numpy((seen @ by_column[:, asked.numpy()]).toarray()).float()  # repeats add

    return score


def tune_cooccurrence(sequences: pd.DataFrame, n_items: int, decays: list[float], ks: list[int],
                      metric: str = "ndcg_10", exclude_types: list[str] | None = None,
                      item_chunk: int = ITEM_CHUNK) -> tuple[float, pd.DataFrame]:
    """The recency decay with the best valid `metric` (first wins ties) and every decay's valid metrics, under
    the serving rule's exclude_types (evaluate_all, item_chunk items scored at once)."""
    if not decays:
        raise ValueError("no co-occurrence decay to try: give evaluate.cooc_decays at least one value")
    matrix = cooccurrence_matrix(split_data(sequences, "valid").histories, n_items)
    table = evaluate_all(sequences, n_items, ks, {
        str(d): cooccurrence_scorer(sequences, n_items, "valid", d, matrix) for d in decays}, split="valid",
        exclude_types=exclude_types, item_chunk=item_chunk)
    results = pd.DataFrame([{"decay": d, **overall(table, str(d))} for d in decays])
    return decays[int(results[metric].to_numpy().argmax())], results


@dataclass(frozen=True)
class AlsParams:
    rank: int
    reg_param: float
    alpha: float
    max_iter: int = 10
    seed: int = 42


def als_scorer(spark: SparkSession, sequences: pd.DataFrame, n_items: int, split: str = "test",
               params: AlsParams = AlsParams(64, 0.1, 1.0)) -> ScoreFn:
    """Spark MLlib ALS (implicitPrefs; rating = interactions of a user with an item before the split).

    A user-aware scorer: it reads the user ids, as ALS knows users, not sequences. An unknown user or item
    has a zero vector (scores 0).
    """
    data = split_data(sequences, split)
    lengths = [len(h) for h in data.histories]
    pairs = pd.DataFrame({"user": np.repeat(np.arange(len(data.users), dtype=np.int32), lengths),
                          "item": np.concatenate(data.histories).astype(np.int32)})
    ratings = pairs.groupby(["user", "item"]).size().rename("rating").astype("float32").reset_index()
    blocks = spark.sparkContext.defaultParallelism  # ALS's default 10 blocks is mostly task overhead on few cores
    als = ALS(rank=params.rank, regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter,
              seed=params.seed, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="rating",
              numUserBlocks=blocks, numItemBlocks=blocks)
    model = als.fit(spark.createDataFrame(ratings))
    user_vectors = _factors(model.userFactors.toPandas(), len(data.users) + 1, params.rank)  # last row: unknown
    item_vectors = _factors(model.itemFactors.toPandas(), n_items + 1, params.rank)
    row_of = {user: row for row, user in enumerate(data.users)}
    unknown = len(data.users)

    def score(inputs: torch.Tensor, users: np.ndarray) -> ItemScores:
        rows = torch.as_tensor([row_of.get(u, unknown) for u in users], dtype=torch.long)
        return lambda asked: user_vectors[rows] @ item_vectors[asked].T

    return user_aware(score)


def _factors(frame: pd.DataFrame, n: int, rank: int) -> torch.Tensor:
    out = torch.zeros(n, rank)
    if len(frame):
        out[torch.as_tensor(frame["id"].to_numpy(), dtype=torch.long)] = torch.as_tensor(
            np.stack(frame["features"].to_numpy()), dtype=torch.float32)
    return out


def als_grid(ranks: list[int], reg_params: list[float], alphas: list[float], max_iter: int = 10,
             seed: int = 42) -> list[AlsParams]:
    return [AlsParams(r, g, a, max_iter, seed) for r, g, a in itertools.product(ranks, reg_params, alphas)]


def tune_als(spark: SparkSession, sequences: pd.DataFrame, n_items: int, grid: list[AlsParams],
             ks: list[int], metric: str = "ndcg_10", exclude_types: list[str] | None = None,
             item_chunk: int = ITEM_CHUNK) -> tuple[AlsParams, pd.DataFrame]:
    """The grid point with the best valid `metric` (first wins ties) and every point's valid metrics:
    a frame with the AlsParams fields and the overall metrics (under the serving rule's exclude_types, item_chunk
    items scored at once)."""
    if not grid:
        raise ValueError("the ALS grid is empty: give evaluate.als at least one rank, reg_param and alpha")
    rows = []
    for params in grid:
        table = evaluate_all(sequences, n_items, ks, {ALS_NAME: als_scorer(spark, sequences, n_items, "valid", params)},
                             split="valid", exclude_types=exclude_types, item_chunk=item_chunk)
        rows.append({**params.__dict__, **overall(table, ALS_NAME)})
    results = pd.DataFrame(rows)
    if metric not in results:
        raise ValueError(f"tuning metric {metric!r} is not among the evaluated metrics (ks={ks})")
    best = grid[int(results[metric].to_numpy().argmax())]
    return best, results
