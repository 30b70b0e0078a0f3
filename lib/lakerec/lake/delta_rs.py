"""The delta-rs engine: Spark executors write Parquet, the driver commits those files with delta-rs.

For sessions without the Delta jars. The split is delta-spark's own (executors write files, the driver commits),
so tables stay plain Delta, readable by any Delta reader. A write goes:
1. Spark writes the DataFrame as Parquet under `<table>/_staging/<write_id>/` (underscore folders are invisible to
   Delta readers and skipped by vacuum);
2. the driver moves each file to its place in the table and builds its add action;
3. one delta-rs commit adds them (and removes what an overwrite replaces).
A crash before 3 leaves the table at its previous version; files already moved are unreferenced orphans that
`vacuum` deletes once they are older than its retention. A killed write cannot remove its staging folder: on a
local lake each write holds `_staging/<write_id>.lock` (an OS lock, dropped when its process dies), and the next
write to the table deletes the folders whose lock is free.
"""
from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import ArrayType, DataType, MapType, StringType, StructField, StructType

from lakerec.lake.common import LakeError, spark_path
from lakerec.locks import held, try_hold

log = logging.getLogger(__name__)
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Spark's folder name for a null partition value
WRITE_ID_KEY = "lakerec.writeId"
# Table features whose rows cannot be read by reading the snapshot's Parquet files as they are.
UNREADABLE_FEATURES = {"deletionVectors", "columnMapping"}
STAGING = "_staging"
WRITE_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: the names of staging folders and their lock files


