"""MLflow: one experiment whose artifacts live inside the lake, one run per stage (nested under a pipeline run)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

import mlflow
from mlflow.tracking import MlflowClient

from lakerec import locks
from lakerec.config import Config

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PIPELINE_RUN_TAG = "lakerec.pipeline_run_id"
STAGE_TAG = "lakerec.stage"
GIT_COMMIT_TAG = "lakerec.git_commit"
GIT_COMMIT_ENV = "LAKEREC_GIT_COMMIT"  # set where the code runs from a wheel or zip, with no checkout to ask


def git_commit() -> str:
    """The commit of the code that runs: LAKEREC_GIT_COMMIT, else the checkout lakerec is imported from, else
    "unknown" (a wheel on a cluster). MLflow's own mlflow.source.git.commit names the entry script's repo, which
    under pytest, notebooks or spark-submit is not ours."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class TrackingSetupError(RuntimeError):
    """The MLflow store could not be opened or its experiment created; the message says what to do."""


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store and return the experiment id.

    With a local store, artifacts go to <lake>/mlartifacts: otherwise they land in ./mlruns of wherever a job
    happens to run (stack.md). A sqlite store is created (MLflow migrates its schema with alembic) under a file
    lock beside it: two jobs starting on a new lake would otherwise both migrate it, and one would fail.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps job logs readable
    uri = cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return _experiment(cfg, uri)
    db = Path(uri.removeprefix("sqlite:///"))
    with locks.held(f"{db}.lock", f"creating the MLflow store {db}"):
        return _experiment(cfg, uri)


def _experiment(cfg: Config, uri: str) -> str:
    """The experiment's id, created if new (opening the store creates or migrates it first)."""
    try:
        exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
        if exp is not None:
            return exp.experiment_id
        artifacts = None
        if "://" not in cfg.lake.root:
            artifacts = Path(cfg.lake.root, "mlartifacts").resolve().as_uri()
        return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=artifacts)
    except Exception as e:  # MLflow, SQLAlchemy or alembic: the line below says what it means here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackingSetupError(
            f"could not set up MLflow experiment {cfg.mlflow.experiment!r} in {uri}: {first[:300]}; check that "
            "mlflow.tracking_uri points at a store this MLflow can reach and open (a sqlite file: writable), "
            "then rerun") from e


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, parent_run_id: str | None = None,
              pipeline_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run for one stage; FAILED (not left RUNNING) when the stage raises."""
    experiment_id = setup(cfg)
    tags = {STAGE_TAG: stage, "lakerec.profile": cfg.profile, GIT_COMMIT_TAG: git_commit()}
    if pipeline_run_id:
        tags[PIPELINE_RUN_TAG] = pipeline_run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags,
                          parent_run_id=parent_run_id, nested=parent_run_id is not None) as run:
        with _open(run):
            yield run


@contextlib.contextmanager
def pipeline_run(cfg: Config, pipeline: str, resume_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """The parent run of a pipeline run: new, or reopened to resume it (FAILED again if it fails again)."""
    if resume_run_id is None:
        with stage_run(cfg, f"pipeline:{pipeline}") as run:
            yield run
        return
    setup(cfg)
    with mlflow.start_run(run_id=resume_run_id) as run:
        with _open(run):
            yield run


_OPEN_RUNS: list[str] = []  # this process's runs in progress, innermost last: what SIGTERM must mark FAILED


@contextlib.contextmanager
def _open(run: mlflow.ActiveRun) -> Iterator[None]:
    _OPEN_RUNS.append(run.info.run_id)
    try:
        yield
    finally:
        _OPEN_RUNS.remove(run.info.run_id)


def fail_runs_on_sigterm() -> None:
    """On SIGTERM (a scheduler's kill, an evicted pod) mark this process's open runs FAILED, then exit 143.

    The work happens on a thread: the handler itself runs on top of the main thread, which may be inside an MLflow
    store transaction, so writing from the handler could wait forever for the lock its own thread holds; and an
    exception raised there can be swallowed while the main thread sits in a Py4J call. The thread waits for the
    store, marks the runs, and leaves with os._exit. Delta commits are atomic, so the lake stays at its previous
    version; the Spark JVM exits when its parent's pipe closes.
    """
    def mark_and_exit():
        client = MlflowClient()
        runs = list(reversed(_OPEN_RUNS))
        runs += [r for r in _running_children(client, runs) if r not in runs]  # a stage run not yet registered
        for run_id in runs:
            client.set_tag(run_id, "lakerec.failure", "terminated by SIGTERM")
            client.set_terminated(run_id, status="FAILED")
        sys.stderr.write(f"lakerec: SIGTERM: marked {len(runs)} MLflow run(s) FAILED; exiting\n")
        sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)

    def handler(signum, frame):
        threading.Thread(target=mark_and_exit, name="lakerec-sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)


def _running_children(client: MlflowClient, run_ids: list[str]) -> list[str]:
    """RUNNING runs tagged with one of these as their pipeline run (stage runs of an open pipeline run)."""
    found = []
    for run_id in run_ids:
        experiment_id = client.get_run(run_id).info.experiment_id
        found += [r.info.run_id for r in client.search_runs(
            [experiment_id], f"tags.`{PIPELINE_RUN_TAG}` = '{run_id}' and attributes.status = 'RUNNING'")]
    return found


def log_table_versions(reads: dict[str, int], writes: dict[str, int]) -> None:
    """Lineage: which Delta table versions this stage read and wrote (params, so they are searchable)."""
    mlflow.log_params({**{f"read.{t}": v for t, v in reads.items()}, **{f"wrote.{t}": v for t, v in writes.items()}})


def log_artifacts(artifacts: Mapping[str, Figure | str]) -> None:
    """To the active run, by artifact path: a figure as an image, a string as a text file (CSV, Markdown).
    Evaluation code returns these; only the job logs them."""
    for path, content in artifacts.items():
        if isinstance(content, str):
            mlflow.log_text(content, path)
        else:
            mlflow.log_figure(content, path)


def parent_run_id_from_env() -> str | None:
    """A scheduler that runs stages as separate processes passes the pipeline run here."""
    return os.environ.get("LAKEREC_PARENT_RUN_ID") or None
