"""Batches: source lines and batch ids on every row, reruns add nothing, a killed run recovers on rerun."""
import gzip
import json
import os
import signal
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

import jobs.ingest
from lakerec import tables as T
from lakerec.lake import Lake
from tests.conftest import CONF_DIR, REPO
from tests.etl.conftest import etl_cfg, run_job


def _event(i, **kw):
    return {"event_id": f"e{i}", "user_id": "u1", "item_id": f"i{i}", "event_type": "view",
            "ts": 1762000000 + 60 * i, **kw}


def _lines(records):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _by_line(lake, table):
    return {(r[T.SOURCE_FILE].rsplit("/", 1)[-1], r[T.SOURCE_LINE]): r for r in lake.read(table).collect()}


def test_every_row_carries_its_file_line_and_batch(tmp_path, spark):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_text(_lines([_event(1), "", _event(2, ts="never"), '{"cut', _event(3)]))
    with gzip.open(drops / "b.jsonl.gz", "wt") as f:
        f.write(_lines([_event(4, user_id=None), _event(5)]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    run_job(jobs.ingest, cfg, spark)
    lake = Lake(cfg.lake.root, spark)
    bronze, quarantine = _by_line(lake, T.BRONZE_EVENTS), _by_line(lake, T.BRONZE_QUARANTINE)
    assert {k: r.event_id for k, r in bronze.items()} == {("a.jsonl", 1): "e1", ("a.jsonl", 5): "e3",
                                                          ("b.jsonl.gz", 2): "e5"}
    assert {k: r.reason for k, r in quarantine.items()} == {
        ("a.jsonl", 2): "malformed", ("a.jsonl", 3): "bad_timestamp", ("a.jsonl", 4): "malformed",
        ("b.jsonl.gz", 1): "missing_user_id"}
    assert quarantine[("a.jsonl", 4)].raw == '{"cut'
    batches = {r.batch_id for r in [*bronze.values(), *quarantine.values()]}
    assert len(batches) == 1 and all(r.ingested_at is not None for r in bronze.values())


def test_line_numbers_survive_file_splits_and_headers(tmp_path, spark):
    """A plain file bigger than a split is read by several tasks: numbering must carry over between them."""
    path = tmp_path / "big.csv"
    n = 30_000
    path.write_text("user_id,item_id,event_type,ts\n"
                    + "".join(f"u{i},i{i},view,{1762000000 + i}\n" for i in range(n)))
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64k")  # about 16 splits
    try:
        cfg = etl_cfg(tmp_path / "lake", f"input.events.path={path}", "input.events.format=csv")
        assert run_job(jobs.ingest, cfg, spark).metrics["rows_bronze"] == n
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    bronze = Lake(cfg.lake.root, spark).read(T.BRONZE_EVENTS)
    wrong = bronze.where(F.col(T.SOURCE_LINE) != F.expr("int(substring(user_id, 2)) + 2"))  # header is line 1
    assert wrong.count() == 0
    assert bronze.select(F.countDistinct(T.SOURCE_LINE)).first()[0] == n


def test_parquet_rows_are_numbered_from_one(tmp_path, spark):
    folder = tmp_path / "drops"
    spark.createDataFrame([(f"u{i}", "i1", "view", 1762000000 + i) for i in range(5)],
                          "user_id string, item_id string, event_type string, ts long") \
        .coalesce(1).write.parquet(str(folder))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={folder}", "input.events.format=parquet")
    run_job(jobs.ingest, cfg, spark)
    rows = Lake(cfg.lake.root, spark).read(T.BRONZE_EVENTS).collect()
    assert sorted((r.user_id, r.source_line) for r in rows) == [(f"u{i}", i + 1) for i in range(5)]


def test_the_batch_id_is_a_hash_of_the_files_and_the_counts_are_in_the_commit(tmp_path, spark):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.jsonl").write_text(_lines([_event(1), _event(2, event_type="hover")]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    run_job(jobs.ingest, cfg, spark)
    lake = Lake(cfg.lake.root, spark)
    first = {r.batch_id for r in lake.read(T.BRONZE_EVENTS).collect()}
    # the same file again, in a fresh lake: the same batch id
    other = etl_cfg(tmp_path / "lake2", f"input.events.path={drops}")
    run_job(jobs.ingest, other, spark)
    assert {r.batch_id for r in Lake(other.lake.root, spark).read(T.BRONZE_EVENTS).collect()} == first
    meta = lake.history(T.BRONZE_EVENTS)[0]["metadata"]
    counts = json.loads(meta["lakerec.counts"])
    assert (meta["lakerec.batch_id"], counts["rows_read"], counts["rows_bronze"],
            counts["quarantined.unknown_event_type"]) == (first.pop(), 2, 1, 1)


def _ingest_process(cfg, kill_at):
    # this tree's lib first: the venv's editable install may point at another checkout
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{REPO}"}
    args = [sys.executable, "-m", "jobs.ingest", "--profile", "test", "--conf-dir", str(CONF_DIR),
            "--set", f"lake.root={cfg.lake.root}", "--set", f"input.events.path={cfg.input.events.path}",
            *(["--set", f"drill.kill_at={kill_at}"] if kill_at else [])]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["before_commit", "between_commits"])
def test_a_killed_run_leaves_the_tables_and_the_rerun_completes_it(tmp_path, spark, kill_at):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "day1.jsonl").write_text(_lines([_event(1), _event(2, ts="never")]))
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={drops}")
    run_job(jobs.ingest, cfg, spark)
    lake = Lake(cfg.lake.root, spark)
    versions = {t: lake.version(t) for t in (T.BRONZE_EVENTS, T.BRONZE_QUARANTINE)}
    (drops / "day2.jsonl").write_text(_lines([_event(3), _event(4, user_id=""), _event(5)]))

    killed = _ingest_process(cfg, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    after_kill = {t: lake.version(t) for t in versions}
    if kill_at == "before_commit":
        assert after_kill == versions
    else:  # the quarantine commit went through, the events commit did not
        assert after_kill == {T.BRONZE_EVENTS: versions[T.BRONZE_EVENTS],
                              T.BRONZE_QUARANTINE: versions[T.BRONZE_QUARANTINE] + 1}

    rerun = run_job(jobs.ingest, cfg, spark)
    assert (rerun.metrics["files_new"], rerun.metrics["rows_bronze"], rerun.metrics["rows_quarantined"]) == (1, 2, 1)
    assert lake.version(T.BRONZE_QUARANTINE) == versions[T.BRONZE_QUARANTINE] + 1  # written once either way
    bronze, quarantine = lake.read(T.BRONZE_EVENTS), lake.read(T.BRONZE_QUARANTINE)
    assert sorted(r.event_id for r in bronze.collect()) == ["e1", "e3", "e5"]
    assert sorted(r.reason for r in quarantine.collect()) == ["bad_timestamp", "empty_id"]
    day2 = [r.batch_id for r in [*bronze.collect(), *quarantine.collect()] if r.source_file.endswith("day2.jsonl")]
    assert len(day2) == 3 and len(set(day2)) == 1  # the rerun kept the killed run's batch id

    again = run_job(jobs.ingest, cfg, spark)
    assert again.skipped and again.metrics["rows_read"] == 0