class DeltaRsEngine:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, uri: str) -> bool:
        return DeltaTable.is_deltatable(uri)

    def version(self, uri: str) -> int:
        return DeltaTable(uri).version()

    def schema(self, uri: str) -> StructType:
        return _spark_schema(DeltaTable(uri))

    def partition_columns(self, uri: str) -> list[str]:
        return DeltaTable(uri).metadata().partition_columns

    def read(self, uri: str, version: int) -> DataFrame:
        table = self._snapshot(uri, version)
        schema = _spark_schema(table)
        files = [spark_path(f) for f in table.file_uris()]
        if not files:
            return self.spark.createDataFrame([], schema)
        # The explicit schema gives partition columns their declared types, not what Spark infers from folder
        # names; Spark puts partition columns last, the select restores the table's column order.
        df = self.spark.read.schema(schema).option("basePath", spark_path(uri)).parquet(*files)
        return df.select(*(F.col(f"`{name}`") for name in schema.fieldNames()))

    def files(self, uri: str, version: int) -> list[str]:
        return [spark_path(f) for f in self._snapshot(uri, version).file_uris()]

    def write(
        self,
        uri: str,
        df: DataFrame,
        mode: str,
        partition_by: list[str],
        replace_where: str | None,
        user_metadata: str | None,
        txn: tuple[str, int] | None,
    ) -> int:
        fs, table_path = fsspec.core.url_to_fs(uri)
        write_id = uuid.uuid4().hex
        staging = f"{table_path}/{STAGING}/{write_id}"
        with contextlib.ExitStack() as stack:
            if isinstance(fs, LocalFileSystem):
                stack.callback(Path(f"{staging}.lock").unlink, missing_ok=True)  # runs last: after the release
                stack.enter_context(held(f"{staging}.lock", "writing to this table"))
                clean_staging(table_path)
            # Spark's default INT96 timestamps are not valid Delta; microseconds are what every Delta reader expects.
            self.spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            try:
                df.write.partitionBy(*partition_by).parquet(spark_path(f"{uri}/{STAGING}/{write_id}"))
                staged = _staged_files(fs, staging, write_id)
                # one snapshot decides what an overwrite removes and is the commit's read version
                table = DeltaTable(uri) if self.exists(uri) else None
                removes = []
                if replace_where:
                    partition_fields = StructType([f for f in df.schema if f.name in partition_by])
                    removes = self._replaced(table, staged, partition_fields, replace_where)
                for src, rel, _ in staged:
                    fs.makedirs(posixpath.dirname(f"{table_path}/{rel}"), exist_ok=True)
                    fs.mv(src, f"{table_path}/{rel}")
                adds = [add for _, _, add in staged]
                # the write id in commitInfo finds our commit again (and ties it to its part-<write_id>-n files)
                commit_info = {WRITE_ID_KEY: write_id} | ({"userMetadata": user_metadata} if user_metadata else {})
                props = CommitProperties(
                    custom_metadata=commit_info, app_transactions=[Transaction(*txn)] if txn else None
                )
                if table is None:
                    schema = Schema.from_arrow(to_arrow_schema(_nullable(df.schema)))
                    create_table_with_add_actions(
                        uri, schema, adds, mode="error", partition_by=partition_by, commit_properties=props
                    )
                    return 0
                table.create_write_transaction(
                    [*adds, *removes],
                    mode="overwrite" if mode == "overwrite" and not replace_where else "append",
                    schema=table.schema(),
                    partition_by=partition_by,
                    commit_properties=props,
                )
                return _committed_version(uri, table.version(), write_id)
            finally:
                if fs.exists(staging):
                    fs.rm(staging, recursive=True)

    def history(self, uri: str, limit: int | None) -> list[dict]:
        return [
            {k: commit.get(k) for k in ("version", "timestamp", "operation", "userMetadata")}
            for commit in DeltaTable(uri).history(limit)
        ]

    def app_version(self, uri: str, app_id: str) -> int | None:
        return DeltaTable(uri).transaction_version(app_id)

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        # full=True: also delete files the log never referenced (orphans of a crashed write), as delta-spark does.
        deleted = DeltaTable(uri).vacuum(
            retention_hours, dry_run=False, enforce_retention_duration=False, full=True
        )
        return [f"{uri}/{path}" for path in deleted]  # delta-rs gives them plain, relative to the table

    def _snapshot(self, uri: str, version: int) -> DeltaTable:
        table = DeltaTable(uri, version=version)
        features = set(table.protocol().reader_features or [])
        if table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
            features.add("columnMapping")
        if features & UNREADABLE_FEATURES:
            raise LakeError(
                f"{uri} uses {sorted(features & UNREADABLE_FEATURES)}: the delta-rs engine reads the snapshot's "
                "Parquet files directly and would return wrong rows; read it with the delta-spark engine"
            )
        return table

    def _replaced(
        self, table: DeltaTable | None, staged: list[tuple[str, str, AddAction]], fields: StructType, predicate: str
    ) -> list[RemoveAction]:
        """Remove actions for the table's files in the partitions `predicate` selects; refuse new rows outside it."""
        if not fields:
            raise LakeError(f"replace_where {predicate!r} needs a partitioned table")
        names = fields.fieldNames()
        key = StructField("__key", StringType())
        # new files: partition values as Spark named its folders (strings), cast to the columns' types
        new = {add.path: add.partition_values for _, _, add in staged}
        new_df = self.spark.createDataFrame(
            [(path, *(values[c] for c in names)) for path, values in new.items()],
            StructType([key, *(StructField(c, StringType()) for c in names)]),
        ).select("__key", *(F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in fields))
        outside = set(new) - _matching(new_df, names, predicate)
        if outside:
            values = sorted({json.dumps(new[p], sort_keys=True) for p in outside})
            raise LakeError(f"the data has partitions outside replace_where {predicate!r}: {', '.join(values)}")
        if table is None:
            return []
        # the table's files: get_add_actions gives their partition values already typed
        current = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        current_df = self.spark.createDataFrame(
            [(f["path"], *(f[f"partition.{c}"] for c in names)) for f in current], StructType([key, *fields])
        )
        sizes = {f["path"]: f["size_bytes"] for f in current}
        now = int(time.time() * 1000)
        return [
            # get_add_actions gives the log's URI-encoded path; actions take it plain
            RemoveAction(path=unquote(path), data_change=True, deletion_timestamp=now, size=sizes[path])
            for path in sorted(_matching(current_df, names, predicate))
        ]


