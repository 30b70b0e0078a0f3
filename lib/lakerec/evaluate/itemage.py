"""A time-aware prior for items without ID history: how likely an item of a given age is picked next.

An item's age at an event is the event's day minus its release day (baselines.release_dates: items.published,
else its first event). The prior is learned from the training events alone, each at its own time: per age
bucket, the events on items of that age divided by the item-events exposed (for each event, the items of that
age released by then), so a bucket with many items is not favoured for its size. Warm items were new once, so
the prior for a just-released item comes from the warm items' own release periods. At scoring time a user's
"now" is the time of their newest input event: nothing after it is used.

`age_prior_scorer` blends it into any scorer (ID-only, text-aware, text kNN): for items without ID history
(no interaction before the split) it adds weight x the log prior to the user's standardised scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.data.sequences import order_keys
from lakerec.evaluate.metrics import ITEM_CHUNK, ItemScores, ScoreFn, user_aware
from lakerec.models.base import PAD

AGE_EDGES_DAYS = (30, 90, 180, 365, 730, 1825)  # bucket b holds ages < edges[b] (and >= the edge before); then older


def age_buckets(age_days: np.ndarray, edges: Sequence[int] = AGE_EDGES_DAYS) -> np.ndarray:
    """Bucket per age in days: 0..len(edges) for released items, -1 for not yet released or undated (nan)."""
    age = np.asarray(age_days, dtype=np.float64)
    out = np.searchsorted(np.asarray(edges, dtype=np.float64), age, side="right")
    return np.where(np.isfinite(age) & (age >= 0), out, -1)


def release_day_numbers(released: np.ndarray) -> np.ndarray:
    """datetime64[D] release days -> float days since the epoch (nan where unknown)."""
    days = released.astype("datetime64[D]").astype(np.int64).astype(np.float64)
    return np.where(np.isnat(released), np.nan, days)


def events_but_newest(events: DataFrame) -> DataFrame:
    """Each user's events but the newest (the test target): what the test split may learn from. Anything dated
    from all events (an undated item's release day, a popularity "now") would otherwise see the targets."""
    newest_first = Window.partitionBy(T.USER_ID).orderBy(*(F.col(k).desc() for k in order_keys(events)))
    return events.withColumn("_n", F.row_number().over(newest_first)).where("_n > 1").drop("_n")


def events_before_test(seen: DataFrame, item_ids: Sequence[str], no_history: np.ndarray) -> pd.DataFrame:
    """(user_id, item_idx, day) of seen (events_but_newest's frame, shared with release_dates) on items with ID
    history (no_history: [n_items + 1] bool by item_idx; items outside the index are dropped too). day: days since
    the epoch, the event's UTC-agnostic calendar day as Spark reads it."""
    rows = (seen
            .select(F.col(T.USER_ID).cast("string"), F.col(T.ITEM_ID).cast("string"),
                    F.datediff(F.to_date(T.TS), F.lit("1970-01-01")).alias("day")).toPandas())
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    rows[T.ITEM_IDX] = rows[T.ITEM_ID].map(index).fillna(0).astype(np.int64)
    rows = rows[(rows[T.ITEM_IDX] > 0) & ~no_history[rows[T.ITEM_IDX].to_numpy()]]
    return rows[[T.USER_ID, T.ITEM_IDX, "day"]].assign(day=rows["day"].astype(np.float64)).reset_index(drop=True)


def age_propensity(event_items: np.ndarray, event_days: np.ndarray, released_days: np.ndarray,
                   edges: Sequence[int] = AGE_EDGES_DAYS, smoothing: float = 1.0) -> np.ndarray:
    """[len(edges) + 1] per age bucket: P(an event picks a given item | the item has that age at the event).

    event_items: item_idx of each training event; event_days: its day (days since the epoch);
    released_days: [n_items + 1] release_day_numbers by item_idx (index 0 = padding, never counted)."""
    n_buckets = len(edges) + 1
    hits = np.zeros(n_buckets)
    exposure = np.zeros(n_buckets)
    ages = event_days - released_days[event_items]
    picked = age_buckets(ages, edges)
    np.add.at(hits, picked[picked >= 0], 1.0)
    catalog = released_days[1:]
    days, per_day = np.unique(event_days, return_counts=True)
    for day, n in zip(days, per_day):  # per distinct day: the catalog's age buckets at that day
        buckets = age_buckets(day - catalog, edges)
        exposure += n * np.bincount(buckets[buckets >= 0], minlength=n_buckets)
    return (hits + smoothing) / (exposure + smoothing * n_buckets)


def age_prior_scorer(base: ScoreFn, now_days: dict[str, float], released_days: np.ndarray, propensity: np.ndarray,
                     no_history: np.ndarray, weight: float = 1.0, edges: Sequence[int] = AGE_EDGES_DAYS) -> ScoreFn:
    """base's scores standardised per user, plus weight x log(the propensity of the item's age at the user's now /
    the mean propensity) on the items without ID history (no_history: [n_items + 1] bool): an age picked more
    often than average lifts, a rarer one lowers; a not yet released or undated item gets the lowest bucket's.

    now_days: per user id (the evaluator passes each batch's ids: user_aware), the day of the newest input event."""
    log_prior = np.log(propensity / propensity.mean())
    floor = log_prior.min()
    cold = torch.as_tensor(no_history, dtype=torch.bool)
    cold[PAD] = False

    def score(inputs: torch.Tensor, batch_users: np.ndarray) -> ItemScores:
        scores = base(inputs)
        mean, std = row_moments(scores, len(released_days))
        now = np.array([now_days.get(str(u), np.nan) for u in batch_users], dtype=np.float64)

        def asked(items: torch.Tensor) -> torch.Tensor:
            z = (scores(items).float() - mean) / std.clamp_min(1e-6)
            buckets = age_buckets(now[:, None] - released_days[None, items.numpy()], edges)
            prior = np.where(buckets >= 0, log_prior[np.maximum(buckets, 0)], floor)
            prior = torch.as_tensor(np.where(np.isnan(now)[:, None], 0.0, prior), dtype=torch.float32)  # no now
            return z + weight * prior * cold[items]

        return asked

    return user_aware(score)


def row_moments(scores: ItemScores, n: int, chunk: int = ITEM_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 1] mean and standard deviation (unbiased, as torch.std) of each row's scores of items 0 .. n - 1, chunk by
    chunk (Chan et al.'s pairwise update, in float64), so standardising needs no [B, n] block."""
    count, mean, m2 = 0, torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    for lo in range(0, n, chunk):
        block = scores(torch.arange(lo, min(lo + chunk, n))).cpu().double()
        size, block_mean = block.shape[1], block.mean(1)
        delta, total = block_mean - mean, count + size
        m2 = m2 + ((block - block_mean.unsqueeze(1)) ** 2).sum(1) + delta ** 2 * count * size / total
        mean, count = mean + delta * size / total, total
    return mean.float().unsqueeze(1), (m2 / max(count - 1, 1)).sqrt().float().unsqueeze(1)
