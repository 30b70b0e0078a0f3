"""Ingest: every raw row lands in bronze or quarantine with a reason; reruns add nothing; formats and mapping."""
import gzip
import json

import pytest
from pyspark.sql import functions as F

import jobs.ingest
from lakerec import tables as T
from lakerec.config import ConfigError
from lakerec.etl import reasons as R
from lakerec.etl.ingest import BRONZE_EVENT_COLUMNS, QUARANTINE_COLUMNS, REASONS
from lakerec.lake import Lake
from tests.etl.conftest import etl_cfg, run_job


def test_demo_lines_are_all_accounted_for_with_every_reason(demo_lake):
    made, got = demo_lake.results["generate"].metrics, demo_lake.results["ingest"].metrics
    assert got["rows_read"] == made["lines"]
    assert got["rows_read"] == got["rows_bronze"] + got["rows_quarantined"]
    # the demo's dirt kinds are the reasons, except its two kinds of impossible time
    # the demo is JSON Lines of UTF-8 text and short lines: no field count, no encoding or length problem
    not_in_demo = (R.WRONG_FIELD_COUNT, R.BAD_ENCODING, R.LINE_TOO_LONG)
    jsonl_reasons = [r for r in REASONS if r not in not_in_demo]
    expected = {reason: made.get(f"dirt.{reason}", 0) for reason in jsonl_reasons}
    expected[R.IMPOSSIBLE_TIMESTAMP] = made["dirt.too_old"] + made["dirt.future"]
    assert all(got[f"quarantined.{reason}"] == 0 for reason in not_in_demo)
    for reason in jsonl_reasons:
        assert got[f"quarantined.{reason}"] == expected[reason] >= 1, reason
    kept_dirt = ("duplicate", "retry", "bot")  # valid rows: silver drops them
    assert got["rows_bronze"] == made["clean_events"] + sum(made[f"dirt.{k}"] for k in kept_dirt)
    q = demo_lake.lake.read(T.BRONZE_QUARANTINE).where(F.col(T.SOURCE) == "events")
    by_reason = {r[T.REASON]: r["count"] for r in q.groupBy(T.REASON).count().collect()}
    assert by_reason == expected
    truncated = [r[T.RAW] for r in q.where(F.col(T.REASON) == "malformed").collect()]
    assert all(raw.startswith('{"event_id"') and not raw.endswith("}") for raw in truncated)


def test_bronze_schema(demo_lake):
    bronze = demo_lake.lake.read(T.BRONZE_EVENTS)
    assert tuple(bronze.columns) == BRONZE_EVENT_COLUMNS
    types = dict(bronze.dtypes)
    assert (types[T.TS], types[T.VALUE], types[T.INGESTED_AT]) == ("timestamp", "double", "timestamp")
    assert tuple(demo_lake.lake.read(T.BRONZE_QUARANTINE).columns) == QUARANTINE_COLUMNS
    assert bronze.where(F.col(T.SOURCE_FILE).endswith(".jsonl")).count() == bronze.count()


def test_rerun_adds_nothing(demo_lake, spark):
    before = {t: demo_lake.lake.version(t) for t in (T.BRONZE_EVENTS, T.BRONZE_QUARANTINE)}
    result = run_job(jobs.ingest, demo_lake.cfg, spark)
    assert result.skipped and "already ingested" in result.skipped
    assert result.metrics["rows_read"] == 0 and result.metrics["files_new"] == 0
    assert {t: demo_lake.lake.version(t) for t in before} == before


def _jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def _event(i, **kw):
    return {"event_id": f"e{i}", "user_id": "u1", "item_id": f"i{i}", "event_type": "view",
            "ts": 1762000000 + 60 * i, **kw}


