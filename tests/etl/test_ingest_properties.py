"""Property tests of the raw parser: whatever bytes arrive, nothing crashes, every line (every csv record) ends in
bronze or quarantine exactly once, and every bronze row's fields are what the file says.

Each example is a drop of many generated files read in one go (Spark per file would be slow): hostile lines in
JSON Lines (arbitrary bytes, cut lines, glued objects, huge and empty lines, wrong types, deep nesting, Latin-1
and lone surrogates) and CSV (quotes, delimiters and line breaks in fields, short and long rows, garbage).
The fast tier reads a few hundred files, the slow tier 2,000 of each format.
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
from lakerec.etl.ingest import REASONS, REQUIRED_EVENT_FIELDS, validate_events
from lakerec.etl.rawfiles import scan_files
from lakerec.etl.sources import list_input_files, read_source, required_columns, wanted_columns
from tests.etl.conftest import etl_cfg

FIELDS = ("event_id", "user_id", "item_id", "event_type", "ts", "value", "user_agent")
FILES_PER_DROP = 25
MAX_LINE_BYTES = 2048
hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['"', "'", "\\", ",", "\n", "\r\n", "\t", "\u2028", "\ufeff", "💥", "null", "[1]", "{}", " ",
                     "\ud800", "a\udfffb"]),
    st.text(alphabet="ab\"\n,{}[]", min_size=250, max_size=400),  # beyond max_id_length
)
json_value = st.one_of(
    hostile_text, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=30),  # deep nesting
    st.integers(min_value=0, max_value=10**18).map(str),
    st.sampled_from(["2026-11-01T10:00:00Z", "2026-11-01t10:00:00z", "1762000000.25", "1762000000", 1762000000123,
                     "view", "click", "u1", "i1"]),
)
event = st.fixed_dictionaries({}, optional={f: json_value for f in FIELDS})
valid_event = st.fixed_dictionaries({"user_id": st.sampled_from(["u1", "José", "用户", "u\U0001F600"]),
                                     "item_id": st.text(min_size=1, max_size=8).filter(str.strip),
                                     "event_type": st.sampled_from(["view", "click"]),
                                     "ts": st.integers(1_700_000_000, 1_762_000_000)})
# Unicode's White_Space, what Java's (?U)\s (and so `is_blank`) matches; Python's str.strip() takes more
WHITESPACE = " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000"


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


def _dumps(value, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate in a generated string becomes its UTF-8-like bytes (invalid UTF-8)
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def jsonl_file(draw):
    """(bytes, {line: the record a valid line must reproduce})."""
    lines, records = [], {}
    for kind in draw(st.lists(st.sampled_from(["event", "valid", "cut", "bytes", "blank", "glued", "latin1", "huge"]),
                              min_size=1, max_size=12)):
        if kind == "bytes":
            lines.append(draw(st.binary(max_size=60)).replace(b"\n", b""))
        elif kind == "blank":
            lines.append(draw(st.sampled_from([b"", b" ", b"\t", b"\r"])))
        elif kind == "huge":
            lines.append(b'{"user_id": "' + b"h" * draw(st.integers(MAX_LINE_BYTES - 20, 3 * MAX_LINE_BYTES)) + b'"}')
        else:
            record = draw(valid_event if kind in ("valid", "glued", "latin1") else event)
            line = _dumps(record, draw(st.booleans()))
            if kind == "cut":
                line = line[: draw(st.integers(0, len(line) - 1))]
            elif kind == "glued":
                line += _dumps(draw(valid_event), False)
            elif kind == "latin1":
                line = line.replace(b'"user_id": "', b'"user_id": "\xe9', 1)
            elif kind == "valid" or kind == "event":
                records[len(lines) + 1] = record
            lines.append(line)
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"])), records


@st.composite
def csv_file(draw):
    """(bytes, {first line of a record: the record a valid row must reproduce}); columns in a random order."""
    columns = draw(st.permutations(FIELDS))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    records, line = {}, 2
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            row = {c: draw(hostile_text) for c in columns}
            row["ts"], row["event_type"] = "1762000000", draw(st.sampled_from(["view", "click"]))
            records[line] = row
            values = [row[c] for c in columns]
        else:
            values = [draw(hostile_text) for _ in range(draw(st.integers(1, len(FIELDS) + 2)))]
        before = out.tell()
        writer.writerow(values)
        line += out.getvalue()[before:].count("\n")
    body = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # garbage after the records: counted, never confused with them
        body += draw(st.binary(max_size=40).filter(lambda b: b'"' not in b))
    return body, records


def _ingest(spark, folder, cfg):
    """What the ingest job does before it writes: the scan, and (file, source_line, reason, fields) per row."""
    source = cfg.input.events
    required = required_columns(source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS)
    files = list_input_files(spark, str(folder))
    scan = scan_files(spark, files, source, required, cfg.input.max_line_bytes)
    raw = read_source(spark, scan.files, source, wanted_columns(source, CONTRACT_EVENT_FIELDS), required, scan,
                      cfg.input.max_line_bytes)
    validated = validate_events(raw, source, cfg.etl, datetime.now(timezone.utc))
    rows = validated.select(T.SOURCE_FILE, T.SOURCE_LINE, T.REASON, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, "_ts").collect()
    return scan, rows


def _check(scan, rows, drop: dict[str, tuple[bytes, dict]], first_line: int, line_rule, normalised=lambda v: v):
    assert not scan.rejected  # every file of these drops is readable, whatever its lines hold
    by_file = {}
    for r in rows:
        by_file.setdefault(r[T.SOURCE_FILE].rsplit("/", 1)[-1], []).append(r)
    long_lines = {f.rsplit("/", 1)[-1]: [ln.line for ln in v] for f, v in scan.long_lines.items()}
    for name, (data, records) in drop.items():
        got = by_file.get(name, [])
        numbered = sorted([r[T.SOURCE_LINE] for r in got] + long_lines.get(name, []))
        assert numbered == line_rule(data, first_line), name   # every line / record exactly once
        for r in got:
            assert r[T.REASON] is None or r[T.REASON] in REASONS
            if r[T.REASON] is None:
                assert r[T.USER_ID].strip(WHITESPACE) and r["_ts"] is not None
                source = records.get(r[T.SOURCE_LINE])
                assert source is not None, (name, r)             # no bronze row the input does not contain
                for f in (T.USER_ID, T.ITEM_ID, T.EVENT_TYPE):  # read by name, as written
                    want = normalised(source[f]) if isinstance(source[f], str) else json.dumps(source[f])
                    assert r[f] == want, (name, f, r[f], want)


def _jsonl_lines(data: bytes, first: int) -> list[int]:
    """Lines end at \\n: the numbers of every line the file holds."""
    n = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return list(range(first, n + 1))


def _csv_records(data: bytes, first: int) -> list[int]:
    """The first line of every record (RFC 4180 as documented): a line with an odd number of quotes opens a
    quoted field the next such line closes, the lines between belong to the record; an opening that nothing
    closes (a stray quote) joins nothing."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    odd = [n for n, line in enumerate(lines, 1) if line.count(b'"') % 2]
    inside = {n for opening, closing in zip(odd[::2], odd[1::2]) for n in range(opening + 1, closing + 1)}
    return [n for n in range(first, len(lines) + 1) if n not in inside]


