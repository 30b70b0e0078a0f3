"""`lakerec`: run the whole pipeline (`lakerec run`), one stage (`lakerec <stage>`), or open the MLflow UI."""
from __future__ import annotations

import importlib
import os
import sys
import time

import click
import mlflow

from jobs.common import build_config, config_options, print_result, stage_command
from lakerec import tracking
from lakerec.context import StageResult, run_stage
from lakerec.pipeline import load_pipeline
from lakerec.spark import get_spark
from lakerec.summary import pipeline_summary


def _job(name: str):
    return importlib.import_module(f"jobs.{name}")


class LakerecCLI(click.Group):
    """Stage commands come from the pipeline definition, so a new stage needs no CLI edit."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | {s.name for s in load_pipeline().stages})

    def get_command(self, ctx, name):
        if name in super().list_commands(ctx):
            return super().get_command(ctx, name)
        try:
            stage = load_pipeline().stage(name)
        except KeyError:
            return None
        job = _job(stage.job)
        return stage_command(stage.name, job.run, (job.__doc__ or stage.doc).strip(), getattr(job, "OPTIONS", ()))


@click.group(cls=LakerecCLI)
def main():
    """lakerec: raw event logs -> Delta bronze/silver -> Transformer recommender -> top-N lists in gold."""


@main.command(name="run")
@config_options
@click.option("--from", "from_stage", default=None, help="Start at this stage (earlier stages are skipped).")
@click.option("--pipeline", "pipeline_file", default=None, type=click.Path(dir_okay=False),
              help="Pipeline definition (default: pipelines/lakerec.yaml).")
def run_pipeline(profile, config_files, overrides, conf_dir, verbose, from_stage, pipeline_file):
    """Run every stage in dependency order in one Spark session, one MLflow run per stage under a pipeline run."""
    cfg = build_config(profile, config_files, overrides, conf_dir, verbose)
    pipeline = load_pipeline(pipeline_file)
    stages = pipeline.order()
    if from_stage:
        names = [s.name for s in stages]
        if from_stage not in names:
            raise click.UsageError(f"--from {from_stage!r}: stages are {names}")
        stages = stages[names.index(from_stage):]
    spark = get_spark(cfg)
    results: dict[str, StageResult] = {}
    started = time.perf_counter()
    with tracking.stage_run(cfg, f"pipeline:{pipeline.name}") as parent:
        pid = parent.info.run_id
        mlflow.set_tag(tracking.PIPELINE_RUN_TAG, pid)
        click.echo(f"lakerec: pipeline run {pid} (profile {cfg.profile}, lake {os.path.abspath(cfg.lake.root)})")
        for i, stage in enumerate(stages, 1):
            click.echo(f"[{i}/{len(stages)}] {stage.name}: {stage.doc}")
            try:
                results[stage.name] = run_stage(stage.name, _job(stage.job).run, cfg, spark,
                                                parent_run_id=pid, pipeline_run_id=pid)
            except Exception as e:
                click.echo(f"[{stage.name}] FAILED: {type(e).__name__}: {e}", err=True)
                click.echo(f"resume with: lakerec run --from {stage.name} " + _replay_args(profile, config_files, overrides),
                           err=True)
                raise
            print_result(stage.name, results[stage.name])
        mlflow.log_metric("pipeline_seconds", time.perf_counter() - started)
    click.echo(pipeline_summary(cfg, spark, results, time.perf_counter() - started))


def _replay_args(profile, config_files, overrides) -> str:
    return " ".join([f"--profile {profile}", *(f"--config {c}" for c in config_files), *(f"--set {o}" for o in overrides)])


@main.command(name="ui")
@config_options
@click.option("--port", default=5000, show_default=True)
def ui(profile, config_files, overrides, conf_dir, verbose, port):
    """Open the MLflow UI on the configured store."""
    cfg = build_config(profile, config_files, overrides, conf_dir, verbose)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking_uri, "--port", str(port)]
    click.echo(" ".join(cmd))
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