def test_only_new_files_are_ingested(tmp_path, spark):
    raw = tmp_path / "drops"
    _jsonl(raw / "day1.jsonl", [_event(1), _event(2), '{"broken'])
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={raw}")
    first = run_job(jobs.ingest, cfg, spark)
    assert (first.metrics["rows_bronze"], first.metrics["rows_quarantined"]) == (2, 1)
    _jsonl(raw / "day2.jsonl", [_event(3)])
    second = run_job(jobs.ingest, cfg, spark)
    assert (second.metrics["files_new"], second.metrics["files_skipped"], second.metrics["rows_read"]) == (1, 1, 1)
    lake = Lake(cfg.lake.root, spark)
    assert sorted(r[0] for r in lake.read(T.BRONZE_EVENTS).select(T.EVENT_ID).collect()) == ["e1", "e2", "e3"]


def test_a_crash_between_the_two_commits_is_completed_by_the_rerun(tmp_path, spark, monkeypatch):
    raw = tmp_path / "drops"
    _jsonl(raw / "day1.jsonl", [_event(1), _event(2, ts="never"), _event(3)])
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={raw}")
    crashing = Lake(cfg.lake.root, spark)
    real_write = crashing.write

    def write(table, df, **kw):
        if table == T.BRONZE_EVENTS:
            raise RuntimeError("driver lost")  # after the quarantine commit, before the events commit
        return real_write(table, df, **kw)

    monkeypatch.setattr(crashing, "write", write)
    with pytest.raises(RuntimeError, match="driver lost"):
        run_job(jobs.ingest, cfg, spark, crashing)
    lake = Lake(cfg.lake.root, spark)
    assert lake.read(T.BRONZE_QUARANTINE).count() == 1 and not lake.exists(T.BRONZE_EVENTS)
    rerun = run_job(jobs.ingest, cfg, spark)
    assert (rerun.metrics["rows_bronze"], rerun.metrics["rows_quarantined"]) == (2, 1)
    assert lake.read(T.BRONZE_QUARANTINE).count() == 1  # not written twice
    assert lake.read(T.BRONZE_EVENTS).count() == 2


def test_csv_gzip_with_mapping_and_constants(tmp_path, spark):
    path = tmp_path / "drops" / "clicks.csv.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("uid;product;when;amount\n"
                "u1;p1;2026-11-01T10:00:00+01:00;2.5\n"
                'u2;"p;2";1762000000000;\n'        # a quoted delimiter; epoch milliseconds
                "u3;p3;soon;1\n"                     # bad_timestamp
                ";p4;1762000000;1\n"                 # missing_user_id
                "u5;p5;1762000000;x\n"               # wrong_type
                "u6;p6;1762000000\n"                 # a field short: wrong_field_count
                "u7;p7;1762000000;1;extra\n")       # a field too many: wrong_field_count
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=csv",
                  "input.events.delimiter=';'", "input.events.mapping={user_id: uid, item_id: product, ts: when, "
                  "value: amount}", "input.events.constants={event_type: click}")
    result = run_job(jobs.ingest, cfg, spark)
    m = result.metrics
    assert (m["rows_read"], m["rows_bronze"], m["rows_quarantined"]) == (7, 2, 5)
    assert (m["quarantined.bad_timestamp"], m["quarantined.missing_user_id"], m["quarantined.wrong_type"],
            m["quarantined.wrong_field_count"], m["quarantined.malformed"]) == (1, 1, 1, 2, 0)
    rows = Lake(cfg.lake.root, spark).read(T.BRONZE_EVENTS).orderBy(T.USER_ID).collect()
    assert [(r.user_id, r.item_id, r.event_type, r.value) for r in rows] == [("u1", "p1", "click", 2.5),
                                                                            ("u2", "p;2", "click", None)]
    assert rows[0].ts.isoformat() == "2026-11-01T09:00:00" and rows[1].event_id is None
    quarantined = Lake(cfg.lake.root, spark).read(T.BRONZE_QUARANTINE)
    short = quarantined.where(F.col(T.REASON) == "wrong_field_count").orderBy(T.SOURCE_LINE).collect()
    assert [r.raw for r in short] == ["u6;p6;1762000000", "u7;p7;1762000000;1;extra"]  # the lines as read


