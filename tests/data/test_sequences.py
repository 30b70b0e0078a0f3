"""The sequences stage on a hand-made history: item index, ordering with ties, split, padding, min_events, layout."""
from datetime import datetime

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from jobs import sequences as job
from lakerec.config import load_config
from lakerec import tables as T
from lakerec.context import run_stage
from lakerec.config import SequencesConf
from lakerec.data.sequences import (ITEM_INDEX_SCHEMA, SEQUENCES_VERSION, SequenceInputError, build_sequences,
                                    build_train_windows, check_inputs, item_ids_in_order, order_keys)
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
                                   "sequences.window_stride=2", "train.ranks=2"], conf_dir=CONF_DIR)
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
        T.USER_ID: "u1", T.N_EVENTS: 5, T.HISTORY: [1, 3, 2, 4, 1], T.HISTORY_TYPES: ["view"] * 5,
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
    assert result.metrics == {"users": 4, "users_with_split": 3, "interactions": 18, "items": 6, "items_added": 6,
                              "train_windows": 3}


def test_train_windows_cover_every_training_position_from_the_sequences_version(built):
    _, lake, _ = built
    rows = sorted((r[T.USER_ID], r[T.WINDOW], r[T.TRAIN_INPUT], r[T.TRAIN_TARGET])
                  for r in lake.read(T.SILVER_TRAIN_WINDOWS).collect())
    assert rows == [
        ("u1", 0, [0, 0, 1, 3], [0, 0, 3, 2]),  # h[:-2] = A C B: shorter than L, one window
        # u4: h[:-2] = A..F (1..6), L = 4, stride 2: the newest window, then one reaching back to the start
        ("u4", 0, [2, 3, 4, 5], [3, 4, 5, 6]),
        ("u4", 1, [1, 2, 3, 4], [2, 3, 4, 5]),
    ]  # u2 (no split) and u3 (one training item, no pair) have none
    commit = lake.history(T.SILVER_TRAIN_WINDOWS)[0]
    assert commit["metadata"][SEQUENCES_VERSION] == str(lake.version(T.SILVER_SEQUENCES))


def test_long_histories_become_windows_whose_targets_cover_each_position(spark):
    history = list(range(1, 31))  # 30 items: train part 1..28, targets at positions 1..27
    df = spark.createDataFrame([("u", history, 30)], f"{T.USER_ID} string, {T.HISTORY} array<int>, {T.TEST_TARGET} int")
    windows = build_train_windows(df, SequencesConf(max_len=10, min_events=3, window_stride=7)).collect()
    covered = sorted({t for w in windows for t in w[T.TRAIN_TARGET] if t})
    assert covered == list(range(2, 29))  # every training target, newest window first
    assert [w[T.WINDOW] for w in windows] == [0, 1, 2, 3]  # ends 27, 20, 13, and the first full window (10)
    for w in windows:
        pairs = [(i, t) for i, t in zip(w[T.TRAIN_INPUT], w[T.TRAIN_TARGET]) if t]
        assert len(pairs) == 10 and all(t == i + 1 for i, t in pairs)  # each target is the item after its input


def test_prefixes_end_a_window_every_stride_down_to_the_first_target(spark):
    history = list(range(1, 15))  # 14 items: train part 1..12, targets at positions 1..11
    df = spark.createDataFrame([("u", history, 14)], f"{T.USER_ID} string, {T.HISTORY} array<int>, {T.TEST_TARGET} int")
    conf = SequencesConf(max_len=5, min_events=3, window_stride=3, prefixes=True)
    windows = build_train_windows(df, conf).collect()
    ends = [max(w[T.TRAIN_TARGET]) - 1 for w in windows]  # target item t sits at position t - 1
    assert [w[T.WINDOW] for w in windows] == [0, 1, 2, 3, 4]
    assert ends == [11, 8, 5, 2, 1]  # every 3 from the newest, then the first target (not stopping at the full window)
    for w, end in zip(windows, ends):
        pairs = [(i, t) for i, t in zip(w[T.TRAIN_INPUT], w[T.TRAIN_TARGET]) if t]
        assert len(pairs) == min(5, end) and all(t == i + 1 for i, t in pairs)
        assert w[T.TRAIN_TARGET][-1] == end + 1  # each window's newest target at the last position
    plain = build_train_windows(df, SequencesConf(max_len=5, min_events=3, window_stride=3)).collect()
    assert [max(w[T.TRAIN_TARGET]) - 1 for w in plain] == [11, 8, 5]  # without: the oldest window is the first full one


def test_prefixes_key_a_build_only_while_on():
    """Off, `prefixes` is no part of what a build is keyed by: a lake built before it existed still skips a rerun."""
    off = job.sequences_settings(load_config("test", conf_dir=CONF_DIR))
    assert "prefixes" not in off and "window_stride" in off
    on = job.sequences_settings(load_config("test", ["sequences.prefixes=true"], conf_dir=CONF_DIR))
    assert on["prefixes"] is True


def test_timestamp_ties_follow_file_order_when_silver_has_it(spark):
    same = t.replace(minute=5)
    rows = [("e9", "u", "A", same, "part-1", 3), ("e1", "u", "B", same, "part-1", 1), ("e5", "u", "C", same, "part-0", 7),
            ("e0", "u", "D", t.replace(minute=6), "part-0", 1)]
    events = spark.createDataFrame([(*r, "view") for r in rows],
                                   f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.TS} timestamp, "
                                   f"{T.SOURCE_FILE} string, {T.SOURCE_LINE} long, {T.EVENT_TYPE} string")
    index = spark.createDataFrame([(c, i) for i, c in enumerate("ABCD", 1)], ITEM_INDEX_SCHEMA)
    conf = SequencesConf(max_len=4, min_events=3)
    by_file = build_sequences(events, index, conf).first()[T.HISTORY]
    assert order_keys(events) == [T.TS, T.SOURCE_FILE, T.SOURCE_LINE]
    assert by_file == [3, 2, 1, 4]  # C (part-0:7), B (part-1:1), A (part-1:3), then D
    by_id = build_sequences(events.drop(T.SOURCE_LINE), index, conf).first()[T.HISTORY]
    assert by_id == [2, 3, 1, 4]  # without line numbers: event id e1 < e5 < e9


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