def _run(spark, tmp_path_factory, files, fmt):
    folder = tmp_path_factory.mktemp(fmt)
    drops = folder / "drops"
    drops.mkdir()
    drop = {}
    for i, (data, records) in enumerate(files):
        name = f"f{i:03d}.{fmt}"
        (drops / name).write_bytes(data)
        drop[name] = (data, records)
    overrides = [f"input.max_line_bytes={MAX_LINE_BYTES}"] + (["input.events.format=csv"] if fmt == "csv" else [])
    scan, rows = _ingest(spark, drops, etl_cfg(folder / "lake", *overrides))
    if fmt == "csv":
        # a line break inside a quoted field reads as \n (the documented normalisation)
        _check(scan, rows, drop, 2, _csv_records, lambda v: v.replace("\r\n", "\n"))  # line 1: the header
    else:
        _check(scan, rows, drop, 1, _jsonl_lines)


@pytest.mark.slow
@_settings(8)
@given(files=st.lists(jsonl_file(), min_size=FILES_PER_DROP, max_size=FILES_PER_DROP))
def test_jsonl_every_line_is_accounted_for(spark, tmp_path_factory, files):
    _run(spark, tmp_path_factory, files, "jsonl")


@pytest.mark.slow
@_settings(8)
@given(files=st.lists(csv_file(), min_size=FILES_PER_DROP, max_size=FILES_PER_DROP))
def test_csv_every_record_is_accounted_for(spark, tmp_path_factory, files):
    _run(spark, tmp_path_factory, files, "csv")


@pytest.mark.slow
@_settings(80)
@given(files=st.lists(jsonl_file(), min_size=FILES_PER_DROP, max_size=FILES_PER_DROP))
def test_jsonl_2000_files(spark, tmp_path_factory, files):
    _run(spark, tmp_path_factory, files, "jsonl")


@pytest.mark.slow
@_settings(80)
@given(files=st.lists(csv_file(), min_size=FILES_PER_DROP, max_size=FILES_PER_DROP))
def test_csv_2000_files(spark, tmp_path_factory, files):
    _run(spark, tmp_path_factory, files, "csv")