def test_tsv_without_header_names_columns_in_config(tmp_path, spark):
    path = tmp_path / "ratings.tsv"
    path.write_text("1\t10\t4\t881250949\n2\t20\t5\t891717742\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=tsv",
                  "input.events.header=false", "input.events.columns=[user_id, item_id, rating, timestamp]",
                  "input.events.mapping={ts: timestamp, value: rating}", "input.events.constants={event_type: rating}")
    assert run_job(jobs.ingest, cfg, spark).metrics["rows_bronze"] == 2
    row = Lake(cfg.lake.root, spark).read(T.BRONZE_EVENTS).orderBy(T.USER_ID).first()
    assert (row.user_id, row.item_id, row.event_type, row.value) == ("1", "10", "rating", 4.0)


def test_parquet_input_with_typed_columns(tmp_path, spark):
    folder = tmp_path / "drops"
    spark.createDataFrame([(1, 7, "purchase", 1762000000, 9.5), (2, None, "view", 1762000060, None)],
                          "user long, item int, type string, epoch long, price double") \
        .coalesce(1).write.parquet(str(folder))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={folder}", "input.events.format=parquet",
                  "input.events.mapping={user_id: user, item_id: item, event_type: type, ts: epoch, value: price}")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_bronze"], m["quarantined.missing_item_id"]) == (1, 1)
    q = Lake(cfg.lake.root, spark).read(T.BRONZE_QUARANTINE).first()
    assert json.loads(q.raw) == {"user": 2, "type": "view", "epoch": 1762000060}  # the row as it was, as JSON


def test_a_mapping_to_a_column_the_input_lacks_is_a_config_error(tmp_path, spark):
    path = tmp_path / "e.csv"
    path.write_text("uid,item_id,event_type,ts\nu1,i1,view,1762000000\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=csv",
                  "input.events.mapping={user_id: user}")
    with pytest.raises(ConfigError, match="user_id is read from column 'user'"):
        run_job(jobs.ingest, cfg, spark)


def test_missing_input_path_is_named(tmp_path, spark):
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_job(jobs.ingest, cfg, spark)


