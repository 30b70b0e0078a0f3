"""Whole files: a damaged file is rejected alone, Parquet files of differing types ingest together, lines too long
to read are quarantined with a prefix, bytes that are not UTF-8 are quarantined (not rewritten) and stay
readable by plain pyarrow/pandas."""
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

import jobs.ingest
from lakerec import tables as T
from lakerec.etl import reasons as R
from lakerec.etl.rawfiles import BadInputFiles
from lakerec.lake import Lake
from tests.conftest import CONF_DIR, REPO
from tests.etl.conftest import etl_cfg, run_job
from tests.lake.readers import check_readable, plain_read


def _event(i, **kw):
    return {"event_id": f"e{i}", "user_id": f"u{i}", "item_id": f"i{i}", "event_type": "view",
            "ts": 1762000000 + 60 * i, **kw}


def _lines(records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _truncated_gzip(records) -> bytes:
    whole = gzip.compress(_lines(records))
    return whole[: len(whole) // 2]


def test_a_truncated_gzip_is_rejected_alone_and_its_good_copy_lands_next_run(tmp_path, spark):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_bytes(_lines([_event(1), _event(2)]))
    day_b = [_event(i) for i in range(10, 400)]
    (drops / "b.jsonl.gz").write_bytes(_truncated_gzip(day_b))
    (drops / "c.jsonl.gz").write_bytes(b"this is no gzip at all")  # unreadable bytes
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    result = run_job(jobs.ingest, cfg, spark)
    m = result.metrics
    assert (m["files_new"], m["files_rejected"], m["rows_read"], m["rows_bronze"]) == (1, 2, 2, 2)
    assert len(result.attention) == 2 and all("\n" not in line for line in result.attention)
    lake = Lake(cfg.lake.root, spark)
    rejected = {_name(r.source_file): r for r in lake.read(T.BRONZE_REJECTED_FILES).collect()}
    assert set(rejected) == {"b.jsonl.gz", "c.jsonl.gz"}
    assert rejected["b.jsonl.gz"].file_size == (drops / "b.jsonl.gz").stat().st_size
    assert rejected["b.jsonl.gz"].error_class == "java.io.EOFException"
    assert "end of input stream" in rejected["b.jsonl.gz"].reason
    assert all(r.reason and "\n" not in r.reason and r.batch_id for r in rejected.values())
    # the same damaged files again: reported again, recorded once
    again = run_job(jobs.ingest, cfg, spark)
    assert again.metrics["files_rejected"] == 2 and lake.read(T.BRONZE_REJECTED_FILES).count() == 2
    counts = check_readable(lake, [T.BRONZE_REJECTED_FILES])  # deltalake agrees with Spark, in and out of process
    assert plain_read(lake, [T.BRONZE_REJECTED_FILES]) == {T.BRONZE_REJECTED_FILES: [2, 2]} and counts == {
        T.BRONZE_REJECTED_FILES: 2}
    # a good copy replaces b: the next run takes it in (it was never marked as ingested)
    (drops / "b.jsonl.gz").write_bytes(gzip.compress(_lines(day_b)))
    (drops / "c.jsonl.gz").unlink()
    fixed = run_job(jobs.ingest, cfg, spark)
    assert (fixed.metrics["files_new"], fixed.metrics["files_rejected"], fixed.metrics["rows_bronze"]) == (1, 0, 390)
    assert lake.read(T.BRONZE_EVENTS).count() == 392 and not fixed.attention


def test_an_empty_gzip_beside_a_good_file_is_rejected_not_a_crash(tmp_path, spark):
    """Found by the 500-drop fuzz: a 0-byte .jsonl.gz made the long-line search raise a bare EOFException."""
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_bytes(_lines([_event(1), _event(2)]))
    (drops / "f0.jsonl.gz").write_bytes(b"")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    result = run_job(jobs.ingest, cfg, spark)
    assert (result.metrics["files_rejected"], result.metrics["rows_bronze"]) == (1, 2)
    rejected = Lake(cfg.lake.root, spark).read(T.BRONZE_REJECTED_FILES).collect()
    assert [_name(r.source_file) for r in rejected] == ["f0.jsonl.gz"] and rejected[0].file_size == 0


def _parquet(path, columns: dict, schema=None):
    pq.write_table(pa.table(columns, schema=schema), path)


def test_damaged_parquet_files_are_rejected_alone(tmp_path, spark):
    drops = tmp_path / "drops"
    drops.mkdir()
    n = 3000
    good = {"user_id": [f"u{i}" for i in range(n)], "item_id": [f"i{i % 7}" for i in range(n)],
            "event_type": ["view"] * n, "ts": [1762000000 + i for i in range(n)]}
    _parquet(drops / "a.parquet", good)
    whole = (drops / "a.parquet").read_bytes()
    (drops / "footer.parquet").write_bytes(whole[:-30])                  # a broken footer
    pages = bytearray(whole)
    for i in range(100, 3000):                                           # broken pages, a sound footer
        pages[i] ^= 0x5A
    (drops / "pages.parquet").write_bytes(bytes(pages))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "input.events.format=parquet")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["files_new"], m["files_rejected"], m["rows_read"], m["rows_bronze"]) == (1, 2, n, n)
    lake = Lake(cfg.lake.root, spark)
    rejected = {_name(r.source_file): r.error_class for r in lake.read(T.BRONZE_REJECTED_FILES).collect()}
    assert set(rejected) == {"footer.parquet", "pages.parquet"}
    assert {_name(r[0]) for r in lake.read(T.BRONZE_EVENTS).select(T.SOURCE_FILE).distinct().collect()} == {"a.parquet"}


