"""The sequences stage on a hand-made history: item index, ordering with ties, split, padding, min_events, layout."""
from datetime import datetime

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from jobs import sequences as job
from lakerec.config import load_config
from lakerec import tables as T
from lakerec.context import run_stage
from lakerec.data.sequences import SequenceInputError, check_inputs, item_ids_in_order
from lakerec.lake import Lake
from tests.conftest import CONF_DIR
from tests.data.helpers import EVENTS_SCHEMA, event_rows, own_mlflow_store, write_silver

t = datetime(2026, 11, 1, 8, 0, 0)
HAND_MADE = [
    # u1: C and B share a timestamp; event id e2 < e3 puts C first. A repeats at the end.
    ("e1", "u1", "A", "view", t.replace(minute=1), 1.0, "s", t.date()),
    ("e3", "u1", "B", "view", t.replace(minute=2), 1.0, "s", t.date()),
    ("e2", "u1", "C", "view", t.replace(minute=2), 1.0, "s", t.date()),
    ("e4", "u1", "D", "view", t.replace(minute=3), 1.0, "s", t.date()),
    ("e5", "u1", "A", "view", t.replace(minute=4), 1.0, "s", t.date()),
    # u2: below min_events (3); F exists only in the events, not in the catalog
    ("f1", "u2", "F", "view", t.replace(minute=1), 1.0, "s", t.date()),
    ("f2", "u2", "B", "view", t.replace(minute=2), 1.0, "s", t.date()),
]
CATALOG = ["A", "B", "C", "D", "E"]  # E: in the catalog, never seen in the events


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences") / "lake"
    with own_mlflow_store():
        cfg = load_config("test", [f"lake.root={root}", "sequences.max_len=4", "sequences.min_events=3",
                                   "train.ranks=2"], conf_dir=CONF_DIR)
        lake = Lake(cfg.lake.root, spark)
        events = HAND_MADE + event_rows({"u3": ["B", "C", "D"], "u4": ["A", "B", "C", "D", "E", "F", "A", "B"]})
        write_silver(spark, lake, events, CATALOG)
        result = run_stage("sequences", job.run, cfg, spark)
    return cfg, lake, result


def test_item_index_is_dense_sorted_over_catalog_and_events(built):
    _, lake, _ = built
    assert item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX)) == ["A", "B", "C", "D", "E", "F"]


def test_split_ordering_padding_and_min_events(built):
    _, lake, result = built
    rows = {r[T.USER_ID]: r.asDict() for r in lake.read(T.SILVER_SEQUENCES).collect()}
    # u1 history A C B D A -> idx 1 3 2 4 1
    assert rows["u1"] == {
        T.USER_ID: "u1", T.N_EVENTS: 5, T.HISTORY: [1, 3, 2, 4, 1],
        T.TRAIN_INPUT: [0, 0, 1, 3], T.TRAIN_TARGET: [0, 0, 3, 2],
        T.VALID_INPUT: [0, 1, 3, 2], T.VALID_TARGET: 4,
        T.TEST_INPUT: [1, 3, 2, 4], T.TEST_TARGET: 1,
        T.SCORE_INPUT: [3, 2, 4, 1],
    }
    # u2: two events < min_events: nothing to train or evaluate, still scored
    assert rows["u2"][T.TRAIN_TARGET] == [0, 0, 0, 0] and rows["u2"][T.TRAIN_INPUT] == [0, 0, 0, 0]
    assert rows["u2"][T.VALID_TARGET] == 0 and rows["u2"][T.TEST_TARGET] == 0
    assert rows["u2"][T.SCORE_INPUT] == [0, 0, 6, 2]
    # u3: exactly min_events: valid/test but no training pair (one item before valid)
    assert rows["u3"][T.TRAIN_TARGET] == [0, 0, 0, 0]
    assert (rows["u3"][T.VALID_INPUT], rows["u3"][T.VALID_TARGET]) == ([0, 0, 0, 2], 3)
    assert (rows["u3"][T.TEST_INPUT], rows["u3"][T.TEST_TARGET]) == ([0, 0, 2, 3], 4)
    # u4: 8 events, L = 4: every array keeps the newest 4, inputs and targets stay aligned
    u4 = rows["u4"]
    assert (u4[T.TRAIN_INPUT], u4[T.TRAIN_TARGET]) == ([2, 3, 4, 5], [3, 4, 5, 6])
    assert (u4[T.VALID_INPUT], u4[T.VALID_TARGET]) == ([3, 4, 5, 6], 1)
    assert (u4[T.TEST_INPUT], u4[T.TEST_TARGET]) == ([4, 5, 6, 1], 2)
    assert u4[T.SCORE_INPUT] == [5, 6, 1, 2]
    assert result.metrics == {"users": 4, "users_with_split": 3, "interactions": 18, "items": 6}


def test_table_has_row_groups_for_every_rank(built):
    cfg, lake, _ = built
    files = lake.files(T.SILVER_SEQUENCES)
    row_groups = sum(pq.ParquetFile(f.removeprefix("file://")).num_row_groups for f in files)
    assert row_groups >= 2 * cfg.train.ranks
    assert lake.history(T.SILVER_SEQUENCES)[0]["metadata"] == {"max_len": "4", "min_events": "3"}


def test_null_keys_are_refused_with_the_column_named(spark):
    events = spark.createDataFrame(HAND_MADE, EVENTS_SCHEMA).withColumn(
        T.TS, F.when(F.col(T.EVENT_ID) == "e1", F.lit(None)).otherwise(F.col(T.TS)))
    items = spark.createDataFrame([("A",)], f"{T.ITEM_ID} string")
    with pytest.raises(SequenceInputError, match=r"'ts': 1"):
        check_inputs(events, items)
