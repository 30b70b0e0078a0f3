"""The lake layer against real Spark and real delta-rs, on a lake in tmp_path.

This machine has no Delta jars, so everything here runs the delta-rs engine; interop tests check that the
tables are plain Delta (readable by deltalake and pyarrow alone) and that Lake reads tables others wrote.
"""
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakerec.lake import Lake, LakeError, choose_engine
from lakerec.locks import try_hold
from tests.conftest import CONF_DIR, REPO

T = "silver.events"
UTC = dt.timezone.utc
SCHEMA = StructType(
    [
        StructField("user_id", LongType()),
        StructField("ts", TimestampType()),
        StructField("items", ArrayType(IntegerType())),
        StructField("tags", ArrayType(StringType())),
        StructField("weights", ArrayType(FloatType())),
        StructField("score", DoubleType()),
        StructField("dt", DateType()),
    ]
)


def row(user_id: int, day: int, hour: int = 10):
    return (
        user_id,
        dt.datetime(2026, 11, day, hour, 30, 15, 123456, tzinfo=UTC),
        [user_id, 7],
        [f"t{user_id}", None],
        [0.5, 1.25],
        user_id / 4,
        dt.date(2026, 11, day),
    )


@pytest.fixture
def lake(spark, tmp_path):
    return Lake(str(tmp_path / "lake"), spark)


@pytest.fixture
def frame(spark):
    return lambda rows: spark.createDataFrame(rows, SCHEMA)


def rows_of(df):
    return sorted(df.collect())


def test_create_append_and_time_travel_keep_types(lake, frame):
    first, second = frame([row(1, 1), row(2, 2)]), frame([row(3, 2, hour=23)])
    assert not lake.exists(T)
    assert lake.write(T, first, partition_by=["dt"]) == 0
    assert lake.write(T, second) == 1  # partitioning comes from the table
    assert lake.exists(T) and lake.version(T) == 1

    latest = lake.read(T)
    assert [(f.name, f.dataType) for f in latest.schema] == [(f.name, f.dataType) for f in SCHEMA]
    assert rows_of(latest) == rows_of(first.unionByName(second))  # timestamps to the microsecond, arrays, floats
    assert rows_of(lake.read(T, version=0)) == rows_of(first)


def test_overwrite_replaces_the_whole_table(lake, frame):
    lake.write(T, frame([row(1, 1), row(2, 2)]), partition_by=["dt"])
    assert lake.write(T, frame([row(9, 3)]), mode="overwrite") == 1
    assert [r.user_id for r in lake.read(T).collect()] == [9]
    assert lake.read(T, version=0).count() == 2


def test_replace_where_replaces_only_matching_partitions(lake, frame):
    lake.write(T, frame([row(1, 1), row(2, 2), row(3, 3), row(4, 4)]), partition_by=["dt"])
    lake.write(T, frame([row(20, 2)]), mode="overwrite", replace_where="dt = '2026-11-02'")
    assert [r.user_id for r in rows_of(lake.read(T))] == [1, 3, 4, 20]

    ranged = "dt >= '2026-11-03' AND dt <= '2026-11-04'"
    lake.write(T, frame([row(30, 3), row(31, 3)]), mode="overwrite", replace_where=ranged)
    assert [r.user_id for r in rows_of(lake.read(T))] == [1, 20, 30, 31]
    folders = {f.split("/")[-2] for f in lake.files(T)}
    assert folders == {"dt=2026-11-01", "dt=2026-11-02", "dt=2026-11-03"}  # day 4's files no longer referenced


def test_replace_where_refuses_data_outside_it_and_non_partition_columns(lake, frame):
    lake.write(T, frame([row(1, 1), row(2, 2)]), partition_by=["dt"])
    with pytest.raises(LakeError, match="outside replace_where"):
        lake.write(T, frame([row(5, 1), row(6, 2)]), mode="overwrite", replace_where="dt = '2026-11-01'")
    with pytest.raises(LakeError, match="partition columns"):
        lake.write(T, frame([row(5, 1)]), mode="overwrite", replace_where="user_id = 1")
    with pytest.raises(LakeError, match="overwrite"):
        lake.write(T, frame([row(5, 1)]), replace_where="dt = '2026-11-01'")
    assert lake.version(T) == 0
    assert [r.user_id for r in rows_of(lake.read(T))] == [1, 2]
    staged = [f for f in os.listdir(os.path.join(lake.uri(T), "_staging")) if f != "create.lock"]
    assert staged == []  # refused writes leave no staged files (nor their lock files)


def test_history_is_newest_first_with_metadata(lake, frame):
    lake.write(T, frame([row(1, 1)]), metadata={"batch_id": "b1", "source": "demo"})
    lake.write(T, frame([row(2, 1)]), metadata={"batch_id": "b2"})
    lake.write(T, frame([row(3, 1)]))
    history = lake.history(T)
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["metadata"] for h in history] == [{}, {"batch_id": "b2"}, {"batch_id": "b1", "source": "demo"}]
    assert history[0]["timestamp"] >= history[-1]["timestamp"] > 1_700_000_000_000  # epoch milliseconds
    assert all(isinstance(h["operation"], str) for h in history)