def test_on_bad_file_fail_commits_nothing(tmp_path, spark):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_bytes(_lines([_event(1)]))
    (drops / "b.jsonl.gz").write_bytes(_truncated_gzip([_event(i) for i in range(300)]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "input.on_bad_file=fail")
    with pytest.raises(BadInputFiles, match=r"b\.jsonl\.gz .*EOFException"):
        run_job(jobs.ingest, cfg, spark)
    lake = Lake(cfg.lake.root, spark)
    assert not any(lake.exists(t) for t in (T.BRONZE_EVENTS, T.BRONZE_QUARANTINE, T.BRONZE_REJECTED_FILES))


def _ingest_command(cfg, *overrides):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{REPO}"}
    args = [sys.executable, "-m", "jobs.ingest", "--profile", "test", "--conf-dir", str(CONF_DIR),
            "--set", f"lake.root={cfg.lake.root}", "--set", f"input.events.path={cfg.input.events.path}",
            *(x for o in overrides for x in ("--set", o))]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_command_names_a_rejected_file_in_one_line_and_exits_3(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_bytes(_lines([_event(1)]))
    (drops / "b.jsonl.gz").write_bytes(_truncated_gzip([_event(i) for i in range(300)]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    failed = _ingest_command(cfg, "input.on_bad_file=fail")
    assert failed.returncode == 1 and "BadInputFiles" in failed.stderr
    done = _ingest_command(cfg)
    assert done.returncode == 3, done.stderr[-3000:]
    for out in (failed, done):  # the error in one line; no Java stack trace anywhere
        assert "\tat org.apache" not in out.stderr + out.stdout and "Py4JJavaError" not in out.stderr
    named = [line for line in done.stderr.splitlines() if line.startswith("[ingest] rejected ")]
    assert len(named) == 1 and "b.jsonl.gz" in named[0] and "EOFException" in named[0]
    assert "files_rejected=1" in done.stdout


def test_parquet_files_whose_types_differ_ingest_together(tmp_path, spark):
    """int64 ids beside string ids, a timestamp-typed ts beside epoch numbers and strings, extra nested columns."""
    drops = tmp_path / "drops"
    drops.mkdir()
    _parquet(drops / "a.parquet", {"user_id": ["u1"], "item_id": ["i1"], "event_type": ["view"], "ts": ["2026-11-01T10:00:00Z"]})
    _parquet(drops / "b.parquet", {"user_id": pa.array([100, 7], pa.int64()), "item_id": pa.array([5, 6], pa.int32()),
                                   "event_type": ["click", "view"], "ts": pa.array([1762000000, 1762000060], pa.int64()),
                                   "extra": [{"a": [1]}, {"a": []}]})
    _parquet(drops / "c.parquet", {"user_id": ["u3"], "item_id": ["i3"], "event_type": ["cart"],
                                   "ts": pa.array([1762003600_000_000], pa.timestamp("us", tz="UTC")),
                                   "value": pa.array([2.5], pa.float32())})
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "input.events.format=parquet")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["files_new"], m["files_rejected"], m["rows_read"], m["rows_bronze"]) == (3, 0, 4, 4)
    bronze = Lake(cfg.lake.root, spark).read(T.BRONZE_EVENTS)
    got = {tuple(r) for r in bronze.select(T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, F.unix_seconds(T.TS), T.VALUE).collect()}
    assert got == {("u1", "i1", "view", 1793527200, None), ("100", "5", "click", 1762000000, None),
                   ("7", "6", "view", 1762000060, None), ("u3", "i3", "cart", 1762003600, 2.5)}


def _quarantine_files(lake_root) -> pa.Table:
    """bronze.quarantine read by plain pyarrow (its data files), as a downstream reader without Spark would."""
    folder = lake_root / "bronze" / "quarantine"
    files = [p for p in folder.rglob("*.parquet")]
    return pa.concat_tables([pq.read_table(p) for p in files])


def test_bytes_that_are_not_utf8_are_quarantined_not_rewritten(tmp_path, spark):
    latin1 = b'{"user_id": "Jos\xe9", "item_id": "i1", "event_type": "view", "ts": 1762000000}'
    lone = b'{"user_id": "u\\ud800x", "item_id": "i1", "event_type": "view", "ts": 1762000000}'
    pair = b'{"user_id": "u\\ud83d\\ude00", "item_id": "i1", "event_type": "view", "ts": 1762000000}'  # an emoji
    escaped = b'{"user_id": "u\\\\ud800", "item_id": "i1", "event_type": "view", "ts": 1762000000}'  # text "\ud800"
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_bytes(_lines([latin1, lone, pair, escaped]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.bad_encoding"]) == (4, 2, 2)
    lake = Lake(cfg.lake.root, spark)
    assert sorted(r.user_id for r in lake.read(T.BRONZE_EVENTS).collect()) == ["u\\ud800", "u\U0001F600"]
    table = _quarantine_files(tmp_path / "lake").to_pandas()  # would raise on invalid UTF-8
    by_line = {r.source_line: r for r in table.itertuples()}
    assert set(by_line) == {1, 2}
    assert by_line[1].raw == latin1.decode("utf-8", "replace") and by_line[1].raw_bytes == latin1
    assert by_line[1].raw_length == len(latin1)
    assert by_line[2].raw == lone.decode() and by_line[2].raw_bytes is None  # the text is exact: no bytes needed


def test_csv_bytes_that_are_not_utf8_are_quarantined(tmp_path, spark):
    path = tmp_path / "a.csv"
    path.write_bytes(b"user_id,item_id,event_type,ts\nJos\xe9,i1,view,1762000000\nu2,i2,view,1762000000\r\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=csv",
                  "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.bad_encoding"]) == (2, 1, 1)
    q = Lake(cfg.lake.root, spark).read(T.BRONZE_QUARANTINE).first()
    assert (q.source_line, bytes(q.raw_bytes)) == (2, b"Jos\xe9,i1,view,1762000000")


def _numbered(lake, table):
    return {(_name(r.source_file), r.source_line): r for r in lake.read(table).collect()}


@pytest.mark.parametrize("gz", [False, True])
def test_lines_longer_than_the_limit_are_quarantined_with_a_prefix(tmp_path, spark, gz):
    limit = 200
    long_ = json.dumps(_event(2, user_agent="x" * 3_000_000)).encode()  # a few MB: never read whole
    at_limit = json.dumps(_event(3, user_agent="y" * 10)).encode()
    at_limit = at_limit[:-1] + b" " * (limit - len(at_limit)) + b"}"       # exactly `limit` bytes: kept
    over = at_limit[:-1] + b" }"                                           # one byte more: too long
    records = [_event(1), long_, at_limit, over, _event(5), b"", long_ + b"\r", _event(8)]
    data = _lines(records) + b"x" * (limit + 1)                              # a last line over, without \n
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / ("a.jsonl.gz" if gz else "a.jsonl")).write_bytes(gzip.compress(data) if gz else data)
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", f"input.max_line_bytes={limit}",
                  "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.line_too_long"], m["quarantined.malformed"]) == (9, 4, 4, 1)
    lake = Lake(cfg.lake.root, spark)
    name = "a.jsonl.gz" if gz else "a.jsonl"
    assert {k: r.event_id for k, r in _numbered(lake, T.BRONZE_EVENTS).items()} == {
        (name, 1): "e1", (name, 3): "e3", (name, 5): "e5", (name, 8): "e8"}
    q = _numbered(lake, T.BRONZE_QUARANTINE)
    assert {k[1]: r.reason for k, r in q.items()} == {2: R.LINE_TOO_LONG, 4: R.LINE_TOO_LONG, 6: R.MALFORMED,
                                                       7: R.LINE_TOO_LONG, 9: R.LINE_TOO_LONG}
    assert (q[(name, 2)].raw_length, q[(name, 7)].raw_length, q[(name, 4)].raw_length) == (
        len(long_), len(long_) + 1, limit + 1)
    assert bytes(q[(name, 2)].raw_bytes) == long_[:1024] and q[(name, 2)].raw == long_[:1024].decode()


@pytest.mark.slow
def test_a_100_mb_line_completes_with_the_default_limit(tmp_path, spark):
    path = tmp_path / "big.jsonl"
    head, tail = b'{"user_id": "u2", "blob": "', b'"}'
    with open(path, "wb") as f:
        f.write(_lines([_event(1)]))
        f.write(head + b"z" * (100 * 1024 * 1024) + tail + b"\n")
        f.write(_lines([_event(3)]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.line_too_long"]) == (3, 2, 1)
    q = Lake(cfg.lake.root, spark).read(T.BRONZE_QUARANTINE).first()
    assert (q.source_line, q.raw_length, len(q.raw_bytes)) == (2, len(head) + 100 * 1024 * 1024 + len(tail), 1024)
