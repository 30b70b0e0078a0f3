"""`lakerec`: run the whole pipeline (`lakerec run`), one stage (`lakerec <stage>`), search training settings
(`lakerec tune`), or open the MLflow UI."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from jobs.common import build_config, config_options, exit_for_attention, stage_command
from lakerec import runner, tracking
from lakerec.pipeline import load_pipeline
from lakerec.spark import get_spark
from lakerec.summary import pipeline_summary


def _job(name: str):
    return importlib.import_module(f"jobs.{name}")


class LakerecCLI(click.Group):
    """Stage commands come from the pipeline definition, so a new stage needs no CLI edit."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | {s.name for s in load_pipeline().stages} | {"tune"})

    def get_command(self, ctx, name):
        if name in super().list_commands(ctx):
            return super().get_command(ctx, name)
        if name == "tune":  # no pipeline stage: a search over training runs (imported only when asked for)
            return _job("tune").command
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
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None, metavar="[RUN_ID]",
              help="Continue a failed pipeline run (the latest unfinished one, or RUN_ID) from its failed stage.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Retries per stage (default: each stage's retries in the pipeline definition).")
@click.option("--pipeline", "pipeline_file", default=None, type=click.Path(dir_okay=False),
              help="Pipeline definition (default: ./pipelines/lakerec.yaml, else the one lakerec ships).")
def run_pipeline(profile, config_files, overrides, conf_dir, verbose, log_format, from_stage, resume, retries,
                 pipeline_file):
    """Run every stage in dependency order in one Spark session, one MLflow run per stage under a pipeline run."""
    cfg = build_config(profile, config_files, overrides, conf_dir, verbose, log_format)
    pipeline = load_pipeline(pipeline_file)
    if from_stage and from_stage not in [s.name for s in pipeline.stages]:
        raise click.UsageError(f"--from {from_stage!r}: stages are {[s.name for s in pipeline.order()]}")
    try:
        resume_id = runner.resumable_run(cfg, pipeline, None if resume == "latest" else resume) if resume else None
    except runner.ResumeError as e:
        raise click.UsageError(str(e)) from None
    tracking.fail_runs_on_sigterm()
    spark = get_spark(cfg)
    try:
        out = runner.run_pipeline(cfg, pipeline, spark, lambda job: _job(job).run, click.echo, from_stage,
                                  resume_id, retries)
    except Exception:
        click.echo("resume with: lakerec run --resume " + _replay_args(profile, config_files, overrides), err=True)
        raise
    click.echo(pipeline_summary(cfg, spark, out.results, out.seconds))
    exit_for_attention(out.results)


@main.command(name="refresh")
@config_options
@click.option("--pipeline", "pipeline_file", default=None, type=click.Path(dir_okay=False),
              help="Pipeline definition (default: ./pipelines/lakerec.yaml, else the one lakerec ships).")
def refresh(profile, config_files, overrides, conf_dir, verbose, log_format, pipeline_file):
    """The daily refresh (stage set `refresh` of the pipeline definition): the new drop -> silver -> sequences ->
    train warm-started from the champion -> evaluate -> score. A rerun of a day writes nothing; a killed one is
    rerun as it is."""
    full = load_pipeline(pipeline_file)
    try:
        pipeline = full.subset("refresh")
    except KeyError as e:
        raise click.UsageError(str(e)) from None
    cfg = build_config(profile, config_files, [*full.sets["refresh"].set, *overrides], conf_dir, verbose, log_format)
    tracking.fail_runs_on_sigterm()
    spark = get_spark(cfg)
    out = runner.run_pipeline(cfg, pipeline, spark, lambda job: _job(job).run, click.echo)
    if all(r.skipped for r in out.results.values()):
        click.echo(f"lakerec refresh: nothing new ({out.results['silver'].skipped}): the lake, the model registry "
                   "and gold.topn are as they were")
    click.echo(pipeline_summary(cfg, spark, out.results, out.seconds))


def _replay_args(profile, config_files, overrides) -> str:
    return " ".join([f"--profile {profile}", *(f"--config {c}" for c in config_files), *(f"--set {o}" for o in overrides)])


@main.command(name="schedule")
@click.option("--pipeline", "pipeline_file", default=None, type=click.Path(dir_okay=False),
              help="Pipeline definition (default: ./pipelines/lakerec.yaml, else the one lakerec ships).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where the generated files go (default: pipelines/generated next to the definition).")
@click.option("--check", is_flag=True, help="Write nothing; fail if the generated files are out of date.")
def schedule_command(pipeline_file, out_dir, check):
    """Generate the Airflow DAG and the Databricks job from the pipeline definition."""
    from lakerec.pipeline import default_pipeline_file
    from lakerec.schedule import render, stale_files

    pipeline = load_pipeline(pipeline_file)
    out = Path(out_dir) if out_dir else Path(pipeline_file or default_pipeline_file()).parent / "generated"
    if check:
        stale = stale_files(pipeline, out)
        if stale:
            raise click.ClickException(f"out of date in {out}: {stale}; run `lakerec schedule`")
        click.echo(f"{out}: up to date")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render(pipeline).items():
        (out / name).write_text(text)
        click.echo(f"wrote {out / name}")


@main.command(name="ui")
@config_options
@click.option("--port", default=5000, show_default=True)
def ui(profile, config_files, overrides, conf_dir, verbose, log_format, port):
    """Open the MLflow UI on the configured store."""
    cfg = build_config(profile, config_files, overrides, conf_dir, verbose, log_format)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking_uri, "--port", str(port)]
    click.echo(" ".join(cmd))
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