def test_reads_and_writes_record_versions(lake, frame, spark):
    other = "bronze.events"
    lake.write(T, frame([row(1, 1)]))
    lake.write(T, frame([row(2, 1)]))
    lake.write(other, frame([row(3, 1)]))
    assert lake.writes == {T: 1, other: 0}
    assert lake.reads == {}

    lake.read(T, version=0)
    lake.files(other)
    assert lake.reads == {T: 0, other: 0}
    lake.read(T)
    assert lake.reads[T] == 1  # last read wins

    fresh = Lake(lake.root, spark)  # bookkeeping belongs to the object, not the lake
    assert (fresh.reads, fresh.writes) == ({}, {})


def test_app_transaction_makes_a_repeated_batch_a_no_op(lake, frame):
    batch = frame([row(1, 1), row(2, 1)])
    assert lake.app_version(T, "ingest") is None
    assert lake.write(T, batch, app_id="ingest", app_version=0) == 0
    assert lake.app_version(T, "ingest") == 0

    repeat = Lake(lake.root, lake.spark)  # a re-run of the job
    assert repeat.write(T, batch, app_id="ingest", app_version=0) == 0
    assert repeat.writes == {}  # nothing committed
    assert lake.version(T) == 0 and lake.read(T).count() == 2

    assert lake.write(T, frame([row(3, 1)]), app_id="ingest", app_version=1) == 1
    assert lake.app_version(T, "ingest") == 1
    assert lake.app_version(T, "other-job") is None
    assert lake.read(T).count() == 3


def test_schema_mismatch_names_the_columns(lake, frame):
    lake.write(T, frame([row(1, 1)]), partition_by=["dt"])
    changed = (
        frame([row(2, 1)])
        .drop("tags")
        .withColumn("score", F.col("score").cast("string"))
        .withColumn("extra", F.lit("x"))
    )
    with pytest.raises(LakeError) as err:
        lake.write(T, changed)
    message = str(err.value)
    assert "extra" in message and "tags" in message and "score: double in the table, string in the data" in message
    assert "user_id" not in message
    with pytest.raises(LakeError, match="partitioned by"):
        lake.write(T, frame([row(2, 1)]), partition_by=["user_id"])
    assert lake.version(T) == 0


def test_empty_write_creates_a_table_with_schema_and_no_files(lake, frame):
    assert lake.write(T, frame([]), partition_by=["dt"]) == 0
    empty = lake.read(T)
    assert empty.count() == 0
    assert [(f.name, f.dataType) for f in empty.schema] == [(f.name, f.dataType) for f in SCHEMA]
    assert lake.files(T) == []
    assert lake.write(T, frame([row(1, 1)])) == 1
    assert lake.read(T).count() == 1


def test_files_are_file_uris_readable_by_plain_pyarrow(lake, frame):
    lake.write(T, frame([row(i, 1 + i % 3) for i in range(30)]), partition_by=["dt"])
    files = lake.files(T)
    assert len(files) == len(deltalake.DeltaTable(lake.uri(T)).file_uris()) >= 3
    assert all(f.startswith("file:///") and f.endswith(".parquet") for f in files)
    tables = [pq.read_table(f[len("file://"):]) for f in files]
    assert sum(t.num_rows for t in tables) == 30
    # Spark's default INT96 would break other Delta readers: the files hold UTC microseconds
    assert tables[0].schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_lake_tables_are_plain_delta(lake, frame):
    lake.write(T, frame([row(i, 1 + i % 2) for i in range(10)]), partition_by=["dt"])
    version = lake.write(T, frame([row(99, 2)]))
    table = deltalake.DeltaTable(lake.uri(T))
    assert table.version() == version == 1
    assert table.metadata().partition_columns == ["dt"]
    assert len(table.file_uris()) == len(lake.files(T))
    # deltalake's own readers, partition column included (under pyarrow 14 they need lakerec.arrow_compat)
    data = table.to_pyarrow_table()
    assert data.column_names == SCHEMA.fieldNames()
    assert sorted(data.column("user_id").to_pylist()) == [*range(10), 99]
    frame = table.to_pandas()
    assert sorted(zip(frame["user_id"], frame["dt"])) == sorted((r.user_id, r.dt) for r in lake.read(T).collect())
    assert table.to_pandas(partitions=[("dt", "=", "2026-11-02")])["user_id"].tolist().count(99) == 1
    assert table.count() == 11  # numRecords stats in the add actions