def test_each_reason_on_jsonl(tmp_path, spark):
    ok = {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2026-11-01T10:00:00Z"}
    cases = [
        (ok, None),
        ({**ok, "event_id": ""}, None),                            # an empty optional id counts as absent
        ({**ok, "user_id": 42, "value": "4.5"}, None),             # a number id is read as its text
        ('{"user_id": "u1", "item_id": ', R.MALFORMED),
        ("[1, 2]", R.MALFORMED),
        ({k: v for k, v in ok.items() if k != "item_id"}, R.MISSING_ITEM_ID),
        ({**ok, "user_id": None}, R.MISSING_USER_ID),
        ({**ok, "event_type": " "}, R.MISSING_EVENT_TYPE),
        ({**ok, "ts": ""}, R.MISSING_TS),
        ({**ok, "user_id": {"id": 1}}, R.WRONG_TYPE),
        ({**ok, "item_id": ["i1"]}, R.WRONG_TYPE),
        ({**ok, "value": "12,5 EUR"}, R.WRONG_TYPE),
        ({**ok, "item_id": "\t \u2003"}, R.EMPTY_ID),
        ({**ok, "item_id": "i" * 21}, R.ID_TOO_LONG),
        ({**ok, "event_id": "e" * 21}, R.ID_TOO_LONG),
        ({**ok, "ts": "1st of May"}, R.BAD_TIMESTAMP),
        ({**ok, "ts": "1990-06-01T12:00:00Z"}, R.IMPOSSIBLE_TIMESTAMP),       # before etl.valid_from
        ({**ok, "ts": 4102444800000}, R.IMPOSSIBLE_TIMESTAMP),               # 2100, in milliseconds
        ({**ok, "event_type": "hover"}, R.UNKNOWN_EVENT_TYPE),
    ]
    _jsonl(tmp_path / "drops" / "a.jsonl", [c for c, _ in cases])
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={tmp_path / 'drops'}", "input.events.max_id_length=20")
    m = run_job(jobs.ingest, cfg, spark).metrics
    lake = Lake(cfg.lake.root, spark)
    got = {r.source_line: r.reason for r in lake.read(T.BRONZE_QUARANTINE).collect()}
    got |= {r.source_line: None for r in lake.read(T.BRONZE_EVENTS).collect()}
    assert got == {line: reason for line, (_, reason) in enumerate(cases, 1)}
    assert (m["rows_read"], m["rows_bronze"], m[f"quarantined.{R.IMPOSSIBLE_TIMESTAMP}"]) == (len(cases), 3, 2)
    assert lake.read(T.BRONZE_QUARANTINE).where(F.col(T.SOURCE_LINE) == 4).first().raw == cases[3][0]


def test_a_json_line_must_hold_exactly_one_object(tmp_path, spark):
    """Jackson stops after the first value: glued objects or trailing text must not keep the first and drop the rest."""
    ok = json.dumps(_event(1))
    lines = [
        ok,
        ok + json.dumps(_event(2)),          # two glued objects: the second must not vanish
        ok + " trailing garbage",
        "{}{}",
        "{}\x01\x02binary",
        ok + "],[" + json.dumps(_event(3)),  # text that closes a wrapping array early
        ok + ",0],[x",
        ok + ", " + json.dumps(_event(4)),   # two values, comma-separated
        " " + json.dumps(_event(5)) + " \t",  # surrounding whitespace is fine
        '{"user_id": "u1", "nested": {"a": [1, {"b": "}{"}]}, "item_id": "i6", "event_type": "view", '
        '"ts": 1762000000}',                # braces inside strings and nesting are fine
        '{"user_id": "u1", "item_id": "i7", "event_type": "view", "ts": 1762000000, "x": {"y": 1}',  # one } only,
    ]                                       # and it closes the inner object: the line is unfinished
    raw = tmp_path / "drops" / "glued.jsonl"
    raw.parent.mkdir()
    raw.write_text("\n".join(lines) + "\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={raw}", "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.malformed"]) == (11, 3, 8)
    lake = Lake(cfg.lake.root, spark)
    assert sorted(r.source_line for r in lake.read(T.BRONZE_EVENTS).collect()) == [1, 9, 10]
    q = {r.source_line: (r.reason, r.raw) for r in lake.read(T.BRONZE_QUARANTINE).collect()}
    assert q == {line: (R.MALFORMED, lines[line - 1]) for line in [*range(2, 9), 11]}  # the raw text kept as read


def test_source_event_types_named_in_the_type_map_reach_silver_mapped(tmp_path, spark):
    """Ingest lets a mapped source type through (silver maps it); a type in neither list is quarantined."""
    import jobs.silver

    raw = tmp_path / "drops"
    _jsonl(raw / "day1.jsonl", [_event(1, event_type="PageView"), _event(2, event_type="teleport"), _event(3)])
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={raw}", "etl.event_type_map={pageview: view}",
                  "etl.gates.max_quarantine_share=1.0")  # one bad row of three would trip the default gate
    ingested = run_job(jobs.ingest, cfg, spark)
    assert (ingested.metrics["rows_bronze"], ingested.metrics["rows_quarantined"]) == (2, 1)
    lake = Lake(cfg.lake.root, spark)
    assert lake.read(T.BRONZE_QUARANTINE).first()[T.REASON] == R.UNKNOWN_EVENT_TYPE
    run_job(jobs.silver, cfg, spark)
    assert sorted(r[0] for r in lake.read(T.SILVER_EVENTS).select(T.EVENT_TYPE).collect()) == ["view", "view"]


