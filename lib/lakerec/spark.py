"""The only place a SparkSession is built."""
from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from lakerec import logs
from lakerec.config import Config


def get_spark(cfg: Config) -> SparkSession:
    """Build (or reuse) the session for this config; quiet logs, UI off locally, UTC everywhere.

    Spark logs at ERROR (WARN with log.verbose; LAKEREC_SPARK_LOG_LEVEL wins) and draws its own console
    progress bar (stages and tasks: ingest's file splits, silver's shuffles, scoring's partitions) when
    `logs.progress_enabled` says someone is watching stderr.

    An already active session (spark-submit, Databricks, a notebook) is reused as it is, so a cluster's
    own settings win over ours.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same interpreter as the driver (the project's venv), locally at least: a write that
    # PySpark reads (docs/reference/environment.md), only where the user set nothing.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": str(logs.progress_enabled(cfg.log)).lower(),
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        # no _SUCCESS marker files inside Delta table folders
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.sql.warehouse.dir": os.path.join(os.path.abspath(cfg.lake.root), "_spark-warehouse"),
        **cfg.spark.extra,
    }
    for k, v in settings.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(logs.spark_log_level(cfg.log))
    return spark
