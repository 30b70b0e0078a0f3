"""Events -> dense item index and one row of training/evaluation sequences per user (leave-last-out split).

Everything is Spark SQL on arrays, so it runs distributed. Each user's history is ordered by (ts, source_file,
source_line) when silver carries the ingest lineage, so events with the same timestamp keep their file order
(MovieLens has many such ties), else by (ts, event_id).
Per user with history h = [i_1 .. i_n] (n >= min_events) and L = max_len, all arrays left-padded with 0:
  train_input/train_target  h[:-2] shifted by one (SASRec: every position predicts the next item), last L
  valid_input, valid_target h[:-2] -> h[-2]
  test_input,  test_target  h[:-1] -> h[-1]
Users below min_events keep zero arrays and target 0 (no training, no evaluation) but always get score_input
(the last L items of the whole history), so they can still be scored. history_types holds each history item's
event type: evaluation filters the excluded items by it as scoring does (lakerec.data.exclusion).

Training reads silver.train_windows instead of train_input/train_target: h[:-2] cut into windows of L
(input, next item) pairs ending every `window_stride` items from the newest back, the oldest window full
(or the whole training history when it is shorter than L), so every training position is in some window.
With `prefixes` the windows go on below the first full one, down to the first target: every prefix of the
history (at that stride) is a sample whose newest target sits at the last position, where inference reads
(the subsequence augmentation of CoSeRec, ICLRec and ICSRec).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as St

from lakerec import tables as T
from lakerec.config import SequencesConf

ITEM_INDEX_SCHEMA = St.StructType([
    St.StructField(T.ITEM_ID, St.StringType(), False),
    St.StructField(T.ITEM_IDX, St.IntegerType(), False),
])
_INT_ARRAY = "array<int>"
SEQUENCES_VERSION = "sequences_version"  # silver.train_windows commit metadata: the silver.sequences version it cut
INPUTS = "inputs"  # silver.train_windows commit metadata: the input table versions and settings of the build


class SequenceInputError(ValueError):
    """silver.events / silver.items break the contract this stage relies on (no null keys)."""


def check_inputs(events: DataFrame, items: DataFrame) -> int:
    """Refuse null keys (silver promises none; a null would silently vanish in a join) and return the event count."""
    row = events.agg(
        F.count(F.lit(1)).alias("rows"),
        *[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in (T.USER_ID, T.ITEM_ID, T.TS, T.EVENT_ID)],
    ).first()
    bad = {c: row[c] for c in (T.USER_ID, T.ITEM_ID, T.TS, T.EVENT_ID) if row[c]}
    null_items = items.where(F.col(T.ITEM_ID).isNull()).count()
    if null_items:
        bad["items.item_id"] = null_items
    if bad:
        raise SequenceInputError(f"null keys in the silver inputs (column: rows): {bad}")
    return int(row["rows"])


def build_item_index(events: DataFrame, items: DataFrame, previous: DataFrame | None = None) -> DataFrame:
    """The rows to add to the item index: every item of the catalog or the events not in `previous` (the current
    index, None on the first build) -> item_idx numbered on from its largest, in item_id order (0 stays padding).

    The index only grows: an item keeps its item_idx for good, so a model trained on an older index still reads
    the same ids (warm start, an older champion). zipWithIndex over a globally sorted frame numbers the items
    without pulling them into one partition.
    """
    ids = (events.select(F.col(T.ITEM_ID).cast("string"))
           .union(items.select(F.col(T.ITEM_ID).cast("string")))
           .distinct())
    offset = 0
    if previous is not None:
        ids = ids.join(previous.select(T.ITEM_ID), T.ITEM_ID, "left_anti")
        offset = int(previous.agg(F.max(T.ITEM_IDX)).first()[0] or 0)
    numbered = ids.orderBy(T.ITEM_ID).rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1] + 1 + offset))
    return events.sparkSession.createDataFrame(numbered, ITEM_INDEX_SCHEMA)


def build_sequences(events: DataFrame, item_index: DataFrame, conf: SequencesConf) -> DataFrame:
    """silver.events + item index -> one row per user (schema in the module docstring)."""
    max_len = conf.max_len
    keys = order_keys(events)
    ordered = (events.select(F.col(T.USER_ID), *keys, F.col(T.ITEM_ID).cast("string"), T.EVENT_TYPE)
               .join(item_index, T.ITEM_ID)
               .groupBy(T.USER_ID)
               .agg(F.sort_array(F.collect_list(F.struct(*keys, T.ITEM_IDX, T.EVENT_TYPE))).alias("_events")))
    with_history = ordered.select(T.USER_ID, F.transform("_events", lambda e: e[T.ITEM_IDX]).alias(T.HISTORY),
                                  F.transform("_events", lambda e: e[T.EVENT_TYPE]).alias(T.HISTORY_TYPES))

    h, n = F.col(T.HISTORY), F.size(T.HISTORY)
    split = n >= conf.min_events
    train_part = _head(h, n - 2)  # what training may see: everything before the valid and test items
    zeros = F.array_repeat(F.lit(0), max_len)

    def when_split(value: Column, empty: Column) -> Column:
        return F.when(split, value).otherwise(empty)

    return with_history.select(
        T.USER_ID,
        n.cast("int").alias(T.N_EVENTS),
        h.cast(_INT_ARRAY).alias(T.HISTORY),
        F.col(T.HISTORY_TYPES),
        when_split(left_pad(_head(train_part, F.size(train_part) - 1), max_len), zeros).cast(_INT_ARRAY).alias(T.TRAIN_INPUT),
        when_split(left_pad(_tail_from(train_part, 2), max_len), zeros).cast(_INT_ARRAY).alias(T.TRAIN_TARGET),
        when_split(left_pad(train_part, max_len), zeros).cast(_INT_ARRAY).alias(T.VALID_INPUT),
        when_split(F.element_at(h, -2), F.lit(0)).cast("int").alias(T.VALID_TARGET),
        when_split(left_pad(_head(h, n - 1), max_len), zeros).cast(_INT_ARRAY).alias(T.TEST_INPUT),
        when_split(F.element_at(h, -1), F.lit(0)).cast("int").alias(T.TEST_TARGET),
        left_pad(h, max_len).cast(_INT_ARRAY).alias(T.SCORE_INPUT),
    )


def order_keys(events: DataFrame) -> list[str]:
    """The columns that order a user's events: file order breaks timestamp ties where ingest recorded it."""
    if {T.SOURCE_FILE, T.SOURCE_LINE} <= set(events.columns):
        return [T.TS, T.SOURCE_FILE, T.SOURCE_LINE]
    return [T.TS, T.EVENT_ID]


