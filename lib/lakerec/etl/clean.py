"""Clean bronze events: normalise ids and types, give every event an id, drop impossible times and bots.

Each step returns the rows it keeps and the rows it drops with a `reason`, so silver can account for every row.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import EtlConf

OUT_OF_WINDOW = "out_of_window"
BOT = "bot"


class Split(NamedTuple):
    kept: DataFrame
    dropped: DataFrame  # the dropped rows, with a `reason` column


def clean(events: DataFrame, etl: EtlConf) -> Split:
    """normalise -> drop events outside [valid_from, ingested_at + max_future_minutes] -> drop bots
    (bot rates are counted over the events left in the window)."""
    df = normalise(events)
    columns = df.columns
    windowed = df.withColumn("_in_window", in_window(etl))
    checked = flag_bots(windowed.where("_in_window").select(*columns), etl)
    kept = checked.where(~F.col("_bot")).select(*columns)
    dropped = _with_reason(windowed.where(~F.col("_in_window")).select(*columns), OUT_OF_WINDOW).unionByName(
        _with_reason(checked.where("_bot").select(*columns), BOT)
    )
    return Split(kept, dropped)


def normalise(events: DataFrame) -> DataFrame:
    """Trimmed ids, lower-case event types, and an event_id for every row (a content hash when none came)."""
    ids = (T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.SESSION_ID)
    trimmed = events.select(*(F.trim(c).alias(c) if c in ids else F.col(c) for c in events.columns))
    trimmed = trimmed.withColumn(T.EVENT_TYPE, F.lower(F.trim(T.EVENT_TYPE)))
    given = F.when(F.col(T.EVENT_ID) != "", F.col(T.EVENT_ID))
    return trimmed.withColumn(T.EVENT_ID, F.coalesce(given, content_hash()))


def content_hash() -> Column:
    """A deterministic id from what the event says (user, item, type, time, value): the same event delivered
    twice without an id gets the same id, so dedupe treats it as one."""
    parts = [F.col(T.USER_ID), F.col(T.ITEM_ID), F.col(T.EVENT_TYPE),
             F.unix_micros(T.TS).cast("string"), F.coalesce(F.col(T.VALUE).cast("string"), F.lit(""))]
    return F.substring(F.sha2(F.concat_ws("\u001f", *parts), 256), 1, 32)


def in_window(etl: EtlConf) -> Column:
    """Not before etl.valid_from, not later than the event's ingest time + etl.max_future_minutes."""
    earliest = int(_utc(etl.valid_from).timestamp() * 1_000_000)
    ts = F.unix_micros(T.TS)
    return (ts >= earliest) & (ts <= F.unix_micros(T.INGESTED_AT) + etl.max_future_minutes * 60_000_000)


def flag_bots(df: DataFrame, etl: EtlConf) -> DataFrame:
    """Adds `_bot`: the user agent matches a bot pattern, or the user sent more than
    etl.bot_max_events_per_minute events within one calendar minute (UTC) at any time."""
    by_agent = F.lit(False)
    for pattern in etl.bot_user_agent_patterns:
        by_agent = by_agent | F.coalesce(F.col(T.USER_AGENT).rlike(pattern), F.lit(False))
    minute = F.floor(F.unix_seconds(T.TS) / 60)
    per_minute = df.withColumn("_per_minute", F.count(F.lit(1)).over(Window.partitionBy(T.USER_ID, minute)))
    busiest = F.max("_per_minute").over(Window.partitionBy(T.USER_ID))
    return per_minute.withColumn("_bot", by_agent | (busiest > etl.bot_max_events_per_minute)).drop("_per_minute")


def _with_reason(df: DataFrame, reason: str) -> DataFrame:
    return df.withColumn(T.REASON, F.lit(reason))


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"etl.valid_from {text!r} is not an ISO-8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
