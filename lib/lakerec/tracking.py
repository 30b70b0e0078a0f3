"""MLflow: one experiment whose artifacts live inside the lake, one run per stage (nested under a pipeline run)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import mlflow

from lakerec.config import Config

PIPELINE_RUN_TAG = "lakerec.pipeline_run_id"
STAGE_TAG = "lakerec.stage"


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store and return the experiment id.

    With a local store, artifacts go to <lake>/mlartifacts: otherwise they land in ./mlruns of wherever a job
    happens to run (stack.md).
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps job logs readable
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = None
    if "://" not in cfg.lake.root:
        artifacts = Path(cfg.lake.root, "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=artifacts)


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, parent_run_id: str | None = None,
              pipeline_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run for one stage; FAILED (not left RUNNING) when the stage raises."""
    experiment_id = setup(cfg)
    tags = {STAGE_TAG: stage, "lakerec.profile": cfg.profile}
    if pipeline_run_id:
        tags[PIPELINE_RUN_TAG] = pipeline_run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags,
                          parent_run_id=parent_run_id, nested=parent_run_id is not None) as run:
        yield run


def log_table_versions(reads: dict[str, int], writes: dict[str, int]) -> None:
    """Lineage: which Delta table versions this stage read and wrote (params, so they are searchable)."""
    mlflow.log_params({**{f"read.{t}": v for t, v in reads.items()}, **{f"wrote.{t}": v for t, v in writes.items()}})


def parent_run_id_from_env() -> str | None:
    """A scheduler that runs stages as separate processes passes the pipeline run here."""
    return os.environ.get("LAKEREC_PARENT_RUN_ID") or None
