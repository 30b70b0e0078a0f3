"""The timestamp rule: epoch seconds (with a fraction) / milliseconds / microseconds by size, ISO-8601 and RFC 3339
with offsets, a time without offset local to input.events.timezone (UTC by default), DST gaps and overlaps."""
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import functions as F

from lakerec.config import ConfigError
from lakerec.etl.ingest import parse_ts, parse_value

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CASES = {
    "2026-11-01T10:00:00Z": datetime(2026, 11, 1, 10, tzinfo=UTC),
    "2026-11-01T10:00:00+02:00": datetime(2026, 11, 1, 8, tzinfo=UTC),
    "2026-11-01T10:00:00-0530": datetime(2026, 11, 1, 15, 30, tzinfo=UTC),
    "2026-11-01T10:00:00.250Z": datetime(2026, 11, 1, 10, 0, 0, 250000, tzinfo=UTC),
    "2026-11-01 10:00:00": datetime(2026, 11, 1, 10, tzinfo=UTC),         # no offset: UTC
    "2026-11-01": datetime(2026, 11, 1, tzinfo=UTC),                      # a date: its midnight UTC
    " 1762000000 ": datetime.fromtimestamp(1762000000, UTC),               # epoch seconds
    "1762000000123": datetime.fromtimestamp(1762000000.123, UTC),          # >= 1e11: milliseconds
    "99999999999": datetime.fromtimestamp(99999999999, UTC),               # just under 1e11: seconds (year 5138)
    "100000000000": datetime.fromtimestamp(100_000_000, UTC),              # 1e11: milliseconds (1973)
    "99999999999999": EPOCH + timedelta(milliseconds=99999999999999),      # just under 1e14: milliseconds
    "1762000000123456": EPOCH + timedelta(microseconds=1762000000123456),  # >= 1e14: microseconds
    "99999999999999999": EPOCH + timedelta(microseconds=99999999999999999),  # just under 1e17: microseconds
    "0": datetime(1970, 1, 1, tzinfo=UTC),
    "2026-11-01t10:00:00z": datetime(2026, 11, 1, 10, tzinfo=UTC),        # RFC 3339: t and z in lower case
    "2026-11-01t10:00:00.250+01:00": datetime(2026, 11, 1, 9, 0, 0, 250000, tzinfo=UTC),
    "1762000000.5": datetime.fromtimestamp(1762000000, UTC) + timedelta(milliseconds=500),  # seconds, a fraction
    "1762000000.123": datetime.fromtimestamp(1762000000, UTC) + timedelta(milliseconds=123),  # ms kept exactly
    "1762000000.1234567": datetime.fromtimestamp(1762000000, UTC) + timedelta(microseconds=123457),
    "100000000000.5": None,                                               # a fraction only on epoch seconds
    "1762000000.": None,
    "garbage": None,
    "2026-13-45T99:00:00Z": None,                                         # shaped like ISO, impossible
    "11/02/2026 10:00": None,
    "2026-11-01T10:00Z": None,                                            # seconds are required
    "1" * 17 + "0": None,                                                 # >= 1e17: too many digits to be a time
    "-1762000000": None,
    "": None,
}


@pytest.fixture
def new_york(spark):
    """The rule must not depend on the session time zone: run the checks in one that is not UTC."""
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    yield
    spark.conf.set("spark.sql.session.timeZone", before)


def test_parse_ts_rule(spark, new_york):
    df = spark.createDataFrame([(k,) for k in CASES], "raw string")
    got = {r.raw: r.micros for r in df.select("raw", F.unix_micros(parse_ts(F.col("raw"))).alias("micros")).collect()}
    want = {k: None if v is None else (v - EPOCH) // timedelta(microseconds=1) for k, v in CASES.items()}
    assert got == want


def test_parse_value_keeps_finite_numbers_only(spark):
    raw = ["4", " 3.5 ", "1e3", "abc", "NaN", "Infinity", "", None]
    df = spark.createDataFrame([(v,) for v in raw], "v string")
    got = [r[0] for r in df.select(parse_value(F.col("v"))).collect()]
    assert got == [4.0, 3.5, 1000.0, None, None, None, None, None]


NEW_YORK = {
    "2026-07-01T12:00:00": datetime(2026, 7, 1, 16, tzinfo=UTC),           # summer: UTC-4
    "2026-12-01 12:00:00": datetime(2026, 12, 1, 17, tzinfo=UTC),          # winter: UTC-5
    "2026-12-01": datetime(2026, 12, 1, 5, tzinfo=UTC),                    # a date: local midnight
    "2026-03-08T02:30:00": datetime(2026, 3, 8, 7, 30, tzinfo=UTC),        # in the spring-forward gap: 03:30 EDT
    "2026-11-01T01:30:00": datetime(2026, 11, 1, 5, 30, tzinfo=UTC),       # fall-back overlap: first reading (EDT)
    "2026-11-01T01:30:00-05:00": datetime(2026, 11, 1, 6, 30, tzinfo=UTC), # an offset settles it
    "2026-11-01T01:30:00Z": datetime(2026, 11, 1, 1, 30, tzinfo=UTC),      # Z is UTC whatever the zone
    "1762000000": datetime.fromtimestamp(1762000000, UTC),                 # epochs have no zone
}


@pytest.mark.parametrize("session_zone", ["UTC", "Asia/Kolkata"])
def test_naive_times_are_local_to_the_configured_zone(spark, session_zone):
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", session_zone)
    try:
        df = spark.createDataFrame([(k,) for k in NEW_YORK], "raw string")
        parsed = F.unix_micros(parse_ts(F.col("raw"), "America/New_York")).alias("micros")
        got = {r.raw: r.micros for r in df.select("raw", parsed).collect()}
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
    assert got == {k: (v - EPOCH) // timedelta(microseconds=1) for k, v in NEW_YORK.items()}


def test_an_unknown_zone_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="input.events.timezone.*Mars/Olympus"):
        make_cfg("input.events.timezone=Mars/Olympus")
