"""The timestamp rule: epoch seconds / milliseconds by size, ISO-8601 with offsets, no offset means UTC."""
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from lakerec.etl.ingest import parse_ts, parse_value

UTC = timezone.utc
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
    "0": datetime(1970, 1, 1, tzinfo=UTC),
    "garbage": None,
    "2026-13-45T99:00:00Z": None,                                         # shaped like ISO, impossible
    "11/02/2026 10:00": None,
    "2026-11-01T10:00Z": None,                                            # seconds are required
    "1" * 16: None,                                                       # too many digits to be a time
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
    want = {k: None if v is None else round(v.timestamp() * 1_000_000) for k, v in CASES.items()}
    assert got == want


def test_parse_value_keeps_finite_numbers_only(spark):
    raw = ["4", " 3.5 ", "1e3", "abc", "NaN", "Infinity", "", None]
    df = spark.createDataFrame([(v,) for v in raw], "v string")
    got = [r[0] for r in df.select(parse_value(F.col("v"))).collect()]
    assert got == [4.0, 3.5, 1000.0, None, None, None, None, None]
