"""Dedupe clean events: repeated deliveries of one event (within a batch or across batches), then client
retries of one action. Survivors are chosen by a total order, so every recompute keeps the same rows."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.etl.clean import Split

DUPLICATE_EVENT_ID = "duplicate_event_id"
DUPLICATE_ACROSS_BATCHES = "duplicate_across_batches"
CLIENT_RETRY = "client_retry"


def file_order() -> list[Column]:
    """Where a row came from, in delivery order: breaks ties between events with equal timestamps."""
    return [F.col(T.INGESTED_AT), F.col(T.SOURCE_FILE), F.col(T.SOURCE_LINE)]


def dedupe(events: DataFrame, retry_window_seconds: int, published_batches: list[str] = ()) -> Split:
    """Drop repeated event_ids (the first delivery stays), then client retries: an event whose user, item and
    type repeat the previous one's within `retry_window_seconds` (0 disables). A burst of retries keeps only
    its first event, since each retry is compared with the one just before it.

    A repeat whose kept delivery came in one of `published_batches` (already in silver) while the repeat came
    in another batch is a late re-delivery: reason duplicate_across_batches rather than duplicate_event_id.
    """
    first_delivery = Window.partitionBy(T.EVENT_ID).orderBy(*file_order(), T.TS, T.USER_ID, T.ITEM_ID)
    ranked = (events.withColumn("_delivery", F.row_number().over(first_delivery))
              .withColumn("_first_batch", F.first(T.BATCH_ID).over(first_delivery)))
    unique = ranked.where(F.col("_delivery") == 1).drop("_delivery", "_first_batch")
    late = F.col("_first_batch").isin(list(published_batches)) & (F.col("_first_batch") != F.col(T.BATCH_ID))
    repeated = (ranked.where(F.col("_delivery") > 1)
                .withColumn(T.REASON, F.when(late, DUPLICATE_ACROSS_BATCHES).otherwise(DUPLICATE_EVENT_ID))
                .drop("_delivery", "_first_batch"))
    if retry_window_seconds == 0:
        return Split(unique, repeated)
    same_action = Window.partitionBy(T.USER_ID, T.ITEM_ID, T.EVENT_TYPE).orderBy(T.TS, *file_order(), T.EVENT_ID)
    gap = F.unix_micros(T.TS) - F.lag(F.unix_micros(T.TS)).over(same_action)
    marked = unique.withColumn("_retry", F.coalesce(gap <= retry_window_seconds * 1_000_000, F.lit(False)))
    kept = marked.where(~F.col("_retry")).drop("_retry")
    retries = marked.where("_retry").drop("_retry").withColumn(T.REASON, F.lit(CLIENT_RETRY))
    return Split(kept, repeated.unionByName(retries))


def published_elsewhere(events: DataFrame, published_ids: DataFrame) -> Split:
    """Events whose event_id silver already holds outside the days being recomputed (a re-delivery whose clock
    moved it to another day): dropped as duplicate_across_batches, checked against silver itself."""
    seen = published_ids.select(T.EVENT_ID).distinct().withColumn("_published", F.lit(True))
    marked = events.join(seen, T.EVENT_ID, "left").withColumn("_published", F.coalesce("_published", F.lit(False)))
    kept = marked.where(~F.col("_published")).drop("_published")
    dropped = (marked.where("_published").drop("_published")
               .withColumn(T.REASON, F.lit(DUPLICATE_ACROSS_BATCHES)))
    return Split(kept, dropped)