def clean_staging(table_path: str) -> list[str]:
    """Delete the staging folders (and lock files) of this table's writes whose process is gone; returns them.

    A write in progress holds its lock, so its folder stays; a killed one's lock is free (the OS dropped it).
    """
    removed = []
    for name in sorted({p.name.removesuffix(".lock") for p in Path(table_path, STAGING).glob("*")}):
        if not WRITE_ID.fullmatch(name):
            continue
        folder = Path(table_path, STAGING, name)
        lock = try_hold(f"{folder}.lock")
        if lock is None:
            continue
        try:
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(str(folder))
                log.info("removed %s, the staging folder of a write that was killed", folder)
        finally:
            lock.release()
            Path(f"{folder}.lock").unlink(missing_ok=True)
    return removed


def _matching(files: DataFrame, names: list[str], predicate: str) -> set[str]:
    """`__key` of the rows (one per file, typed partition columns) that satisfy the SQL predicate.

    Spark evaluates it, so the predicate means what it would mean to delta-spark's replaceWhere.
    """
    try:
        return {row[0] for row in files.where(predicate).select("__key").collect()}
    except AnalysisException as e:
        raise LakeError(f"replace_where {predicate!r} may only use the partition columns {names}: {e}") from None


def _staged_files(fs: fsspec.AbstractFileSystem, staging: str, write_id: str) -> list[tuple[str, str, AddAction]]:
    """(staged file, its path in the table, its add action) for each non-empty Parquet file Spark wrote."""
    now = int(time.time() * 1000)
    staged = []
    # .crc and _SUCCESS side files are not data; Spark writes an empty file for an empty DataFrame, which a
    # Delta table does not need (its schema lives in the log).
    for n, src in enumerate(sorted(p for p in fs.find(staging) if p.endswith(".parquet"))):
        with fs.open(src, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows == 0:
            continue
        folder = posixpath.dirname(posixpath.relpath(src, staging))
        rel = posixpath.join(folder, f"part-{write_id}-{n:05d}.parquet")
        add = AddAction(
            path=rel,  # plain: delta-rs URI-encodes paths into the log itself
            size=fs.size(src),
            partition_values=_partition_values(folder),
            modification_time=now,
            data_change=True,
            stats=json.dumps({"numRecords": rows}),
        )
        staged.append((src, rel, add))
    return staged


def _committed_version(uri: str, read_version: int, write_id: str) -> int:
    """The version of our commit: not simply the latest, another writer may have committed since."""
    table = DeltaTable(uri)
    commits = table.history(limit=table.version() - read_version)
    return next(c["version"] for c in commits if c.get(WRITE_ID_KEY) == write_id)


def _partition_values(folder: str) -> dict[str, str | None]:
    """Spark's escaped `col=value/...` folder names -> Delta partition values (strings, None for null)."""
    values = {}
    for segment in folder.split("/") if folder else []:
        column, _, raw = segment.partition("=")
        values[unquote(column)] = None if raw == HIVE_NULL else unquote(raw)
    return values


def _spark_schema(table: DeltaTable) -> StructType:
    return from_arrow_schema(pa.schema(table.schema().to_arrow()))


def _nullable(t: DataType) -> DataType:
    """Every level nullable, as delta-spark stores a new table's schema: later writes may carry nulls."""
    if isinstance(t, StructType):
        return StructType([StructField(f.name, _nullable(f.dataType), True, f.metadata) for f in t])
    if isinstance(t, ArrayType):
        return ArrayType(_nullable(t.elementType), True)
    if isinstance(t, MapType):
        return MapType(_nullable(t.keyType), _nullable(t.valueType), True)
    return t
