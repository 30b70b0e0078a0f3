"""The delta-spark engine: Delta's own Spark data source, for sessions that have the Delta jars (clusters).

Needs the session configured for Delta (`spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension`), as
Databricks, EMR and `configure_spark_with_delta_pip` sessions are. VACUUM below the 168-hour default also needs
`spark.databricks.delta.retentionDurationCheck.enabled=false`: that safety check is the cluster's call.
"""
from __future__ import annotations

import re

import deltalake
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec.lake.common import spark_path


class DeltaSparkEngine:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, uri: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, spark_path(uri))

    def version(self, uri: str) -> int:
        return self._table(uri).history(1).first()["version"]

    def schema(self, uri: str):
        return self.spark.read.format("delta").load(spark_path(uri)).schema

    def partition_columns(self, uri: str) -> list[str]:
        return list(self._table(uri).detail().first()["partitionColumns"])

    def read(self, uri: str, version: int) -> DataFrame:
        return self.spark.read.format("delta").option("versionAsOf", version).load(spark_path(uri))

    def files(self, uri: str, version: int) -> list[str]:
        # Hadoop spells local files file:/x; the lake's contract (and Petastorm) use file:///x
        return [re.sub(r"^file:/+", "file:///", f) for f in self.read(uri, version).inputFiles()]

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
        writer = df.write.format("delta").mode(mode)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        options = {"replaceWhere": replace_where, "userMetadata": user_metadata}
        if txn:
            # Delta itself skips the write if the table already holds this app's version (the lake checked too)
            options |= {"txnAppId": txn[0], "txnVersion": str(txn[1])}
        writer.options(**{k: v for k, v in options.items() if v is not None}).save(spark_path(uri))
        return self.version(uri)

    def history(self, uri: str, limit: int | None) -> list[dict]:
        table = self._table(uri)
        rows = (
            (table.history(limit) if limit else table.history())
            .select("version", F.unix_millis("timestamp").alias("timestamp"), "operation", "userMetadata")
            .collect()
        )
        return [row.asDict() for row in rows]

    def app_version(self, uri: str, app_id: str) -> int | None:
        # delta-spark has no public API for a table's app transactions; the log is the same protocol either way.
        return deltalake.DeltaTable(uri).transaction_version(app_id)

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        target = f"delta.`{spark_path(uri)}` RETAIN {retention_hours} HOURS"
        doomed = [row["path"] for row in self.spark.sql(f"VACUUM {target} DRY RUN").collect()]
        self.spark.sql(f"VACUUM {target}")
        return doomed

    def _table(self, uri: str) -> DeltaTable:
        return DeltaTable.forPath(self.spark, spark_path(uri))
