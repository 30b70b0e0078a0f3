"""Clean bronze events: normalise ids and types, give every event an id, mark impossible times and bots.

Steps mark a `reason` on the rows they drop instead of splitting the frame, so silver computes every window once
and still accounts for every row.
"""
from __future__ import annotations


from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import EtlConf
from lakerec.etl.pseudonym import hmac_sha256

OUT_OF_WINDOW = "out_of_window"
BOT = "bot"


def mark_clean(events: DataFrame, etl: EtlConf, key: bytes | None = None, drop_agent: bool = False) -> DataFrame:
    """normalise (pseudonymising user ids with `key` unless None), then set `reason`: out_of_window for events
    outside [valid_from, ingested_at + max_future_minutes], bot for bots (rates count the events left in the
    window), null on the rows kept. `drop_agent`: user_agent (only the bot rules read it) is dropped before the
    rows are shuffled."""
    df = normalise(events, etl, key)
    columns = [c for c in df.columns if not (drop_agent and c == T.USER_AGENT)]
    checked = flag_bots(df.withColumn("_in_window", in_window(etl)), etl, among="_in_window", drop_agent=drop_agent)
    reason = F.when(~F.col("_in_window"), OUT_OF_WINDOW).when(F.col("_bot"), BOT)
    return checked.select(*columns, reason.alias(T.REASON))


def normalise(events: DataFrame, etl: EtlConf, key: bytes | None = None) -> DataFrame:
    """Ids trimmed, NFC-normalised and lower-cased where etl.lowercase_ids says; event types lower-cased and
    mapped through etl.event_type_map; user ids replaced by their HMAC when a key is given; an event_id for
    every row (a content hash when none came, taken after pseudonymising so it does not carry the raw id)."""
    ids = (T.EVENT_ID, T.USER_ID, T.ITEM_ID)
    df = events.select(*(nfc(F.trim(c)).alias(c) if c in ids else F.col(c) for c in events.columns))
    df = df.select(*(F.lower(c).alias(c) if c in etl.lowercase_ids else F.col(c) for c in df.columns))
    event_type = F.lower(F.trim(T.EVENT_TYPE))
    if etl.event_type_map:
        mapping = F.create_map(*(F.lit(x) for k, v in sorted(etl.event_type_map.items())
                                 for x in (k.strip().lower(), v)))
        event_type = F.coalesce(mapping[event_type], event_type)
    df = df.withColumn(T.EVENT_TYPE, event_type)
    if key is not None:
        df = df.withColumn(T.USER_ID, hmac_sha256(F.col(T.USER_ID), key))
    given = F.when(F.col(T.EVENT_ID) != "", F.col(T.EVENT_ID))
    return df.withColumn(T.EVENT_ID, F.coalesce(given, content_hash()))


def nfc(c: Column) -> Column:
    """Unicode NFC of a string column, in the JVM: ICU4J (which Spark 4 ships for collations) composes the
    strings that are not plain ASCII (ASCII is already NFC, and length == bytes finds it without a regex).
    Spark SQL has no normaliser of its own; a Python UDF would ship every row to a Python worker."""
    plain = c.isNull() | (F.length(c) == F.octet_length(c))
    return F.when(plain, c).otherwise(F.call_function("java_method", F.lit("com.ibm.icu.text.Normalizer"),
                                                        F.lit("compose"), c, F.lit(False)))


def content_hash() -> Column:
    """A deterministic id from what the event says (user, item, type, time, value): the same event delivered
    twice without an id gets the same id, so dedupe treats it as one."""
    parts = [F.col(T.USER_ID), F.col(T.ITEM_ID), F.col(T.EVENT_TYPE),
             F.unix_micros(T.TS).cast("string"), F.coalesce(F.col(T.VALUE).cast("string"), F.lit(""))]
    return F.substring(F.sha2(F.concat_ws("\u001f", *parts), 256), 1, 32)


def in_window(etl: EtlConf) -> Column:
    """Not before etl.valid_from, not later than the event's ingest time + etl.max_future_minutes."""
    earliest = int(etl.valid_from.timestamp() * 1_000_000)
    ts = F.unix_micros(T.TS)
    return (ts >= earliest) & (ts <= F.unix_micros(T.INGESTED_AT) + etl.max_future_minutes * 60_000_000)


def flag_bots(df: DataFrame, etl: EtlConf, among: str | None = None, drop_agent: bool = False) -> DataFrame:
    """Adds `_bot`: the user agent matches a bot pattern, or the user sent more than
    etl.bot_max_events_per_minute events within some 60 s (a sliding window ending at each of their events,
    so a burst straddling a minute boundary counts whole). With `among` (a boolean column), only those rows
    count towards the rate (the others get a `_bot` that means nothing). `drop_agent`: the user agent is
    matched, then dropped, before the windows shuffle the rows."""
    by_agent = F.lit(False)
    for pattern in etl.bot_user_agent_patterns:
        by_agent = by_agent | F.coalesce(F.col(T.USER_AGENT).rlike(pattern), F.lit(False))
    df = df.withColumn("_agent_bot", by_agent)
    if drop_agent:
        df = df.drop(T.USER_AGENT)
    counts = F.col(among) if among else F.lit(True)
    last_minute = (Window.partitionBy(T.USER_ID).orderBy(F.unix_micros(T.TS))
                   .rangeBetween(-(60_000_000 - 1), Window.currentRow))
    per_minute = df.withColumn("_per_minute", F.count(F.when(counts, 1)).over(last_minute))
    busiest = F.max(F.when(counts, F.col("_per_minute"))).over(Window.partitionBy(T.USER_ID))
    too_busy = F.coalesce(busiest > etl.bot_max_events_per_minute, F.lit(False))
    return per_minute.withColumn("_bot", F.col("_agent_bot") | too_busy).drop("_per_minute", "_agent_bot")

