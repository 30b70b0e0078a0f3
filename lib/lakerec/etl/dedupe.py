"""Dedupe clean events: repeated deliveries of one event (within a batch or across batches), then client
retries of one action. Survivors are chosen by a total order, so every recompute keeps the same rows."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T

DUPLICATE_EVENT_ID = "duplicate_event_id"
DUPLICATE_ACROSS_BATCHES = "duplicate_across_batches"
CLIENT_RETRY = "client_retry"


def file_order() -> list[Column]:
    """Where a row came from, in delivery order: breaks ties between events with equal timestamps."""
    return [F.col(T.INGESTED_AT), F.col(T.SOURCE_FILE), F.col(T.SOURCE_LINE)]


def mark_dedupe(marked: DataFrame, retry_window_seconds: int, published_batches: list[str] = ()) -> DataFrame:
    """Rows whose `reason` is still null (kept so far) get a reason where they repeat an event: a repeated
    event_id is duplicate_event_id (the first delivery stays), or duplicate_across_batches when the kept delivery
    came in one of `published_batches` (already in silver) and the repeat in another batch: a late re-delivery.
    Then an event whose user, item and type repeat the previous one's within `retry_window_seconds` (0 disables)
    is a client_retry; a burst of retries keeps only its first event, since each is compared with the one before.

    Rows already dropped take no part: both windows order the rows still kept first. The retry window is
    partitioned by user alone (item and type lead its order), which sessionizing by user reuses without another
    shuffle."""
    dead = F.col(T.REASON).isNotNull()
    first_delivery = Window.partitionBy(T.EVENT_ID).orderBy(dead, *file_order(), T.TS, T.USER_ID, T.ITEM_ID)
    first_batch = F.first(T.BATCH_ID).over(first_delivery)
    late = first_batch.isin(list(published_batches)) & (first_batch != F.col(T.BATCH_ID))
    repeat = F.when(late, DUPLICATE_ACROSS_BATCHES).otherwise(DUPLICATE_EVENT_ID)
    reason = F.when(dead, F.col(T.REASON)).when(F.row_number().over(first_delivery) > 1, repeat)
    df = marked.withColumn(T.REASON, reason)
    if retry_window_seconds == 0:
        return df
    dead = F.col(T.REASON).isNotNull()
    same_user = Window.partitionBy(T.USER_ID).orderBy(dead, T.ITEM_ID, T.EVENT_TYPE, T.TS, *file_order(), T.EVENT_ID)
    previous = [F.lag(c).over(same_user) for c in (T.ITEM_ID, T.EVENT_TYPE)]
    same_action = previous[0].eqNullSafe(F.col(T.ITEM_ID)) & previous[1].eqNullSafe(F.col(T.EVENT_TYPE))
    gap = F.unix_micros(T.TS) - F.lag(F.unix_micros(T.TS)).over(same_user)
    retry = same_action & F.coalesce(gap <= retry_window_seconds * 1_000_000, F.lit(False))
    return df.withColumn(T.REASON, F.when(dead, F.col(T.REASON)).when(retry, CLIENT_RETRY))


def mark_published_elsewhere(marked: DataFrame, published_ids: DataFrame) -> DataFrame:
    """Rows still kept whose event_id silver already holds outside the days being recomputed (a re-delivery
    whose clock moved it to another day) get reason duplicate_across_batches: checked against silver itself."""
    seen = published_ids.select(T.EVENT_ID).distinct().withColumn("_published", F.lit(True))
    joined = marked.join(seen, T.EVENT_ID, "left")
    reason = F.when(F.col(T.REASON).isNotNull(), F.col(T.REASON)).when(F.col("_published"), DUPLICATE_ACROSS_BATCHES)
    return joined.withColumn(T.REASON, reason).drop("_published").select(*marked.columns)
