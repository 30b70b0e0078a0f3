"""Test helpers shared by data/models/train: hand-made silver inputs written through the Lake, MLflow isolation."""
from __future__ import annotations

import contextlib
import os
from datetime import datetime, timedelta

import mlflow
from pyspark.sql import SparkSession
from pyspark.sql import types as St

from lakerec import tables as T
from lakerec import tracking
from lakerec.lake import Lake

EVENTS_SCHEMA = St.StructType([
    St.StructField(T.EVENT_ID, St.StringType()),
    St.StructField(T.USER_ID, St.StringType()),
    St.StructField(T.ITEM_ID, St.StringType()),
    St.StructField(T.EVENT_TYPE, St.StringType()),
    St.StructField(T.TS, St.TimestampType()),
    St.StructField(T.VALUE, St.DoubleType()),
    St.StructField(T.SESSION_ID, St.StringType()),
    St.StructField(T.DT, St.DateType()),
])
ITEMS_SCHEMA = St.StructType([
    St.StructField(T.ITEM_ID, St.StringType()),
    St.StructField(T.TITLE, St.StringType()),
    St.StructField(T.DESCRIPTION, St.StringType()),
    St.StructField(T.CATEGORIES, St.ArrayType(St.StringType())),
])
T0 = datetime(2026, 11, 1, 8, 0, 0)


@contextlib.contextmanager
def own_mlflow_store():
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI and load_config honours it: inside this block a config
    gets its own lake's store, and afterwards the variable is as before, so no later test inherits our store."""
    before = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def lake_run(cfg, **kwargs):
    """An MLflow run in the config's experiment (artifacts inside its lake): a bare mlflow.start_run() goes to the
    store's Default experiment, whose artifacts land in ./mlruns of wherever pytest runs."""
    return mlflow.start_run(experiment_id=tracking.setup(cfg), **kwargs)


def event_rows(histories: dict[str, list[str]], start: datetime = T0) -> list[tuple]:
    """One view per item, a minute apart, in the given order; event ids sort like the order."""
    rows = []
    for user, items in histories.items():
        for i, item in enumerate(items):
            ts = start + timedelta(minutes=i)
            rows.append((f"{user}-{i:05d}", user, item, "view", ts, 1.0, f"{user}-s", ts.date()))
    return rows


def write_silver(spark: SparkSession, lake: Lake, events: list[tuple], item_ids: list[str]) -> None:
    lake.write(T.SILVER_EVENTS, spark.createDataFrame(events, EVENTS_SCHEMA), mode="overwrite", partition_by=[T.DT])
    items = [(i, f"title {i}", f"about {i}", ["cat"]) for i in item_ids]
    lake.write(T.SILVER_ITEMS, spark.createDataFrame(items, ITEMS_SCHEMA), mode="overwrite")


def sequential_histories(n_users: int, n_items: int, length: int, seed: int = 0) -> dict[str, list[str]]:
    """Strongly sequential data: every user walks the catalog ring i, i+1, i+2, ... from a random start.

    The next item is a function of the last one, which a sequence model learns and popularity cannot.
    """
    import random

    rng = random.Random(seed)
    return {f"u{u:04d}": [f"i{(start + k) % n_items:03d}" for k in range(length)]
            for u in range(n_users) for start in [rng.randrange(n_items)]}