def build_train_windows(sequences: DataFrame, conf: SequencesConf) -> DataFrame:
    """silver.sequences -> silver.train_windows: (user_id, window, train_input, train_target), window 0 newest.

    With m = len(h[:-2]) items, targets are positions 1..m-1 (0-based); window k ends at target position
    window_end(k) and holds the L targets up to it, each with the item before it.
    """
    length, stride = conf.max_len, conf.window_stride
    train_part = _head(F.col(T.HISTORY), F.size(T.HISTORY) - 2)
    users = (sequences.where(F.col(T.TEST_TARGET) > 0)
             .select(T.USER_ID, train_part.alias("_h"))
             .where(F.size("_h") >= 2)
             .withColumn("_m", F.size("_h")))
    n_windows = 1 + F.ceil((F.col("_m") - 1 - _oldest_end(conf)) / stride).cast("int")
    exploded = users.select("*", F.explode(F.sequence(F.lit(0), n_windows - 1)).alias(T.WINDOW))
    end = window_end(conf)
    start = F.greatest(F.lit(1), end - length + 1)  # first target position, 0-based
    count = end - start + 1
    return exploded.select(
        T.USER_ID,
        F.col(T.WINDOW).cast("int").alias(T.WINDOW),
        left_pad(F.slice("_h", start, count), length).cast(_INT_ARRAY).alias(T.TRAIN_INPUT),  # 1-based: items start-1..
        left_pad(F.slice("_h", start + 1, count), length).cast(_INT_ARRAY).alias(T.TRAIN_TARGET),
    )