def test_lake_reads_a_table_written_by_plain_deltalake(lake):
    data = pa.table(
        {
            "user_id": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array([0, 1_000_000, 2_000_000], pa.timestamp("us", tz="UTC")),
            "dt": ["2026-11-01", "2026-11-02", "2026-11-02"],
        }
    )
    deltalake.write_deltalake(lake.uri(T), data, partition_by=["dt"])
    deltalake.write_deltalake(lake.uri(T), data.slice(0, 1), mode="append")
    df = lake.read(T)
    assert [(f.name, f.dataType) for f in df.schema] == [
        ("user_id", LongType()),
        ("ts", TimestampType()),
        ("dt", StringType()),
    ]
    assert sorted((r.user_id, r.dt) for r in df.collect()) == [
        (1, "2026-11-01"), (1, "2026-11-01"), (2, "2026-11-02"), (3, "2026-11-02")
    ]
    assert lake.reads == {T: 1}
    assert lake.read(T, version=0).count() == 3


def test_engine_choice(spark, tmp_path):
    assert choose_engine(spark, "auto") == "delta-rs"  # no Delta jars on this machine
    assert choose_engine(spark, "delta-rs") == "delta-rs"
    assert Lake(str(tmp_path), spark).engine == "delta-rs"
    with pytest.raises(LakeError, match=r"io\.delta\.tables\.DeltaTable"):
        choose_engine(spark, "delta-spark")
    with pytest.raises(LakeError, match="delta-spark"):
        Lake(str(tmp_path), spark, engine="delta-spark")
    with pytest.raises(LakeError, match="unknown lake engine"):
        choose_engine(spark, "hudi")


def test_uris_names_and_missing_tables(lake, spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Lake("rel/lake", spark).uri("bronze.events") == f"{tmp_path}/rel/lake/bronze/events"
    assert Lake(f"file://{tmp_path}/l/", spark).uri("gold.topn") == f"{tmp_path}/l/gold/topn"
    for bad in ("events", "a.b.c", ".events", "bronze/x.y"):
        with pytest.raises(LakeError, match="layer.name"):
            lake.uri(bad)
    with pytest.raises(LakeError, match="no Delta table"):
        lake.read(T)
    with pytest.raises(LakeError, match="no Delta table"):
        lake.version(T)


@pytest.mark.parametrize("new_table", [False, True])
def test_crash_between_staging_and_commit_changes_nothing(lake, frame, monkeypatch, new_table):
    if not new_table:
        lake.write(T, frame([row(1, 1)]), partition_by=["dt"])

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash: the driver dies after the files are staged and moved, before the commit")

    # Patch both commit paths: create_table_with_add_actions (new table), create_write_transaction (existing one).
    monkeypatch.setattr("lakerec.lake.delta_rs.create_table_with_add_actions", crash)
    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        lake.write(T, frame([row(2, 2), row(3, 3)]), partition_by=["dt"])
    monkeypatch.undo()

    orphans = [f for _, _, fs in os.walk(lake.uri(T)) for f in fs if f.endswith(".parquet")]
    assert len(orphans) == 2 + (0 if new_table else 1)  # moved into the table, but never committed
    assert lake.writes == ({} if new_table else {T: 0})
    if new_table:
        assert not lake.exists(T)
        return
    assert lake.version(T) == 0
    assert [r.user_id for r in lake.read(T).collect()] == [1]  # readers see the old snapshot
    deleted = lake.vacuum(T, retention_hours=0)
    assert len(deleted) == 2 and all("dt=2026-11-0" in f for f in deleted)
    assert [r.user_id for r in lake.read(T).collect()] == [1]


# A writer SIGKILLed once Spark has staged its files (before they move into the table): what a kill leaves.
KILLED_WRITER = """
import os, signal, sys
import lakerec.lake.delta_rs as engine
from lakerec.config import load_config
from lakerec.lake import Lake
from lakerec.spark import get_spark
cfg = load_config("test", [f"lake.root={sys.argv[1]}"], conf_dir=sys.argv[2])
spark = get_spark(cfg)
engine._staged_files = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
Lake(cfg.lake.root, spark).write("silver.killed", spark.createDataFrame([(1, "a")], "u long, p string"),
                                 partition_by=["p"])
"""


@pytest.mark.slow
def test_the_next_write_removes_a_killed_writes_staging_folder_and_keeps_a_live_ones(lake, spark):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{REPO}"}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, lake.root, str(CONF_DIR)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    staging = Path(lake.uri("silver.killed"), "_staging")
    left = [p for p in staging.iterdir() if p.is_dir()]
    assert len(left) == 1 and list(left[0].rglob("*.parquet"))  # Spark's files, never committed
    assert not lake.exists("silver.killed")

    live = staging / ("f" * 32)  # another write in progress: its writer holds its lock (this process, here)
    (live / "p=b").mkdir(parents=True)
    lock = try_hold(f"{live}.lock")
    try:
        assert lake.write("silver.killed", spark.createDataFrame([(2, "b")], "u long, p string"),
                          partition_by=["p"]) == 0  # the killed writer's creation lock died with it
    finally:
        lock.release()
    assert not left[0].exists() and live.exists()
    assert [r.u for r in lake.read("silver.killed").collect()] == [2]
