"""Dedupe clean events: repeated deliveries of one event, then client retries of one action."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.etl.clean import Split

DUPLICATE_EVENT_ID = "duplicate_event_id"
CLIENT_RETRY = "client_retry"


def dedupe(events: DataFrame, retry_window_seconds: int) -> Split:
    """Drop repeated event_ids (the first delivery stays), then client retries: an event whose user, item and
    type repeat the previous one's within `retry_window_seconds` (0 disables). A burst of retries keeps only
    its first event, since each retry is compared with the one just before it."""
    first_delivery = Window.partitionBy(T.EVENT_ID).orderBy(T.INGESTED_AT, T.SOURCE_FILE, T.TS, T.USER_ID, T.ITEM_ID)
    ranked = events.withColumn("_delivery", F.row_number().over(first_delivery))
    unique = ranked.where(F.col("_delivery") == 1).drop("_delivery")
    repeated = ranked.where(F.col("_delivery") > 1).drop("_delivery").withColumn(T.REASON, F.lit(DUPLICATE_EVENT_ID))
    if retry_window_seconds == 0:
        return Split(unique, repeated)
    same_action = Window.partitionBy(T.USER_ID, T.ITEM_ID, T.EVENT_TYPE).orderBy(T.TS, T.EVENT_ID)
    gap = F.unix_micros(T.TS) - F.lag(F.unix_micros(T.TS)).over(same_action)
    marked = unique.withColumn("_retry", F.coalesce(gap <= retry_window_seconds * 1_000_000, F.lit(False)))
    kept = marked.where(~F.col("_retry")).drop("_retry")
    retries = marked.where("_retry").drop("_retry").withColumn(T.REASON, F.lit(CLIENT_RETRY))
    return Split(kept, repeated.unionByName(retries))
