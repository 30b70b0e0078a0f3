"""The local runner: every stage in dependency order in one Spark session, with retries and resume.

A pipeline run is an MLflow run; each stage attempt is a nested run. Resuming reopens the pipeline run and
skips the stages that already have a FINISHED run under it, so a failure at `train` does not redo ingest and
silver (their tables are already at the versions the finished stages wrote). The config must be the one the
failed run used (its hash is a tag), or the resumed run would mix two configurations.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import mlflow
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from lakerec import logs, tracking
from lakerec.config import Config
from lakerec.context import StageFn, StageResult, run_stage
from lakerec.pipeline import Pipeline

log = logging.getLogger("lakerec")
CONFIG_HASH_TAG = "lakerec.config_hash"


class ResumeError(ValueError):
    """No run to resume, or one that cannot be resumed with this configuration."""


@dataclass
class PipelineRun:
    run_id: str
    results: dict[str, StageResult] = field(default_factory=dict)
    seconds: float = 0.0


def config_hash(cfg: Config) -> str:
    """What a resume must match: the configuration, less how the run logs, its drills and its run identity (a
    drill's failed run resumes without the drill)."""
    kept = cfg.model_dump_json(exclude={"log": True, "drill": True, "mlflow": {"parent_run_id", "git_commit"}})
    return hashlib.sha256(kept.encode()).hexdigest()[:16]


def resumable_run(cfg: Config, pipeline: Pipeline, run_id: str | None) -> str:
    """The pipeline run to resume: the given one, else the latest that did not finish."""
    experiment_id = tracking.setup(cfg)
    client = MlflowClient()
    if run_id is None:
        runs = client.search_runs([experiment_id], f"tags.`{tracking.STAGE_TAG}` = 'pipeline:{pipeline.name}' "
                                                   "and attributes.status != 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ResumeError(f"no unfinished run of pipeline {pipeline.name!r} in experiment {cfg.mlflow.experiment!r}")
        run_id = runs[0].info.run_id
    run = client.get_run(run_id)
    if run.info.status == "FINISHED":
        raise ResumeError(f"pipeline run {run_id} finished: nothing to resume")
    if run.data.tags.get(CONFIG_HASH_TAG) != config_hash(cfg):
        raise ResumeError(f"pipeline run {run_id} ran with another configuration: resume it with the same "
                          "--profile/--config/--set, or start a new run")
    return run_id


def finished_stages(pipeline_run_id: str) -> dict[str, str]:
    """stage -> id of its FINISHED run under this pipeline run."""
    runs = MlflowClient().search_runs(
        [mlflow.get_run(pipeline_run_id).info.experiment_id],
        f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run_id}' and attributes.status = 'FINISHED'")
    return {r.data.tags[tracking.STAGE_TAG]: r.info.run_id for r in runs if r.info.run_id != pipeline_run_id}


def run_pipeline(cfg: Config, pipeline: Pipeline, spark: SparkSession, jobs: Callable[[str], StageFn],
                 echo: Callable[[str], None], from_stage: str | None = None, resume_run_id: str | None = None,
                 retries: int | None = None) -> PipelineRun:
    """Run the stages; `retries` overrides the definition's per-stage retries. Raises the last failure."""
    stages = pipeline.order()
    names = [s.name for s in stages]
    done = finished_stages(resume_run_id) if resume_run_id else {}
    started = time.perf_counter()
    with tracking.pipeline_run(cfg, pipeline.name, resume_run_id) as parent, \
            logs.context(run_id=parent.info.run_id, stage="pipeline", mlflow_run_id=parent.info.run_id):
        out = PipelineRun(parent.info.run_id)
        mlflow.set_tags({tracking.PIPELINE_RUN_TAG: out.run_id, CONFIG_HASH_TAG: config_hash(cfg)})
        verb = "resuming" if resume_run_id else "pipeline run"
        echo(f"lakerec: {verb} {out.run_id} (profile {cfg.profile}, lake {cfg.lake.root})")
        for i, stage in enumerate(stages, 1):
            if from_stage and i - 1 < names.index(from_stage):
                out.results[stage.name] = StageResult(skipped=f"before --from {from_stage}")
            elif stage.name in done:
                out.results[stage.name] = StageResult(skipped=f"finished in run {done[stage.name]}")
            if stage.name in out.results:
                echo(out.results[stage.name].describe(stage.name))
                continue
            echo(f"[{i}/{len(stages)}] {stage.name}: {stage.doc}")
            attempts = 1 + (pipeline.retries(stage) if retries is None else retries)
            for attempt in range(1, attempts + 1):
                try:
                    out.results[stage.name] = run_stage(stage.name, jobs(stage.job), cfg, spark,
                                                        parent_run_id=out.run_id, pipeline_run_id=out.run_id)
                    echo(out.results[stage.name].describe(stage.name))
                    break
                except Exception as e:
                    if attempt == attempts:
                        echo(f"[{stage.name}] FAILED after {attempt} attempt(s): {type(e).__name__}: {e}")
                        raise
                    echo(f"[{stage.name}] attempt {attempt}/{attempts} failed ({type(e).__name__}: {e}); retrying")
        out.seconds = time.perf_counter() - started
        mlflow.log_metric("pipeline_seconds", out.seconds)
    return out
