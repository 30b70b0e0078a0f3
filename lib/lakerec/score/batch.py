"""Batch scoring in Spark: each partition rebuilds the model once, scores users in batches, keeps the top N.

The model's weights travel as one broadcast; per task memory is bounded by score.batch_size users times the
catalog size, never by the number of users, and nothing is collected to the driver.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as St

from lakerec import tables as T
from lakerec.config import ScoreConf
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.models.sasrec import SASRec

HISTORY = "history"

TOPN_SCHEMA = St.StructType([
    St.StructField(T.USER_ID, St.StringType(), False),
    St.StructField(T.RANK, St.IntegerType(), False),
    St.StructField(T.ITEM_ID, St.StringType(), False),
    St.StructField(T.SCORE, St.FloatType(), False),
])
HISTORY_PENALTY = 1e9  # history items rank below every unseen item, yet still fill N rows for a user who saw nearly all


def user_histories(events: DataFrame, item_index: DataFrame) -> DataFrame:
    """user_id -> distinct item_idx the user interacted with (what scoring must not recommend again)."""
    return (events.join(item_index, T.ITEM_ID)
            .groupBy(T.USER_ID).agg(F.array_sort(F.collect_set(T.ITEM_IDX)).alias(HISTORY)))


def _weights(model: SASRec) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def score_users(spark: SparkSession, users: DataFrame, model: SASRec, item_ids: list[str],
                conf: ScoreConf) -> DataFrame:
    """users (user_id, score_input array<int>, history array<int>) -> (user_id, rank, item_id, score), N rows each."""
    n_items = len(item_ids)
    if n_items == 0:
        raise ValueError("empty candidate set: the item index holds no items")
    top_n = min(conf.top_n, n_items)
    # weights + config, rebuilt from library code on the executors (no pickled module travels)
    payload = spark.sparkContext.broadcast(
        (model.config.to_dict(), _weights(model), np.array([""] + list(item_ids), dtype=object)))
    batch_size, exclude = conf.batch_size, conf.exclude_history

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        torch.set_num_threads(1)  # one core per Spark task: tasks, not threads, give the parallelism
        config, blob, ids = payload.value
        net = build_model(ModelConfig.from_dict(config))
        net.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
        net.eval()
        with torch.inference_mode():
            items = net.item_vectors()
            for pdf in batches:
                for start in range(0, len(pdf), batch_size):
                    chunk = pdf.iloc[start:start + batch_size]
                    yield _top_n(net, items, chunk, ids, top_n, exclude)

    return users.select(T.USER_ID, T.SCORE_INPUT, HISTORY).mapInPandas(score_partition, TOPN_SCHEMA)


def _top_n(net, items: torch.Tensor, chunk: pd.DataFrame, ids: np.ndarray, top_n: int, exclude: bool) -> pd.DataFrame:
    inputs = torch.as_tensor(np.stack(chunk[T.SCORE_INPUT].to_numpy()), dtype=torch.long)
    scores = net.user_vectors(inputs) @ items.T
    scores[:, 0] = float("-inf")  # padding is never an item
    if exclude:
        rows, cols = _history_coordinates(chunk[HISTORY])
        scores[rows, cols] -= HISTORY_PENALTY
    top = torch.topk(scores, top_n, dim=1)
    n = len(chunk)
    return pd.DataFrame({
        T.USER_ID: np.repeat(chunk[T.USER_ID].to_numpy(), top_n),
        T.RANK: np.tile(np.arange(1, top_n + 1, dtype=np.int32), n),
        T.ITEM_ID: ids[top.indices.reshape(-1).numpy()],
        T.SCORE: top.values.reshape(-1).numpy().astype(np.float32),
    })


def _history_coordinates(histories: pd.Series) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(h) for h in histories]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if rows.size else np.array([], np.int64)
    return torch.as_tensor(rows), torch.as_tensor(cols)


def stamp(topn: DataFrame, model_name: str, model_version: str, run_id: str, silver_version: int) -> DataFrame:
    """Lineage on every row: which model made it, from which silver version, when."""
    return topn.select(
        "*",
        F.lit(model_name).alias(T.MODEL_NAME), F.lit(str(model_version)).alias(T.MODEL_VERSION),
        F.lit(run_id).alias(T.RUN_ID), F.lit(silver_version).cast("long").alias(T.SILVER_VERSION),
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias(T.GENERATED_AT),
    )


def check_item_index(item_index: DataFrame, model_item_ids: list[str]) -> None:
    """The model's item_idx must mean the same items as silver.item_index, or every score is for the wrong item."""
    data = {r[T.ITEM_IDX]: r[T.ITEM_ID] for r in item_index.select(T.ITEM_IDX, T.ITEM_ID).collect()}
    model = {i + 1: item for i, item in enumerate(model_item_ids)}
    if data != model:
        differ = sorted(k for k in set(data) | set(model) if data.get(k) != model.get(k))[:5]
        raise ValueError(f"silver.item_index ({len(data)} items) does not match the model's item index "
                         f"({len(model)} items), e.g. item_idx {differ}: retrain on the current silver tables")
