"""File-level fuzzing: drops of a few files, some damaged (truncated, bytes flipped), CSV columns permuted across
the files of a drop, Parquet types changed between files. For every drop: no crash; each file either rejected
with a reason or read with every row accounted for (bronze or quarantine exactly once); an undamaged file is
never rejected, and its bronze rows equal its source rows read by name.

What ingest does before it writes (scan, read, validate, with the rejection of unreadable files) runs on the
drop; the writes are tested elsewhere. A few dozen drops in the fast tier, 500 in the slow one.
"""
import csv
import gzip
import io
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS
from lakerec.etl.ingest import REASONS, REQUIRED_EVENT_FIELDS, read_validated
from lakerec.etl.rawfiles import scan_files
from lakerec.etl.sources import list_input_files, required_columns
from tests.etl.conftest import etl_cfg
from tests.etl.test_ingest_properties import _csv_records, _jsonl_lines

COLUMNS = ("event_id", "user_id", "item_id", "event_type", "ts")
FORMATS = ("jsonl", "jsonl.gz", "csv", "csv.gz", "parquet")


@st.composite
def rows(draw):
    n = draw(st.integers(1, 40))
    ids = st.one_of(st.integers(0, 10**6), st.text(alphabet="abcxyz0123 ,\"'\n", min_size=1, max_size=6))
    return [{"event_id": f"e{i}", "user_id": draw(ids), "item_id": draw(ids),
             "event_type": draw(st.sampled_from(["view", "click"])), "ts": 1762000000 + i} for i in range(n)]


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _csv(records, columns) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow([_text(r[c]) for c in columns])
    return out.getvalue().encode()


def _parquet(records, id_type: str, ts_type: str) -> bytes:
    def ids(c):
        values = [r[c] for r in records]
        if id_type == "int" and all(isinstance(v, int) for v in values):
            return pa.array(values, pa.int64())
        return pa.array([_text(v) for v in values], pa.string())

    ts = [r["ts"] for r in records]
    ts_col = {"epoch": pa.array(ts, pa.int64()),
              "text": pa.array([datetime.fromtimestamp(t, timezone.utc).isoformat() for t in ts]),
              "timestamp": pa.array([t * 1_000_000 for t in ts], pa.timestamp("us", tz="UTC"))}[ts_type]
    table = pa.table({"event_id": [r["event_id"] for r in records], "user_id": ids("user_id"),
                      "item_id": ids("item_id"), "event_type": [r["event_type"] for r in records], "ts": ts_col,
                      "extra": [{"nested": [1, 2]}] * len(records)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@st.composite
def drops(draw):
    """(format, [(name, bytes, records or None when damaged, plain text bytes for the line rule)])."""
    fmt = draw(st.sampled_from(FORMATS))
    files = []
    for i in range(draw(st.integers(1, 4))):
        records = draw(rows())
        if fmt.startswith("jsonl"):
            plain = _jsonl(records)
        elif fmt.startswith("csv"):
            plain = _csv(records, draw(st.permutations(COLUMNS)))
        else:
            plain = _parquet(records, draw(st.sampled_from(["int", "text"])),
                             draw(st.sampled_from(["epoch", "text", "timestamp"])))
        data = gzip.compress(plain) if fmt.endswith(".gz") else plain
        damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
        if damage == "truncate":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif damage == "flip":
            flipped = bytearray(data)
            for _ in range(draw(st.integers(1, 4))):
                flipped[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
            data = bytes(flipped)
        intact = data == (gzip.compress(plain) if fmt.endswith(".gz") else plain)
        # a plain text file is read whatever its bytes: its lines are known; a damaged gzip's are not
        readable_text = None if fmt == "parquet" or fmt.endswith(".gz") and not intact else (
            plain if intact else data)
        files.append((f"f{i}.{fmt}", data, records if intact else None, readable_text))
    return fmt, files


def _run(spark, tmp_path_factory, drop):
    fmt, files = drop
    folder = tmp_path_factory.mktemp("drop")
    (folder / "drops").mkdir()
    for name, data, _, _ in files:
        (folder / "drops" / name).write_bytes(data)
    base = fmt.removesuffix(".gz")
    cfg = etl_cfg(folder / "lake", f"input.events.path={folder / 'drops'}", f"input.events.format={base}")
    source = cfg.input.events
    required = required_columns(source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS)
    scan = scan_files(spark, list_input_files(spark, str(folder / "drops")), source, required, cfg.input.max_line_bytes)
    numbered, _ = read_validated(spark, scan, cfg, required, datetime.now(timezone.utc))
    got = [] if numbered is None else numbered.select(
        T.SOURCE_FILE, T.SOURCE_LINE, T.REASON, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, F.unix_seconds("_ts")).collect()
    if numbered is not None:
        numbered.unpersist()
    rejected = {r.file.rsplit("/", 1)[-1]: r for r in scan.rejected}
    by_file = {}
    for r in got:
        by_file.setdefault(r[0].rsplit("/", 1)[-1], []).append(r)
    for name, data, records, text in files:
        if name in rejected:
            assert records is None, f"an intact file was rejected: {rejected[name]}"
            assert rejected[name].reason and rejected[name].error_class and name not in by_file
            continue
        lines = sorted(r[1] for r in by_file.get(name, []))
        assert len(lines) == len(set(lines)), name                    # every row once
        assert all(r[2] is None or r[2] in REASONS for r in by_file.get(name, []))
        if text is not None:                                           # text: every line / record accounted for
            expected = _csv_records(text, 2) if base == "csv" else _jsonl_lines(text, 1)
            assert lines == expected, name
        if records is not None:
            if base == "parquet":
                assert lines == list(range(1, len(records) + 1)), name
            starts = _csv_records(text, 2) if base == "csv" else list(range(1, len(records) + 1))
            for r in by_file[name]:
                if r[2] is None:                                       # kept: every field in its place
                    source = records[starts.index(r[1])]
                    assert (r[3], r[4], r[5], r[6]) == (_text(source["user_id"]), _text(source["item_id"]),
                                                        source["event_type"], source["ts"]), (name, r)


@pytest.mark.slow
@settings(max_examples=24, deadline=None, suppress_health_check=list(HealthCheck))
@given(drop=drops())
def test_damaged_and_changing_files(spark, tmp_path_factory, drop):
    _run(spark, tmp_path_factory, drop)


# The slow tier's 500 drops as two tests of 250 with fixed seeds: a drop costs 1.5-3 s on 2 cores (one test of 500
# would pass the suite's 900 s per-test timeout), and CI reruns the same drops (a failure is reproducible).
@pytest.mark.slow
@seed(20261206)
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(drop=drops())
def test_first_250_drops(spark, tmp_path_factory, drop):
    _run(spark, tmp_path_factory, drop)


@pytest.mark.slow
@seed(20261207)
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(drop=drops())
def test_second_250_drops(spark, tmp_path_factory, drop):
    _run(spark, tmp_path_factory, drop)
