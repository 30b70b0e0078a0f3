"""Raw events -> bronze.events (typed, stamped with lineage) + bronze.quarantine (the raw row and why).

Every raw row lands in exactly one of the two, with the first failed check as its reason (REASONS order).
"""
from __future__ import annotations

import json
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS, SourceConf
from lakerec.etl.sources import MALFORMED, is_blank, to_contract
from lakerec.lake import Lake

REQUIRED_EVENT_FIELDS = (T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS)
REASONS = (
    "malformed", "missing_user_id", "missing_item_id", "missing_event_type", "missing_ts",
    "bad_timestamp", "unknown_event_type", "bad_value",
)
SOURCE_EVENTS = "events"
SOURCE_ITEMS = "items"
# commit metadata keys: which raw files a commit took in (also for files that yielded no rows)
META_SOURCE = "lakerec.source"
META_FILES = "lakerec.source_files"
META_BATCH = "lakerec.batch_id"

BRONZE_EVENT_COLUMNS = (
    T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS, T.VALUE, T.SESSION_ID, T.USER_AGENT,
    T.BATCH_ID, T.SOURCE_FILE, T.INGESTED_AT,
)
QUARANTINE_COLUMNS = (T.SOURCE, T.RAW, T.REASON, T.SOURCE_FILE, T.BATCH_ID, T.INGESTED_AT)

_EPOCH_MILLIS_FROM = 10**11  # 1e11 s is the year 5138; as milliseconds it is 1973
_EPOCH_MILLIS_UNTIL = 10**15  # beyond this (year 33658 in ms) Spark's microseconds would overflow
_ISO = (r"^\d{4}-\d{2}-\d{2}"                    # date
        r"([T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?"     # optional time with optional fraction
        r"(Z|[+-]\d{2}(:?\d{2})?)?)?$")           # optional zone, only after a time


def parse_ts(c: Column) -> Column:
    """A raw timestamp text -> UTC timestamp, or null when it cannot be read.

    The rule, whatever the session time zone:
    - all digits: epoch; >= 1e11 means milliseconds, else seconds (more than 15 digits: unreadable);
    - otherwise ISO-8601: `yyyy-MM-dd`, optionally `T` or space and `HH:mm:ss[.fraction]`, optionally a zone
      `Z`, `+hh`, `+hhmm` or `+hh:mm`; no zone means UTC, a date alone means its midnight UTC.
    Anything else (words, impossible dates such as month 13) is null: the caller's `bad_timestamp`.
    """
    text = F.trim(c)
    n = F.when(text.rlike(r"^[0-9]{1,15}$"), text.try_cast("long"))
    epoch = (F.when(n < _EPOCH_MILLIS_FROM, F.timestamp_seconds(n))
             .when(n < _EPOCH_MILLIS_UNTIL, F.timestamp_millis(n)))
    has_time, zone = F.regexp_extract(text, _ISO, 1), F.regexp_extract(text, _ISO, 3)
    # an explicit Z makes the cast independent of spark.sql.session.timeZone
    utc_text = (F.when(has_time == "", F.concat(text, F.lit("T00:00:00Z")))
                .when(zone == "", F.concat(text, F.lit("Z")))
                .otherwise(text))
    iso = F.when(text.rlike(_ISO), utc_text.try_cast("timestamp"))
    return F.when(text.rlike(r"^[0-9]+$"), epoch).otherwise(iso)


def parse_value(c: Column) -> Column:
    """A raw value -> finite double, null when blank or not a finite number."""
    v = F.trim(c).try_cast("double")
    return F.when(~is_blank(c) & ~F.isnan(v) & (F.abs(v) != float("inf")), v)


def validate_events(raw: DataFrame, source: SourceConf, event_types: list[str]) -> DataFrame:
    """Contract fields from a `read_source` frame, plus `ts` and `value` typed and `reason` (null: valid).

    Event types are compared trimmed and lower-cased (silver normalises them the same way).
    """
    df = to_contract(raw, source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS)
    df = df.withColumn("_ts", parse_ts(F.col(T.TS))).withColumn("_value", parse_value(F.col(T.VALUE)))
    known = [t.strip().lower() for t in event_types]
    reason = (
        F.when(F.col(MALFORMED), "malformed")
        .when(is_blank(F.col(T.USER_ID)), "missing_user_id")
        .when(is_blank(F.col(T.ITEM_ID)), "missing_item_id")
        .when(is_blank(F.col(T.EVENT_TYPE)), "missing_event_type")
        .when(is_blank(F.col(T.TS)), "missing_ts")
        .when(F.col("_ts").isNull(), "bad_timestamp")
        .when(~F.lower(F.trim(T.EVENT_TYPE)).isin(known), "unknown_event_type")
        .when(~is_blank(F.col(T.VALUE)) & F.col("_value").isNull(), "bad_value")
    )
    return df.withColumn(T.REASON, reason)


def bronze_events(validated: DataFrame, batch_id: str, ingested_at: datetime) -> DataFrame:
    """The valid rows in bronze.events' shape: values as they came (silver normalises), ts/value typed."""
    return validated.where(F.col(T.REASON).isNull()).select(
        T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE,
        F.col("_ts").alias(T.TS), F.col("_value").alias(T.VALUE),
        T.SESSION_ID, T.USER_AGENT, *_lineage(batch_id, ingested_at),
    )


def quarantine_rows(validated: DataFrame, source: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """The invalid rows in bronze.quarantine's shape: the raw row as it arrived and the reason."""
    rows = validated.where(F.col(T.REASON).isNotNull()).select(
        F.lit(source).alias(T.SOURCE), T.RAW, T.REASON, *_lineage(batch_id, ingested_at)
    )
    return rows.select(*QUARANTINE_COLUMNS)


def account(rows_read: int, validated: DataFrame, what: str) -> tuple[int, dict[str, int]]:
    """(valid rows, quarantined rows by reason) in one pass; raises unless they add up to the rows read."""
    counts = {r[T.REASON]: r["count"] for r in validated.groupBy(T.REASON).count().collect()}
    valid = counts.pop(None, 0)
    if rows_read != valid + sum(counts.values()):
        raise RuntimeError(f"{what} lost rows: read {rows_read} != valid {valid} + quarantined {sum(counts.values())}")
    return valid, counts


def ingested_files(lake: Lake, table: str, source: str | None = None) -> set[str]:
    """The raw files a table already took in: its rows' source_file, plus the files its commits list in their
    metadata (which also covers files that yielded no row for it). The rows survive log clean-up, the metadata
    covers empty contributions: together they make a rerun skip what is done, table by table.
    `source` limits both to one source (bronze.quarantine holds events and items).
    """
    if not lake.exists(table):
        return set()
    df = lake.read(table)
    if source is not None:
        df = df.where(F.col(T.SOURCE) == source)
    files = {r[0] for r in df.select(T.SOURCE_FILE).distinct().collect()}
    for commit in lake.history(table):
        meta = commit["metadata"]
        if META_FILES in meta and (source is None or meta.get(META_SOURCE) == source):
            files.update(json.loads(meta[META_FILES]))
    return files


def commit_metadata(source: str, batch_id: str, files: list[str]) -> dict[str, str]:
    """What an ingest commit records: the batch and the exact raw files it covered."""
    return {META_SOURCE: source, META_BATCH: batch_id, META_FILES: json.dumps(sorted(files))}


def _lineage(batch_id: str, ingested_at: datetime) -> list[Column]:
    return [
        F.lit(batch_id).alias(T.BATCH_ID),
        F.col(T.SOURCE_FILE),
        F.lit(ingested_at).cast("timestamp").alias(T.INGESTED_AT),
    ]
