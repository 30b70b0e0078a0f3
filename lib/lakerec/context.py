"""What every stage receives: validated config, the Spark session, the lake and the stage's MLflow run."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import mlflow
from pyspark.sql import SparkSession

from lakerec import logs, tracking
from lakerec.config import Config
from lakerec.lake import Lake

log = logging.getLogger("lakerec")
EXIT_ATTENTION = 3  # exit status of a command whose stages finished but reported `attention` lines


class InjectedFailure(RuntimeError):
    """Raised instead of running a stage named in drill.fail_stages (LAKEREC_FAIL_STAGE)."""


@dataclass
class StageContext:
    cfg: Config
    spark: SparkSession
    lake: Lake
    stage: str
    run_id: str
    pipeline_run_id: str | None = None


@dataclass
class StageResult:
    """What a stage reports: numbers for MLflow and the summary, and why it skipped if it did."""

    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0
    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    # done, but a person must read these lines (e.g. input files rejected): the command then exits with
    # EXIT_ATTENTION, so a scheduler notices
    attention: list[str] = field(default_factory=list)

    def describe(self, stage: str) -> str:
        """One line for the console: how long it took and its metrics, or why it skipped."""
        if self.skipped:
            return f"[{stage}] skipped: {self.skipped}"
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in self.metrics.items())
        return f"[{stage}] done in {self.seconds:.1f}s  {metrics}"


def _fmt(v: float) -> str:
    return f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v)}"


StageFn = Callable[[StageContext], "StageResult | dict[str, float] | None"]


def run_stage(stage: str, fn: StageFn, cfg: Config, spark: SparkSession,
              parent_run_id: str | None = None, pipeline_run_id: str | None = None) -> StageResult:
    """Run one stage inside its own MLflow run and record the table versions it read and wrote."""
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    start = time.perf_counter()
    with tracking.stage_run(cfg, stage, parent_run_id, pipeline_run_id) as run, \
            logs.context(run_id=pipeline_run_id or run.info.run_id, stage=stage, mlflow_run_id=run.info.run_id):
        ctx = StageContext(cfg, spark, lake, stage, run.info.run_id, pipeline_run_id)
        log.info("stage %s started", stage)
        log.debug("stage %s: profile %s, lake %s, engine %s", stage, cfg.profile, cfg.lake.root, lake.engine)
        if stage in cfg.drill.fail_stages:
            raise InjectedFailure(f"{stage}: failure injected by drill.fail_stages (a drill, not a bug)")
        try:
            out = fn(ctx)
        except Exception as e:
            log.error("stage %s failed: %s: %s", stage, type(e).__name__, e)
            raise
        result = out if isinstance(out, StageResult) else StageResult(metrics=dict(out or {}))
        result.seconds = time.perf_counter() - start
        result.reads, result.writes, result.run_id = dict(lake.reads), dict(lake.writes), run.info.run_id
        tracking.log_table_versions(lake.reads, lake.writes)
        if result.metrics:
            mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
        mlflow.log_metric("stage_seconds", result.seconds)
        if result.skipped:
            mlflow.set_tag("lakerec.skipped", result.skipped)
        if result.attention:
            mlflow.set_tag("lakerec.attention", "\n".join(result.attention)[:5000])
            for line in result.attention:
                log.warning("stage %s: %s", stage, line)
        log.info("%s", result.describe(stage))
    return result


def log_params(params: dict[str, Any]) -> None:
    """Log a flat dict of parameters to the active stage run."""
    mlflow.log_params({k: str(v) for k, v in params.items()})
