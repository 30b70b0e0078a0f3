"""The lake: Delta tables named "layer.name" under one root, behind one interface with two engines.

- delta-spark: Delta's own Spark data source, where the session has the Delta jars (clusters);
- delta-rs: Spark writes Parquet, delta-rs commits it (see `lakerec.lake.delta_rs`), where it has not.
Both write the same Delta protocol, so a table written through one engine is read through the other.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator
from urllib.parse import urlparse

from py4j.java_gateway import JavaClass
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakerec.lake.common import LakeError
from lakerec.locks import held

__all__ = ["Lake", "LakeError", "choose_engine"]

ENGINES = ("auto", "delta-spark", "delta-rs")
CREATE_LOCK = "_staging/create.lock"  # underscore folders are invisible to Delta readers


def choose_engine(spark: SparkSession, requested: str) -> str:
    """'delta-spark' when requested so, or when 'auto' and the session's JVM can load io.delta.tables.DeltaTable
    (Spark Connect sessions: assume delta-spark, their servers ship Delta); else 'delta-rs'.

    Asking for 'delta-spark' in a session without the jars is a LakeError, not a silent fallback: the job's
    configuration says something the cluster does not provide.
    """
    if requested not in ENGINES:
        raise LakeError(f"unknown lake engine {requested!r}: expected one of {list(ENGINES)}")
    if requested == "delta-rs":
        return requested
    if _has_delta_jars(spark):
        return "delta-spark"
    if requested == "delta-spark":
        raise LakeError(
            "lake engine 'delta-spark' requested, but this Spark session cannot load io.delta.tables.DeltaTable: "
            "put the io.delta:delta-spark jars on the classpath (spark.jars.packages, a Delta-enabled cluster) "
            "or set lake.engine to 'auto' or 'delta-rs'"
        )
    return "delta-rs"


def _has_delta_jars(spark: SparkSession) -> bool:
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: no JVM on this side to ask
        return True
    # py4j resolves a name to a JavaClass only when the class loads (what delta.tables itself relies on)
    return isinstance(jvm.io.delta.tables.DeltaTable, JavaClass)


class Lake:
    """Tables `<root>/<layer>/<name>`, read as Spark DataFrames at a version, written one commit per call.

    `reads` and `writes` (table -> version) record what this object read and committed, so a job can log its
    exact inputs and outputs as lineage.
    """

    def __init__(self, root: str, spark: SparkSession, engine: str = "auto"):
        self.root = _absolute(root)
        self.spark = spark
        self.engine = choose_engine(spark, engine)
        if self.engine == "delta-spark":
            from lakerec.lake.delta_spark import DeltaSparkEngine as Engine
        else:
            from lakerec.lake.delta_rs import DeltaRsEngine as Engine
        self._impl = Engine(spark)
        self.reads: dict[str, int] = {}
        self.writes: dict[str, int] = {}

    def uri(self, table: str) -> str:
        """Absolute path (local lake) or URI of the table's root folder."""
        layer, dot, name = table.partition(".")
        if not (layer and dot and name) or "." in name or "/" in table:
            raise LakeError(f"table name {table!r} must look like 'layer.name'")
        return f"{self.root}/{layer}/{name}"

    def exists(self, table: str) -> bool:
        return self._impl.exists(self.uri(table))

    def version(self, table: str) -> int:
        """The latest committed version."""
        return self._impl.version(self._existing(table))

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """The snapshot at `version` (latest if None), with the table's column types and order; records the read."""
        uri = self._existing(table)
        version = self._impl.version(uri) if version is None else version
        df = self._impl.read(uri, version)
        self.reads[table] = version
        return df

    def files(self, table: str, version: int | None = None) -> list[str]:
        """Absolute URIs (file:// for local) of the snapshot's data files, for Petastorm; records the read.

        Partition columns live in folder names, not in the files: keep what a reader needs inside the files.
        """
        uri = self._existing(table)
        version = self._impl.version(uri) if version is None else version
        files = self._impl.files(uri, version)
        self.reads[table] = version
        return files

    def write(
        self,
        table: str,
        df: DataFrame,
        mode: str = "append",
        partition_by: list[str] | None = None,
        replace_where: str | None = None,
        metadata: dict[str, str] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> int:
        """Write `df` in one commit and return its version (the table is created on first write).

        mode "append" or "overwrite"; `replace_where` (overwrite only) is a SQL predicate over partition columns:
        only the matching partitions are replaced. `metadata` is recorded in the commit (see `history`).
        `app_id`/`app_version` make the write idempotent: if the table already recorded `app_version` or later
        for `app_id`, nothing is written and the current version is returned (and `writes` is left alone).
        The data's schema must equal the table's (names and types; nullability aside): no silent evolution.
        """
        if mode not in ("append", "overwrite"):
            raise LakeError(f"write mode {mode!r}: expected 'append' or 'overwrite'")
        if replace_where and mode != "overwrite":
            raise LakeError("replace_where only goes with mode='overwrite'")
        if (app_id is None) != (app_version is None):
            raise LakeError("app_id and app_version go together")
        with self._creating(table):
            uri = self.uri(table)
            if self._impl.exists(uri):
                if app_id is not None:
                    done = self._impl.app_version(uri, app_id)
                    if done is not None and done >= app_version:
                        return self._impl.version(uri)
                diff = _schema_diff(self._impl.schema(uri), df.schema)
                if diff:
                    raise LakeError(f"{table}: the data's schema differs from the table's: {'; '.join(diff)}")
                current = self._impl.partition_columns(uri)
                if partition_by is not None and list(partition_by) != current:
                    raise LakeError(f"{table} is partitioned by {current}, not {list(partition_by)}")
                partition_by = current
            version = self._impl.write(
                uri,
                df,
                mode,
                list(partition_by or []),
                replace_where,
                json.dumps(metadata, sort_keys=True) if metadata else None,
                (app_id, app_version) if app_id is not None else None,
            )
            self.writes[table] = version
            return version

    @contextlib.contextmanager
    def _creating(self, table: str) -> Iterator[None]:
        """Where the table does not exist yet, hold its creation lock (local lakes) for the whole write: of two jobs
        that start on a new lake, one creates the table and the other then writes to it as it exists."""
        uri = self.uri(table)
        if "://" in self.root or self._impl.exists(uri):
            yield
            return
        with held(f"{uri}/{CREATE_LOCK}", f"creating {table}"):
            yield

    def history(self, table: str, limit: int | None = None) -> list[dict]:
        """Commits newest first (the newest `limit` if given): version, timestamp (epoch milliseconds), operation,
        metadata (the dict written)."""
        return [
            {
                "version": commit["version"],
                "timestamp": commit["timestamp"],
                "operation": commit["operation"],
                "metadata": _metadata(commit["userMetadata"]),
            }
            for commit in self._impl.history(self._existing(table), limit)
        ]

    def app_version(self, table: str, app_id: str) -> int | None:
        """The last batch version `app_id` committed to the table; None if none (or no table yet)."""
        uri = self.uri(table)
        return self._impl.app_version(uri, app_id) if self._impl.exists(uri) else None

    def vacuum(self, table: str, retention_hours: int) -> list[str]:
        """Delete files no snapshot of the last `retention_hours` needs (and orphans that old); returns them.

        Time travel to versions older than the retention stops working.
        """
        return self._impl.vacuum(self._existing(table), retention_hours)

    def _existing(self, table: str) -> str:
        uri = self.uri(table)
        if not self._impl.exists(uri):
            raise LakeError(f"{table}: no Delta table at {uri}")
        return uri


def _absolute(root: str) -> str:
    """Local roots (relative, absolute or file://) become absolute paths, which delta-rs and Spark both take;
    URIs (s3://, abfss://...) stay as they are."""
    parsed = urlparse(root)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(parsed.path if parsed.scheme else root)
    return root.rstrip("/")


def _schema_diff(table: StructType, data: StructType) -> list[str]:
    """One line per column whose type differs or that only one side has; simpleString ignores nullability."""
    want = {f.name: f.dataType.simpleString() for f in table}
    got = {f.name: f.dataType.simpleString() for f in data}
    return [
        f"{name}: {want.get(name, 'absent')} in the table, {got.get(name, 'absent')} in the data"
        for name in sorted(want.keys() | got.keys())
        if want.get(name) != got.get(name)
    ]


def _metadata(user_metadata: str | None) -> dict:
    """The lake writes commit metadata as a JSON object in userMetadata (what delta-spark can record too)."""
    if not user_metadata:
        return {}
    try:
        value = json.loads(user_metadata)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"userMetadata": user_metadata}
