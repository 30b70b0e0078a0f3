"""Raw events -> bronze.events (typed, stamped with lineage) + bronze.quarantine (the raw row and why).

Every raw row lands in exactly one of the two, with the first failed check as its reason (`lakerec.etl.reasons`).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS, Config, EtlConf, SourceConf
from lakerec.etl import reasons as R
from lakerec.etl.rawfiles import FileScan, LongLine, count_lines, quiet_task_errors, unreadable_file
from lakerec.etl.sources import (
    LENGTH, MALFORMED, REC, add_source_lines, fenced, is_blank, read_source, to_contract, wanted_columns,
)
from lakerec.lake import Lake

REQUIRED_EVENT_FIELDS = (T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS)
REASONS = R.QUARANTINE_REASONS  # of event rows (an events file lacking a column is rejected whole, not its rows)
SOURCE_EVENTS = "events"
SOURCE_ITEMS = "items"
# commit metadata keys: which raw files a commit took in (also for files that yielded no rows), and its counts
META_SOURCE = "lakerec.source"
META_FILES = "lakerec.source_files"
META_BATCH = "lakerec.batch_id"
META_COUNTS = "lakerec.counts"

BRONZE_EVENT_COLUMNS = (
    T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS, T.VALUE, T.SESSION_ID, T.USER_AGENT,
    T.BATCH_ID, T.SOURCE_FILE, T.SOURCE_LINE, T.INGESTED_AT,
)
QUARANTINE_COLUMNS = (T.SOURCE, T.RAW, T.RAW_BYTES, T.RAW_LENGTH, T.REASON, T.SOURCE_FILE, T.SOURCE_LINE, T.BATCH_ID,
                      T.INGESTED_AT)
# the validated rows' columns that bronze and quarantine read (with `raw`, kept for the invalid rows)
CACHED_COLUMNS = (T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, "_ts", "_value", T.SESSION_ID, T.USER_AGENT,
                  T.SOURCE_FILE, T.SOURCE_LINE, T.REASON, LENGTH)
ID_FIELDS = (T.USER_ID, T.ITEM_ID, T.EVENT_ID, T.SESSION_ID)  # what input.events.max_id_length limits

# Epoch units by magnitude: each bound is the year 5138 in its unit, so any time before then reads in one unit
# only (1e11 seconds; 1e14 milliseconds; 1e17 microseconds); 18 digits or more is unreadable.
EPOCH_MILLIS_FROM = 10**11
EPOCH_MICROS_FROM = 10**14
EPOCH_MICROS_UNTIL = 10**17
_EPOCH_FRACTION = r"^[0-9]{1,11}\.[0-9]{1,9}$"   # epoch seconds with a fraction (below 1e11)
_ISO = (r"^\d{4}-\d{2}-\d{2}"                    # date
        r"([T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?"     # optional time with optional fraction
        r"(Z|[+-]\d{2}(:?\d{2})?)?)?$")           # optional zone, only after a time (matched upper-cased)


def parse_ts(c: Column, timezone: str = "UTC") -> Column:
    """A raw timestamp text -> UTC timestamp, or null when it cannot be read.

    The rule, whatever the session time zone:
    - all digits: epoch; < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds (more digits: unreadable);
    - digits, a point and up to 9 digits: epoch seconds with a fraction (below 1e11; kept to the microsecond);
    - otherwise ISO-8601 / RFC 3339: `yyyy-MM-dd`, optionally `T` (or `t`, or a space) and
      `HH:mm:ss[.fraction]`, optionally a zone `Z` (or `z`), `+hh`, `+hhmm` or `+hh:mm`. Without a zone the time is local to `timezone` (a date alone: its
      midnight there). Across DST (java.time's rule): a time in the spring-forward gap moves forward by the
      gap (02:30 in a 02:00-03:00 gap is 03:30), an ambiguous fall-back time takes the first reading (the
      earlier instant, still on summer time).
    Anything else (words, impossible dates such as month 13) is null: the caller's `bad_timestamp`.
    """
    text = F.upper(F.trim(c))  # RFC 3339 allows t and z; nothing else readable has letters
    n = F.when(text.rlike(r"^[0-9]{1,17}$"), text.try_cast("long"))
    epoch = (F.when(n < EPOCH_MILLIS_FROM, F.timestamp_seconds(n))
             .when(n < EPOCH_MICROS_FROM, F.timestamp_millis(n))
             .when(n < EPOCH_MICROS_UNTIL, F.timestamp_micros(n)))
    # exact decimal arithmetic: a float would blur the milliseconds of today's epoch seconds
    fraction = F.timestamp_micros((text.try_cast("decimal(20,6)") * 1_000_000).cast("long"))
    has_time, zone = F.regexp_extract(text, _ISO, 1), F.regexp_extract(text, _ISO, 3)
    # read as UTC first (an explicit Z makes the cast independent of spark.sql.session.timeZone) ...
    utc_text = (F.when(has_time == "", F.concat(text, F.lit("T00:00:00Z")))
                .when(zone == "", F.concat(text, F.lit("Z")))
                .otherwise(text))
    iso = utc_text.try_cast("timestamp")
    if timezone != "UTC":
        # ... then a naive time is shifted from its local zone: to_utc_timestamp applies the DST rule above
        iso = F.when(zone == "", F.to_utc_timestamp(iso, timezone)).otherwise(iso)
    return F.when(text.rlike(r"^[0-9]+$"), epoch).when(text.rlike(_EPOCH_FRACTION), fraction).when(text.rlike(_ISO), iso)


def parse_value(c: Column) -> Column:
    """A raw value -> finite double, null when blank or not a finite number."""
    v = F.trim(c).try_cast("double")
    return F.when(~is_blank(c) & ~F.isnan(v) & (F.abs(v) != float("inf")), v)


def validate_events(raw: DataFrame, source: SourceConf, etl: EtlConf, ingested_at: datetime) -> DataFrame:
    """Contract fields from a `read_source` frame, plus `ts` and `value` typed and `reason` (null: valid), the
    first failed check in `reasons.QUARANTINE_REASONS` order.

    Event types are compared trimmed and lower-cased (silver normalises them the same way). In JSON and
    Parquet, a field holding an object or array is `wrong_type` (from_json hands its JSON text over as the
    string); so is a value that is not a finite number. Empty optional ids (event_id, session_id) count as absent.
    """
    df = to_contract(raw, source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS)
    df = df.withColumn("_ts", parse_ts(F.col(T.TS), source.timezone)).withColumn("_value", parse_value(F.col(T.VALUE)))
    known = [t.strip().lower() for t in etl.accepted_event_types]
    structured = source.format in ("jsonl", "parquet")
    earliest = F.lit(etl.valid_from)  # an aware datetime: the same instant in any session zone
    latest = F.lit(ingested_at + timedelta(minutes=etl.max_future_minutes)).cast("timestamp")
    reason = F.when(F.col(MALFORMED).isNotNull(), F.col(MALFORMED))
    for field in (T.USER_ID, T.ITEM_ID):
        reason = reason.when(F.col(field).isNull(), R.MISSING[field])
    for field in (T.EVENT_TYPE, T.TS):
        reason = reason.when(is_blank(F.col(field)), R.MISSING[field])
    if structured:
        nested = [F.trim(F.col(f)).rlike(r"^[\[{]") for f in (*ID_FIELDS, T.EVENT_TYPE, T.TS)]
        reason = reason.when(reduce(lambda a, b: a | b, nested), R.WRONG_TYPE)
    reason = (
        reason.when(~is_blank(F.col(T.VALUE)) & F.col("_value").isNull(), R.WRONG_TYPE)
        .when(is_blank(F.col(T.USER_ID)) | is_blank(F.col(T.ITEM_ID)), R.EMPTY_ID)
        .when(reduce(lambda a, b: a | b, [F.length(F.col(f)) > source.max_id_length for f in ID_FIELDS]),
              R.ID_TOO_LONG)
        .when(F.col("_ts").isNull(), R.BAD_TIMESTAMP)
        .when((F.col("_ts") < earliest) | (F.col("_ts") > latest), R.IMPOSSIBLE_TIMESTAMP)
        .when(~F.lower(F.trim(T.EVENT_TYPE)).isin(known), R.UNKNOWN_EVENT_TYPE)
    )
    return fenced(df.withColumn(T.REASON, reason))  # filters on reason must not re-parse every row


def read_validated(spark: SparkSession, scan: FileScan, cfg: Config, required: list[str], ingested_at: datetime
                   ) -> tuple[DataFrame | None, dict[str, int]]:
    """(the validated rows of the scan's readable files, numbered and cached, raw kept for bad rows only;
    quarantined rows by reason), or (None, {}) when no file is readable. A file the parse cannot read (a Parquet
    file with broken pages: its footer read fine) is rejected and the parse runs again without it."""
    source = cfg.input.events
    with quiet_task_errors(spark):
        while scan.files:
            raw = read_source(spark, scan.files, source, wanted_columns(source, CONTRACT_EVENT_FIELDS), required,
                              scan, cfg.input.max_line_bytes)
            validated = validate_events(raw, source, cfg.etl, ingested_at).drop(REC)
            numbered = cached_rows(add_source_lines(validated)).persist()  # read_source numbered the lines
            try:
                return numbered, count_by_reason(numbered)[2]
            except Exception as e:  # noqa: BLE001 - only an unreadable file is handled; anything else re-raised
                numbered.unpersist()
                bad = unreadable_file(spark, e, scan.files)
                if bad is None:
                    raise
                scan.reject(bad)
                if source.format != "parquet":  # line numbers depend on the set of files read: count again
                    count_lines(spark, scan, source, cfg.input.max_line_bytes)
    return None, {}


def cached_rows(validated: DataFrame) -> DataFrame:
    """What bronze and quarantine read, the raw text only where quarantine needs it (the row is invalid): a cache of
    the validated rows then holds about what bronze holds, not every line twice, nor the source's text of the
    typed fields or the reader's bookkeeping (building the cache costs by the column: 10% at 10M events)."""
    return validated.select(*CACHED_COLUMNS, F.when(F.col(T.REASON).isNotNull(), F.col(T.RAW)).alias(T.RAW))


def bronze_events(validated: DataFrame, batch_id: str, ingested_at: datetime) -> DataFrame:
    """The valid rows in bronze.events' shape: values as they came (silver normalises), ts/value typed."""
    return validated.where(F.col(T.REASON).isNull()).select(
        T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE,
        F.col("_ts").alias(T.TS), F.col("_value").alias(T.VALUE),
        T.SESSION_ID, T.USER_AGENT, *_lineage(batch_id, ingested_at),
    )


def quarantine_rows(validated: DataFrame, source: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """The invalid rows in bronze.quarantine's shape: the raw row as it arrived and the reason.

    `raw` is always valid UTF-8, so every reader (pandas through pyarrow too) can load it: bytes that are not
    UTF-8 become U+FFFD there, and then `raw_bytes` holds the row's original bytes (null otherwise)."""
    raw = F.col(T.RAW)
    rows = validated.where(F.col(T.REASON).isNotNull()).select(
        F.lit(source).alias(T.SOURCE), F.make_valid_utf8(raw).alias(T.RAW),
        F.when(~F.is_valid_utf8(raw), raw.cast("binary")).alias(T.RAW_BYTES),
        F.coalesce(F.col(LENGTH), F.octet_length(raw)).cast("long").alias(T.RAW_LENGTH),
        T.REASON, *_lineage(batch_id, ingested_at),
    )
    return rows.select(*QUARANTINE_COLUMNS)


def long_line_rows(spark: SparkSession, lines: list[LongLine], source: str, batch_id: str, ingested_at: datetime
                   ) -> DataFrame:
    """bronze.quarantine rows for lines too long to read: `raw` their prefix (as valid UTF-8), `raw_bytes` the
    prefix's bytes, `raw_length` the whole line's."""
    rows = [(ln.prefix.decode("utf-8", "replace"), ln.prefix, ln.length, ln.file, ln.line) for ln in lines]
    df = spark.createDataFrame(rows, f"{T.RAW} string, {T.RAW_BYTES} binary, {T.RAW_LENGTH} long, "
                                     f"{T.SOURCE_FILE} string, {T.SOURCE_LINE} long")
    return df.select(F.lit(source).alias(T.SOURCE), T.RAW, T.RAW_BYTES, T.RAW_LENGTH,
                     F.lit(R.LINE_TOO_LONG).alias(T.REASON), *_lineage(batch_id, ingested_at)).select(*QUARANTINE_COLUMNS)


def count_by_reason(validated: DataFrame) -> tuple[int, int, dict[str, int]]:
    """(rows, valid rows, quarantined rows by reason) of a validated frame, in one pass."""
    counts = {r[T.REASON]: r["count"] for r in validated.groupBy(T.REASON).count().collect()}
    valid = counts.pop(None, 0)
    return valid + sum(counts.values()), valid, counts


def check_accounting(what: str, rows_read: int, landed: dict[str, int]) -> None:
    """Raise unless the rows that landed in the tables (table -> rows) add up to the rows read."""
    if rows_read != sum(landed.values()):
        parts = " + ".join(f"{table} {n}" for table, n in landed.items())
        raise RuntimeError(f"{what} lost or doubled rows: read {rows_read} != {parts}")


def rows_of_files(lake: Lake, table: str, files: list[str], source: str | None = None) -> int:
    """How many rows of `table` came from `files` (and `source`): what a batch left there, reruns included."""
    df = lake.read(table).where(F.col(T.SOURCE_FILE).isin(files))
    if source is not None:
        df = df.where(F.col(T.SOURCE) == source)
    return df.count()


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


def commit_metadata(source: str, batch_id: str, files: list[str], counts: dict[str, int] | None = None
                    ) -> dict[str, str]:
    """What an ingest commit records: the batch, the exact raw files it covered and its row counts."""
    meta = {META_SOURCE: source, META_BATCH: batch_id, META_FILES: json.dumps(sorted(files))}
    if counts is not None:
        meta[META_COUNTS] = json.dumps(counts, sort_keys=True)
    return meta


def _lineage(batch_id: str, ingested_at: datetime) -> list[Column]:
    return [
        F.lit(batch_id).alias(T.BATCH_ID),
        F.col(T.SOURCE_FILE),
        F.col(T.SOURCE_LINE),
        F.lit(ingested_at).cast("timestamp").alias(T.INGESTED_AT),
    ]