def test_csv_columns_are_read_by_each_files_own_header(tmp_path, spark):
    """Two files of one drop order their columns differently: every bronze field in its place, no header as data."""
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.csv").write_text("event_id,user_id,item_id,event_type,ts\n"
                                 "ea1,alice,book1,view,1762000000\n")
    (drops / "b.csv").write_text("\ufeffevent_id,item_id,user_id,event_type,ts\n"   # a BOM before the header
                                 "eb1,book2,bob,click,1762000060\n"
                                 "eb2,book3,bob,view\n")                             # a field short
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "input.events.format=csv",
                  "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    lake = Lake(cfg.lake.root, spark)
    bronze = lake.read(T.BRONZE_EVENTS).collect()
    rows = {r.event_id: (r.user_id, r.item_id, r.event_type, r.source_line) for r in bronze}
    assert rows == {"ea1": ("alice", "book1", "view", 2), "eb1": ("bob", "book2", "click", 2)}
    assert (m["rows_read"], m["rows_bronze"], m["rows_quarantined"], m["quarantined.wrong_field_count"]) == (3, 2, 1, 1)
    q = lake.read(T.BRONZE_QUARANTINE).collect()
    assert [(r.raw, r.source_line) for r in q] == [("eb2,book3,bob,view", 3)]


def test_a_csv_file_lacking_a_required_column_is_rejected_whole(tmp_path, spark):
    """Not read by position, not marked as ingested: a file whose header has no user_id is rejected as a whole,
    the other file lands, and a corrected copy is taken in by the next run."""
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.csv").write_text("user_id,item_id,event_type,ts\nu1,i1,view,1762000000\n")
    (drops / "b.csv").write_text("uid,item_id,event_type,ts\nu2,i2,view,1762000000\nu3,i3,view,1762000060\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}", "input.events.format=csv")
    result = run_job(jobs.ingest, cfg, spark)
    m = result.metrics
    assert (m["files_new"], m["files_rejected"], m["rows_read"], m["rows_bronze"], m["rows_quarantined"]) == (1, 1, 1, 1, 0)
    assert len(result.attention) == 1 and "b.csv" in result.attention[0] and "['user_id']" in result.attention[0]
    lake = Lake(cfg.lake.root, spark)
    rejected = lake.read(T.BRONZE_REJECTED_FILES).collect()
    assert [(r.source_file.rsplit("/", 1)[-1], r.error_class) for r in rejected] == [("b.csv", "missing_column")]
    assert not lake.exists(T.BRONZE_QUARANTINE) or lake.read(T.BRONZE_QUARANTINE).count() == 0
    (drops / "b.csv").write_text("user_id,item_id,event_type,ts\nu2,i2,view,1762000000\nu3,i3,view,1762000060\n")
    again = run_job(jobs.ingest, cfg, spark)
    assert (again.metrics["files_new"], again.metrics["files_rejected"], again.metrics["rows_bronze"]) == (1, 0, 2)
    assert sorted(r.user_id for r in lake.read(T.BRONZE_EVENTS).collect()) == ["u1", "u2", "u3"]


def test_rfc4180_quoted_fields_with_delimiters_quotes_and_line_breaks_are_one_record(tmp_path, spark):
    path = tmp_path / "a.csv"
    path.write_bytes(
        b"event_id,user_id,item_id,event_type,ts,user_agent\n"
        b'e1,u1,"a, b",view,1762000000,"Mozilla ""quoted"""\n'               # line 2
        b'e2,u2,"title with\nline break\r\nand another",view,1762000060,x\n'  # lines 3-5: one record
        b"e3,u3,i3,view,1762000120,x\n"                                       # line 6
        b'e4,u4,"never closed,view,1762000180,x\n'                            # line 7: a quote that never closes
        b"e5,u5,i5,view,1762000240,x\n")                                      # line 8
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=csv",
                  "etl.gates.max_quarantine_share=1.0")
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["quarantined.wrong_field_count"]) == (5, 4, 1)
    lake = Lake(cfg.lake.root, spark)
    rows = {r.event_id: (r.source_line, r.item_id, r.user_agent) for r in lake.read(T.BRONZE_EVENTS).collect()}
    assert rows == {"e1": (2, "a, b", 'Mozilla "quoted"'), "e2": (3, "title with\nline break\nand another", "x"),
                    "e3": (6, "i3", "x"), "e5": (8, "i5", "x")}
    assert [(r.source_line, r.reason) for r in lake.read(T.BRONZE_QUARANTINE).collect()] == [(7, R.WRONG_FIELD_COUNT)]
