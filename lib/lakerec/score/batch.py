"""Batch scoring in Spark: every user's top N candidates, each with the history item it comes from.

Steps, each a function: `user_states` (silver.events -> the model's input and the items not to recommend again),
`candidate_items` (the model's items minus the configured filters), `popularity` (the cold users' fallback),
`score_users` (mapInPandas: each task rebuilds the model once from a broadcast, scores users in batches against the
candidate matrix and keeps the top N under lakerec.models.topk's rule), `stamp` (lineage on every row).

Memory per task is batch_size x score.item_chunk floats (candidates are scored chunk by chunk, the top N merged
across chunks under the same rule), the candidate vectors, and one Arrow batch of users: never a function of the
number of users, nor batch_size x candidates; nothing user-level is collected to the driver (candidates and
popularity are item-level). Chunks are of even size (the candidates split into ceil(C / item_chunk) parts), so no
chunk is a sliver a matrix product would compute by another kernel.

Precision (score.precision): fp32 scores every user against every candidate in fp32. bf16 gives the same lists
for less: `_Scorer._top_bf16` scores against bf16 candidate vectors, keeps score.shortlist candidates per user
(excluded items masked), recomputes those in fp32 and proves, from an error bound of the bf16 product, that no
candidate outside the shortlist can reach the fp32 top N; a user it cannot prove that for (near-ties at the cut,
or no more allowed candidates than the shortlist) is scored in fp32. Exact by construction, not by odds.

Recent-popularity prior (score.recent_weight > 0): a user's score of an item is the model's logit plus
weight x log(1 + n), n the distinct users of the item in the last score.recent_days of silver: the model's softmax
times a prior that follows what is being touched now, which a model trained on older windows does not know (the
refresh replay's weekly lists gain most from it: docs, benchmarks). It rides the scoring product as one more
dimension (a 1 on the user's side, the prior on the candidate's), so chunking, bf16's proof and the top-N rule
hold as they are.

Explanations: a recommended item's reason is the history item with the largest attribution-weighted similarity to
it, attribution[h] * <item_vector[h], item_vector[recommended]>, where attribution is the attention rollout of the
newest position over the history (`SequenceEncoder.explain_user`): which item the user vector draws on, and which of
those points towards the recommendation. Gradient-free and one batched product; an approximation of the model, not
an exact decomposition. Cold users' rows say "popular" and name no item.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as St

from lakerec import tables as T
from lakerec.config import CandidatesConf, ScoreConf
from lakerec.data.sequences import left_pad, order_keys
from lakerec.models import build_model
from lakerec.models.base import PAD, ModelConfig, SequenceEncoder
from lakerec.models.topk import merge_top_k, top_k
from lakerec.text.embeddings import cold_item_vectors

EXCLUDE = "exclude"  # user_states column: the model item_idx the user is not recommended again
AVAILABLE = "available"  # optional boolean column of a candidates table
REASON_HISTORY, REASON_POPULAR = "history", "popular"
HISTORY_PENALTY = 1e9  # excluded items rank below every other candidate, yet still fill N rows for a user who saw nearly all
BF16_MIN_USERS = 8  # a smaller group is scored in fp32: nothing to save, and BLAS takes another path for tiny products
_U = 2.0 ** -8  # bf16 unit roundoff (8 significant bits, round to nearest even)
EVENT_COLUMNS = (T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS)

TOPN_SCHEMA = St.StructType([
    St.StructField(T.USER_ID, St.StringType(), False),
    St.StructField(T.RANK, St.IntegerType(), False),
    St.StructField(T.ITEM_ID, St.StringType(), False),
    St.StructField(T.SCORE, St.FloatType(), False),
    St.StructField(T.REASON_ITEM_ID, St.StringType(), True),
    St.StructField(T.REASON_KIND, St.StringType(), False),
])


class ScoringInputError(ValueError):
    """The model, the data or the configuration cannot give every user N recommendations: found before any write."""


@dataclass(frozen=True)
class Candidates:
    """What may be recommended, as item_idx (sorted; past the model's items: text-only items), and the cold users'
    fallback score of each."""

    item_idx: np.ndarray  # int64
    popularity: np.ndarray  # float32, aligned with item_idx
    prior: np.ndarray | None = None  # float32, aligned with item_idx: added to the model's logits (recent_prior)


def check_events(events: DataFrame) -> None:
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ScoringInputError(f"silver.events lacks {missing}: it does not follow the schema scoring reads")


def user_states(events: DataFrame, item_ids: list[str], max_len: int, exclude_event_types: list[str] | None,
                model_items: int | None = None) -> DataFrame:
    """silver.events -> one row per user: score_input (the newest max_len items the model knows, left-padded, in
    the sequences stage's order) and exclude (distinct item_idx of the user's events of the excluded types; None:
    every type). item_ids: the model's items, then any text-only items (idx > model_items), which can be
    excluded but never enter the model's input. A user with no item the model knows is cold: all padding."""
    model_items = len(item_ids) if model_items is None else model_items
    index = events.sparkSession.createDataFrame(
        [(i + 1, item) for i, item in enumerate(item_ids)], f"{T.ITEM_IDX} int, {T.ITEM_ID} string")
    keys = order_keys(events)
    excluded = F.lit(True) if exclude_event_types is None else F.col(T.EVENT_TYPE).isin(list(exclude_event_types))
    known = F.coalesce(F.col(T.ITEM_IDX), F.lit(0))  # unknown items stay in the list as 0, then drop out
    grouped = (events.select(T.USER_ID, *keys, F.col(T.ITEM_ID).cast("string"), excluded.alias("_x"))
               .join(F.broadcast(index), T.ITEM_ID, "left")
               .groupBy(T.USER_ID)
               .agg(F.sort_array(F.collect_list(F.struct(*keys, known.alias(T.ITEM_IDX), "_x"))).alias("_e")))
    items = F.filter(F.transform("_e", lambda e: e[T.ITEM_IDX]), lambda i: (i > 0) & (i <= model_items))
    exclude = F.filter(F.transform("_e", lambda e: F.when(e["_x"], e[T.ITEM_IDX]).otherwise(0)), lambda i: i > 0)
    return grouped.select(T.USER_ID, left_pad(items, max_len).cast("array<int>").alias(T.SCORE_INPUT),
                          F.array_distinct(exclude).cast("array<int>").alias(EXCLUDE))


def text_only_items(model: SequenceEncoder, embeddings: pd.DataFrame | None,
                    item_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Catalog items outside the model's index that a text-aware model scores from their text alone (new items,
    never interacted with in training): (item ids, [N, d] vectors). None for an ID-only model or no embeddings."""
    if not model.config.text_dim or embeddings is None:
        return [], np.zeros((0, model.config.dim), dtype=np.float32)
    ids, vectors = cold_item_vectors(model, embeddings, item_ids)
    return list(ids), vectors.numpy().astype(np.float32)


def candidate_items(item_ids: list[str], conf: CandidatesConf, allowed: DataFrame | None = None,
                    catalog: DataFrame | None = None) -> np.ndarray:
    """item_idx that may be recommended: the items of item_ids, only those in `allowed` (a candidates table,
    rows with available = false dropped) and in `catalog` items of conf.categories, minus conf.exclude_items."""
    keep = set(item_ids)
    if allowed is not None:
        if T.ITEM_ID not in allowed.columns:
            raise ScoringInputError(f"candidates table {conf.table} has no {T.ITEM_ID} column")
        rows = allowed.where(F.col(AVAILABLE)) if AVAILABLE in allowed.columns else allowed
        keep &= {r[0] for r in rows.select(F.col(T.ITEM_ID).cast("string")).distinct().collect()}
    if conf.categories:
        wanted = F.array(*[F.lit(c) for c in conf.categories])
        keep &= {r[0] for r in catalog.where(F.arrays_overlap(T.CATEGORIES, wanted)).select(T.ITEM_ID).collect()}
    keep -= set(conf.exclude_items)
    idx = np.array([i + 1 for i, item in enumerate(item_ids) if item in keep], dtype=np.int64)
    if idx.size == 0:
        raise ScoringInputError(
            f"empty candidate set: none of the model's {len(item_ids)} items passes score.candidates "
            f"(table={conf.table}, categories={conf.categories}, {len(conf.exclude_items)} excluded items)")
    return idx


def item_users(events: DataFrame, item_ids: list[str], windows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """([len(windows), n_items + 1] distinct users per item in each window's last days up to silver's newest event,
    [n_items + 1] distinct users per item over all time), float64, aligned with item_idx (0: padding). One pass for
    every window: a user is in an item's window when their last event on it is."""
    recent_users, total_users = np.zeros((len(windows), len(item_ids) + 1)), np.zeros(len(item_ids) + 1)
    newest = events.agg(F.max(T.TS)).first()[0]
    if newest is None:
        return recent_users, total_users
    pairs = (events.where(F.col(T.USER_ID).isNotNull())
             .groupBy(F.col(T.ITEM_ID).cast("string").alias(T.ITEM_ID), T.USER_ID).agg(F.max(T.TS).alias("_last")))
    rows = (pairs.groupBy(T.ITEM_ID)
            .agg(*[F.sum((F.col("_last") > F.lit(newest - timedelta(days=days))).cast("long")).alias(f"_w{k}")
                   for k, days in enumerate(windows)], F.count(F.lit(1)).alias("_total"))
            .collect())
    position = {item: i + 1 for i, item in enumerate(item_ids)}
    for r in rows:
        if r[T.ITEM_ID] in position:
            recent_users[:, position[r[T.ITEM_ID]]] = [r[f"_w{k}"] for k in range(len(windows))]
            total_users[position[r[T.ITEM_ID]]] = r["_total"]
    return recent_users, total_users


def popularity(recent_users: np.ndarray, total_users: np.ndarray) -> np.ndarray:
    """[n_items + 1] float32, the cold users' fallback: an item's recent distinct users (item_users), plus a
    tie-break in [0, 1) by all-time distinct users, so quiet windows still rank by something real."""
    return (recent_users + total_users / (total_users.max() + 1)).astype(np.float32)


def recent_prior(recent_users: np.ndarray, weight: float) -> np.ndarray:
    """weight x log(1 + n) per item, n its recent distinct users: added to the model's logits (the module's
    docstring). The one formula of the prior, shared with benchmarks/refresh_replay.py."""
    return (weight * np.log1p(np.asarray(recent_users, dtype=np.float64))).astype(np.float32)


@dataclass(frozen=True)
class ScoreCounters:
    """Spark accumulators of a bf16 run, read after the action: users with history published from a proven
    shortlist, and those scored in fp32 instead (the proof failed, no more allowed candidates than the shortlist,
    or a group under BF16_MIN_USERS). Cold users are neither. A retried task adds again."""

    shortlisted: object
    fallback: object

    @classmethod
    def create(cls, spark: SparkSession) -> "ScoreCounters":
        return cls(spark.sparkContext.accumulator(0), spark.sparkContext.accumulator(0))


def score_users(spark: SparkSession, users: DataFrame, model: SequenceEncoder, item_ids: list[str],
                candidates: Candidates, conf: ScoreConf, text_only: np.ndarray | None = None,
                counters: ScoreCounters | None = None) -> DataFrame:
    """users (user_id, score_input, exclude) -> TOPN_SCHEMA rows, exactly score.top_n per user.

    item_ids: the model's items, then the text-only items whose vectors `text_only` [N, d] holds, in that order.
    conf.precision bf16: the same rows as fp32 (see the module's docstring); counters, if given, count its paths."""
    if candidates.item_idx.size < conf.top_n:
        raise ScoringInputError(f"{candidates.item_idx.size} candidate items, fewer than score.top_n = {conf.top_n}: "
                                "every user must get top_n rows; widen score.candidates or lower top_n")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    # weights + config, rebuilt from library code on the executors (no pickled module travels)
    payload = spark.sparkContext.broadcast((model.config.to_dict(), buffer.getvalue(), list(item_ids),
                                            candidates.item_idx, candidates.popularity, text_only, candidates.prior))
    top_n, batch_size, item_chunk = conf.top_n, conf.batch_size, conf.item_chunk
    shortlist = conf.shortlist_size if conf.precision == "bf16" else None
    counted = counters or ScoreCounters(None, None)

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        torch.set_num_threads(1)  # one core per Spark task: tasks, not threads, give the parallelism
        scorer = _Scorer(*payload.value, shortlist=shortlist, item_chunk=item_chunk)
        for pdf in batches:
            yield from scorer.score(pdf, top_n, batch_size)
        if counted.shortlisted is not None:
            counted.shortlisted.add(scorer.shortlisted)
            counted.fallback.add(scorer.fallback_users)

    return users.select(T.USER_ID, T.SCORE_INPUT, EXCLUDE).mapInPandas(score_partition, TOPN_SCHEMA)


class _Scorer:
    """Lives in a Spark task: the model, the candidate matrix and the fallback, built once per partition."""

    def __init__(self, config: dict, weights: bytes, item_ids: list[str], candidate_idx: np.ndarray,
                 fallback: np.ndarray, text_only: np.ndarray | None, prior: np.ndarray | None, *,
                 shortlist: int | None, item_chunk: int):
        self.net = build_model(ModelConfig.from_dict(config))
        self.net.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
        self.net.eval()
        with torch.inference_mode():
            self.items = self.net.item_vectors().clone()  # [n_items + 1 (+ text-only items), d], row = item_idx
        if text_only is not None and len(text_only):
            self.items = torch.cat([self.items, torch.as_tensor(text_only)])
        self.chunks = even_chunks(candidate_idx.size, item_chunk)  # [(lo, hi)] candidate columns scored at once
        candidates = self.items[torch.as_tensor(candidate_idx)]  # [C, d]
        self.with_prior = prior is not None  # the prior as dimension d + 1: user side 1, candidate side the prior
        if self.with_prior:
            candidates = torch.cat([candidates, torch.as_tensor(prior, dtype=torch.float32).reshape(-1, 1)], dim=1)
        self.candidates_t = [candidates[lo:hi].T.contiguous() for lo, hi in self.chunks]  # per chunk [d, hi - lo]
        self.position = np.full(len(item_ids) + 1, -1, dtype=np.int64)  # item_idx -> column among candidates
        self.position[candidate_idx] = np.arange(candidate_idx.size)
        self.ids = np.array([None, *item_ids], dtype=object)  # item_idx -> item_id
        self.candidate_ids = self.ids[candidate_idx]
        self.candidate_idx = torch.as_tensor(candidate_idx)
        self.fallback = torch.as_tensor(fallback, dtype=torch.float32)
        self.shortlist = shortlist  # None: fp32 scoring
        self.shortlisted = self.fallback_users = 0  # users each bf16 path published (ScoreCounters)
        if shortlist is not None:
            self.candidates_bf16 = [c.bfloat16() for c in self.candidates_t]
            self.candidate_rows = candidates.contiguous()  # [C, d]: the exact re-rank gathers rows
            self.max_norm = float(self.candidate_rows.double().norm(dim=1).max()) if candidate_idx.size else 0.0

    def score(self, pdf: pd.DataFrame, top_n: int, batch_size: int) -> Iterator[pd.DataFrame]:
        """The top-N rows of one Arrow batch of users, a frame per scoring batch (memory: one batch at a time)."""
        inputs = np.stack(pdf[T.SCORE_INPUT].to_numpy()).astype(np.int64)
        lengths = (inputs != PAD).sum(axis=1)
        order = np.argsort(lengths, kind="stable")  # batches of similar length: less padding to compute
        users, excludes = pdf[T.USER_ID].to_numpy(), pdf[EXCLUDE].to_numpy()
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            for group, scorer in ((rows[lengths[rows] == 0], self._popular), (rows[lengths[rows] > 0], self._model)):
                if group.size:
                    with torch.inference_mode():
                        yield scorer(users[group], torch.as_tensor(inputs[group]), excludes[group], top_n)

    def _model(self, users: np.ndarray, inputs: torch.Tensor, excludes: np.ndarray, top_n: int) -> pd.DataFrame:
        user_vectors, attribution = self.net.explain_user(inputs)
        if self.with_prior:
            user_vectors = torch.cat([user_vectors, torch.ones(len(users), 1)], dim=1)
        excluded = self._excluded(excludes)
        if self.shortlist is not None and len(users) >= BF16_MIN_USERS:
            top = self._top_bf16(user_vectors, excluded, top_n)
        else:
            self.fallback_users += len(users) if self.shortlist is not None else 0
            top = self._top_fp32(user_vectors, excluded, top_n)
        picked = self.items[self.candidate_idx[top[1]]]  # [B, N, d]
        contribution = attribution.unsqueeze(2) * torch.einsum("bld,bnd->bln", self.items[inputs], picked)
        contribution.masked_fill_((attribution <= 0).unsqueeze(2), float("-inf"))  # padding is no reason
        reasons = torch.gather(inputs, 1, contribution.argmax(dim=1))  # [B, N] item_idx of the history
        return self._rows(users, top, self.ids[reasons.numpy()].reshape(-1), REASON_HISTORY)

    def _top_bf16(self, user_vectors: torch.Tensor, excluded: tuple[np.ndarray, np.ndarray],
                  top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fp32 top N of each user, found through a bf16 shortlist; the users it cannot prove take fp32.

        1. bf16 scores ŝ of every candidate (excluded items penalised), chunk by chunk with a running torch.topk
           (which of the items tied in bf16 is kept does not matter: the proof bounds them all); the best
           K = shortlist, and t, the best ŝ left out (an allowed item: only users with more than K are proved).
        2. The K re-ranked as fp32 computes a dot product (fma per dimension, in order: MKL's sgemm does the same for
           d <= 128, so the floats equal fp32 mode's), top N under lakerec.models.topk's rule; r_N the N-th.
        3. Proof: |ŝ - s| <= c1|ŝ| + c2 ||u|| ||v|| for the exact s (inputs rounded to bf16, products summed in fp32,
           the sum rounded to bf16), fp32 itself within g ||u|| ||v||. If r_N - t > c1|t| + (c2 + 3g) ||u|| max||v||,
           every left-out item's fp32 score is below r_N: the N from the shortlist are fp32's N, ties included.
        """
        k, n_candidates, n_users = self.shortlist, self.chunks[-1][1], user_vectors.shape[0]
        allowed = n_candidates - np.bincount(excluded[0], minlength=n_users)
        exact = torch.zeros(n_users, dtype=torch.bool)
        if k < n_candidates:
            low = user_vectors.bfloat16()
            best, shortlist = self._top_chunked(lambda i: low @ self.candidates_bf16[i], excluded, k + 1, _torch_topk)
            left_out = best[:, k].double()
            shortlist = torch.sort(shortlist[:, :k], dim=1).values  # candidate order: the tie rule's "lower column"
            values, picked = top_k(self._fp32_dot(user_vectors, shortlist), top_n)
            columns = shortlist.gather(1, picked)
            d = user_vectors.shape[1]
            g = d * 2.0 ** -24 / (1 - d * 2.0 ** -24)  # fp32 dot product of d terms, any order (Higham's gamma_d)
            c1, c2 = _U / (1 - _U), (2 * _U + _U * _U) + g * (1 + _U) ** 2
            reach = user_vectors.double().norm(dim=1) * self.max_norm * (1 + 1e-6) + 1e-30  # + flushed subnormals
            margin = c1 * left_out.abs() + (c2 + 3 * g) * reach
            exact = (values[:, -1].double() - left_out > margin) & torch.as_tensor(allowed > k)
        if not exact.all():  # the whole group's products, so the floats are those fp32 mode computes
            full = self._top_fp32(user_vectors, excluded, top_n)
            if not exact.any():
                self.fallback_users += n_users
                return full
            values = torch.where(exact.unsqueeze(1), values, full[0])
            columns = torch.where(exact.unsqueeze(1), columns, full[1])
        self.shortlisted += int(exact.sum())
        self.fallback_users += int((~exact).sum())
        return values, columns

    def _top_fp32(self, user_vectors: torch.Tensor, excluded: tuple[np.ndarray, np.ndarray],
                  top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact fp32 top N (excluded items penalised) under lakerec.models.topk's rule, chunk by chunk."""
        return self._top_chunked(lambda i: user_vectors @ self.candidates_t[i], excluded, top_n)

    def _top_chunked(self, chunk_scores, excluded: tuple[np.ndarray, np.ndarray], k: int,
                     select=top_k) -> tuple[torch.Tensor, torch.Tensor]:
        """The best k of scores made chunk by chunk (chunk_scores(i) -> [B, hi - lo] of self.chunks[i]), the
        excluded (row, column) pairs penalised, each chunk's best by `select`, merged in column order: with
        top_k, the list one block over every candidate would give."""
        rows, cols = excluded
        top = None
        for i, (lo, hi) in enumerate(self.chunks):
            scores = chunk_scores(i)
            inside = (cols >= lo) & (cols < hi)
            if inside.any():
                scores[torch.as_tensor(rows[inside]), torch.as_tensor(cols[inside] - lo)] -= HISTORY_PENALTY
            values, columns = select(scores, min(k, hi - lo))
            top = (values, columns + lo) if top is None else merge_top_k(top, (values, columns + lo), k)
        return top

    def _fp32_dot(self, user_vectors: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """[B, K] fp32 scores of the given candidate columns, each a chain of fused multiply-adds in dimension
        order: every product exact in float64, each sum rounded once to fp32 (float64 then fp32 rounds twice only
        on an exact fp32 midpoint, about 2^-29 of sums)."""
        # [d, B, K], exact: a contiguous slice per dimension, added in place (2.5x a strided loop)
        products = user_vectors.double().T.unsqueeze(2) * self.candidate_rows[columns].double().permute(2, 0, 1)
        total = torch.zeros(columns.shape, dtype=torch.float64)
        rounded = torch.zeros(columns.shape, dtype=torch.float32)
        for term in products:
            total.add_(term)
            rounded.copy_(total)  # round to fp32 ...
            total.copy_(rounded)  # ... and carry on from the rounded sum, as an fp32 accumulator would
        return rounded

    def _popular(self, users: np.ndarray, inputs: torch.Tensor, excludes: np.ndarray, top_n: int) -> pd.DataFrame:
        top = self._top_chunked(lambda i: self.fallback[slice(*self.chunks[i])].expand(len(users), -1).clone(),
                                self._excluded(excludes), top_n)
        return self._rows(users, top, None, REASON_POPULAR)

    def _excluded(self, excludes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, candidate column) of each excluded item that is a candidate (lists are distinct: user_states)."""
        lengths = [len(e) for e in excludes]
        if not sum(lengths):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(excludes)), lengths)
        cols = self.position[np.concatenate([np.asarray(e, dtype=np.int64) for e in excludes])]
        keep = cols >= 0  # excluded items that are not candidates anyway
        return rows[keep], cols[keep]

    def _rows(self, users: np.ndarray, top: tuple[torch.Tensor, torch.Tensor], reasons: np.ndarray | None,
              kind: str) -> pd.DataFrame:
        values, columns = top
        n, top_n = columns.shape
        return pd.DataFrame({
            T.USER_ID: np.repeat(users, top_n),
            T.RANK: np.tile(np.arange(1, top_n + 1, dtype=np.int32), n),
            T.ITEM_ID: self.candidate_ids[columns.reshape(-1).numpy()],
            T.SCORE: values.reshape(-1).numpy().astype(np.float32),
            T.REASON_ITEM_ID: reasons if reasons is not None else np.full(n * top_n, None, dtype=object),
            T.REASON_KIND: kind,
        })


def _torch_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk along rows: the bf16 shortlist's selector, where the order of ties does not matter."""
    return torch.topk(scores, k, dim=1)


def even_chunks(columns: int, most: int) -> list[tuple[int, int]]:
    """[(lo, hi)] covering range(columns) in ceil(columns / most) parts of sizes differing by at most one."""
    parts = max(1, -(-columns // most))
    bounds = [round(i * columns / parts) for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


def stamp(topn: DataFrame, model_name: str, model_version: str, run_id: str, silver_version: int) -> DataFrame:
    """Lineage on every row: which model made it, in which MLflow run, from which silver version, when."""
    return topn.select(
        "*",
        F.lit(model_name).alias(T.MODEL_NAME), F.lit(str(model_version)).alias(T.MODEL_VERSION),
        F.lit(run_id).alias(T.RUN_ID), F.lit(silver_version).cast("long").alias(T.SILVER_VERSION),
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias(T.GENERATED_AT),
    )
