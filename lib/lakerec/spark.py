"""The only place a SparkSession is built."""
from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import SparkSession

from lakerec import logs
from lakerec.config import Config

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
# Lines the JVM itself prints, which no log level reaches: Spark's launcher always adds the jdk.incubator.vector
# module, and the JVM announces it on stderr before any logger exists.
JVM_NOTICES = ("WARNING: Using incubator modules",)
# Horovod puts `[rank]<stdout>:` before each segment of a rank's output, which (locally) reaches the JVM's stderr;
# without it rank 0's epoch lines and bar read as the job's own. log.verbose keeps it.
RANK_PREFIX = re.compile(r"^\[\d+\]<std(?:out|err)>:")


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
    settings = {
        "spark.app.name": cfg.spark.app_name,
        **({"spark.master": cfg.spark.master} if cfg.spark.master else {}),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": str(logs.progress_enabled(cfg.log)).lower(),
        **({} if logs.is_terminal(sys.stderr) else  # a file gets a line per redraw: not five a second
           {"spark.ui.consoleProgress.update.interval": str(logs.FILE_REDRAW_SECONDS * 1000)}),
        "spark.driver.extraJavaOptions": f"-Duser.timezone=UTC -Dlog4j.configurationFile={LOG4J_CONFIG.as_uri()} "
                                         f"-Dlakerec.spark.level={logs.spark_log_level(cfg.log)}",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        # no _SUCCESS marker files inside Delta table folders
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.sql.warehouse.dir": os.path.join(os.path.abspath(cfg.lake.root), "_spark-warehouse"),
        **cfg.spark.extra,
    }
    conf = SparkConf().setAll(list(settings.items()))
    _start_driver(conf, keep_rank_prefix=cfg.log.verbose)
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel(logs.spark_log_level(cfg.log))
    return spark


def _start_driver(conf: SparkConf, keep_rank_prefix: bool) -> None:
    """Start the driver JVM with its stderr passed through `_forward`, which drops `JVM_NOTICES` (and Horovod's
    `RANK_PREFIX` unless keep_rank_prefix) and passes everything else on, so a run's first screen holds lakerec's
    lines. Where a JVM already runs (one this process started before) nothing happens; under spark-submit pyspark's
    launcher connects to its gateway (no process of ours, nothing to forward)."""
    if SparkContext._gateway is not None:
        return
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    if gateway.proc is not None:
        threading.Thread(target=_forward, args=(gateway.proc.stderr.fileno(), keep_rank_prefix), name="jvm-stderr",
                         daemon=True).start()
    SparkContext(conf=conf, gateway=gateway)


def _forward(fd: int, keep_rank_prefix: bool = False) -> None:
    """Copy the JVM's stderr to ours as it comes, a segment (up to a "\\n", or a "\\r" of a redrawn bar) at a
    time, except the JVM's notices and (unless keep_rank_prefix) Horovod's rank prefix; a file gets the bars'
    redraws as lines (`logs.redraws_as_lines`). Ends when the JVM exits."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while chunk := os.read(fd, 65536):
        *segments, pending = re.split(r"(?<=[\r\n])", pending + decoder.decode(chunk))
        _write_segments(segments, keep_rank_prefix)
    _write_segments([pending], keep_rank_prefix)  # output that ended without a line end (an empty one writes nothing)


def _write_segments(segments: list[str], keep_rank_prefix: bool) -> None:
    kept = (s if keep_rank_prefix else RANK_PREFIX.sub("", s, count=1)
            for s in segments if not s.startswith(JVM_NOTICES))
    out = "".join(logs.redraws_as_lines(s, sys.stderr) for s in kept)
    if out:
        sys.stderr.write(out)
        sys.stderr.flush()
