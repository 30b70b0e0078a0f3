"""Property tests: whatever bytes arrive, the parser never crashes and every line ends in bronze or quarantine.

Examples are few (each runs Spark) but hostile: arbitrary bytes, cut lines, wrong types, quotes, newlines,
unicode and huge ids, in JSON Lines and CSV.
"""
import csv
import io
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS
from lakerec.etl.ingest import REASONS, validate_events
from lakerec.etl.sources import add_source_lines, read_source, wanted_columns
from tests.etl.conftest import etl_cfg

FIELDS = ("event_id", "user_id", "item_id", "event_type", "ts", "value", "user_agent")
hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['"', "'", "\\", ",", "\n", "\r\n", "\t", "\u2028", "\ufeff", "💥", "null", "[1]", "{}", " "]),
    st.text(alphabet="ab\"\n,{}[]", min_size=250, max_size=400),  # beyond max_id_length
)
json_value = st.one_of(
    hostile_text, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(min_value=0, max_value=10**18).map(str),
    st.sampled_from(["2026-11-01T10:00:00Z", "2026-03-08T02:30:00", "1762000000", 1762000000123, "view", "click"]),
)
event = st.fixed_dictionaries({}, optional={f: json_value for f in FIELDS})
# Unicode's White_Space, what Java's (?U)\s (and so `is_blank`) matches; Python's str.strip() takes more
WHITESPACE = " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000"
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def jsonl_bytes(draw):
    lines = []
    for kind in draw(st.lists(st.sampled_from(["event", "cut", "bytes", "blank"]), min_size=1, max_size=25)):
        if kind == "bytes":
            lines.append(draw(st.binary(max_size=60)))
            continue
        line = json.dumps(draw(event), ensure_ascii=draw(st.booleans())).encode()
        lines.append(line[: draw(st.integers(0, len(line) - 1))] if kind == "cut" else b"" if kind == "blank" else line)
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


@st.composite
def csv_bytes(draw):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for _ in range(draw(st.integers(1, 20))):
        row = [draw(hostile_text) for _ in range(draw(st.integers(1, len(FIELDS) + 2)))]
        writer.writerow(row)
    body = out.getvalue().encode()
    return body + draw(st.binary(max_size=40)) if draw(st.booleans()) else body


def _ingest(spark, path, cfg):
    """What the ingest job does before it writes: (source_line, reason, user_id, ts) per row."""
    source = cfg.input.events
    raw = read_source(spark, [str(path)], source, wanted_columns(source, CONTRACT_EVENT_FIELDS))
    validated = validate_events(raw, source, cfg.etl, datetime.now(timezone.utc)).persist()
    try:
        rows = add_source_lines(validated).select(T.SOURCE_LINE, T.REASON, T.USER_ID, "_ts").collect()
    finally:
        validated.unpersist()
    return rows


def _check(rows, data: bytes, first_line: int):
    lines = len(data.splitlines())  # Hadoop's line rule: \n, \r\n or \r
    assert sorted(r[T.SOURCE_LINE] for r in rows) == list(range(first_line, lines + 1))
    for r in rows:
        assert r[T.REASON] is None or r[T.REASON] in REASONS
        if r[T.REASON] is None:
            assert r[T.USER_ID].strip(WHITESPACE) and r["_ts"] is not None


@pytest.mark.slow
@SETTINGS
@given(data=jsonl_bytes())
def test_jsonl_every_line_is_accounted_for(spark, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("jsonl")
    path = folder / "drop.jsonl"
    path.write_bytes(data)
    _check(_ingest(spark, path, etl_cfg(folder / "lake")), data, 1)


@pytest.mark.slow
@SETTINGS
@given(data=csv_bytes())
def test_csv_every_line_is_accounted_for(spark, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("csv")
    path = folder / "drop.csv"
    path.write_bytes(data)
    cfg = etl_cfg(folder / "lake", "input.events.format=csv")
    _check(_ingest(spark, path, cfg), data, 2)  # line 1 is the header