def window_end(conf: SequencesConf) -> Column:
    """Target position (0-based) where window k = column `window` ends, for a training part of `_m` items.

    Every `window_stride` items from the newest (m-1) back, not below the first full window (L, or m-1 when
    shorter), or with `prefixes` not below the first target (1).
    """
    return F.greatest(F.col("_m") - 1 - F.col(T.WINDOW) * conf.window_stride, _oldest_end(conf))


def _oldest_end(conf: SequencesConf) -> Column:
    """Where the oldest window ends: the first full window's last target, or with `prefixes` the first target."""
    return F.lit(1) if conf.prefixes else F.least(F.lit(conf.max_len), F.col("_m") - 1)


def warm_windows(windows: DataFrame, sequences: DataFrame, parent_sequences: DataFrame, conf: SequencesConf,
                 replay_share: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(new, replay) training windows for a run warm-started from a model trained on `parent_sequences`.

    New: the windows holding a target the parent never trained on. A user's training part had m_old items in the
    parent's snapshot and m now; targets at positions >= m_old are new (all of them for a user the parent did not
    train), and window k ends at window_end(k), so it is new when it ends at or after max(m_old, 1). Replay: a
    seeded sample of the other windows, as many as make `replay_share` of the whole, against forgetting.
    """
    now = sequences.select(T.USER_ID, (F.size(T.HISTORY) - 2).alias("_m"))
    before = parent_sequences.where(F.col(T.TEST_TARGET) > 0).select(T.USER_ID, (F.size(T.HISTORY) - 2).alias("_old"))
    joined = windows.join(now, T.USER_ID).join(before, T.USER_ID, "left")
    is_new = window_end(conf) >= F.greatest(F.coalesce(F.col("_old"), F.lit(0)), F.lit(1))
    columns = windows.columns
    new = joined.where(is_new).select(*columns)
    n_new = new.count()
    n_replay = round(n_new * replay_share / (1 - replay_share))
    replay = (joined.where(~is_new).orderBy(F.xxhash64(T.USER_ID, T.WINDOW, F.lit(seed)), T.USER_ID, T.WINDOW)
              .limit(n_replay).select(*columns))
    return new, replay


def layout_for_feed(df: DataFrame, n_files: int) -> DataFrame:
    """Range-partition rows into n_files files (one row group each when small) in (user_id[, window]) order.

    Petastorm shards by row group, so the table needs at least as many row groups as there are ranks, and
    a deterministic layout keeps training repeatable.
    """
    keys = [c for c in (T.USER_ID, T.WINDOW) if c in df.columns]
    return df.repartitionByRange(n_files, *keys).sortWithinPartitions(*keys)


def sequence_metrics(sequences: DataFrame) -> dict[str, int]:
    """users, users_with_split (trainable and evaluable) and interactions (events that reached a sequence)."""
    row = sequences.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum((F.col(T.TEST_TARGET) > 0).cast("long")).alias("users_with_split"),
        F.sum(T.N_EVENTS).alias("interactions"),
    ).first()
    return {k: int(row[k] or 0) for k in ("users", "users_with_split", "interactions")}


def _head(arr: Column, length: Column) -> Column:
    """The first `length` elements (none when length <= 0)."""
    return F.slice(arr, 1, F.greatest(length, F.lit(0)))


def _tail_from(arr: Column, start: int) -> Column:
    """Elements from 1-based position `start` to the end."""
    return F.slice(arr, start, F.greatest(F.size(arr) - start + 1, F.lit(0)))


def left_pad(arr: Column, max_len: int) -> Column:
    """The last max_len elements, left-padded with 0 to exactly max_len."""
    last = F.slice(arr, F.greatest(F.size(arr) - max_len + 1, F.lit(1)), max_len)
    return F.concat(F.array_repeat(F.lit(0), F.lit(max_len) - F.size(last)), last)


def item_ids_in_order(item_index: DataFrame) -> list[str]:
    """item_id by item_idx: element i is the item with item_idx i + 1 (what the model and the registry take)."""
    rows = item_index.orderBy(T.ITEM_IDX).select(T.ITEM_IDX, T.ITEM_ID).collect()
    if [r[T.ITEM_IDX] for r in rows] != list(range(1, len(rows) + 1)):
        raise SequenceInputError("silver.item_index is not a dense numbering 1..n: rebuild it with the sequences stage")
    return [r[T.ITEM_ID] for r in rows]
