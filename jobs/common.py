"""What every job entry point shares: the command-line options, config loading and the stage run."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import click

from lakerec import logs, tracking
from lakerec.config import Config, ConfigError, LogConf, load_config
from lakerec.context import EXIT_ATTENTION, StageFn, StageResult, run_stage
from lakerec.spark import get_spark


def config_options(f: Callable) -> Callable:
    """--profile / --config / --set / --conf-dir / --verbose, shared by every command."""
    f = click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
                     help="Log lines as text or one JSON object each (default: log.format, text).")(f)
    f = click.option("--verbose", "-v", is_flag=True,
                     help="lakerec logs at DEBUG, Spark's at WARN, progress bars on (= --set log.verbose=true).")(f)
    f = click.option("--conf-dir", type=click.Path(file_okay=False), default=None,
                     help="Folder with base.yaml and the profiles (default: $LAKEREC_CONF_DIR, else ./conf, else the conf lakerec ships).")(f)
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override one setting, e.g. --set train.epochs=5 (repeatable).")(f)
    f = click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Extra YAML merged over the profile, e.g. conf/sources/movielens.yaml (repeatable).")(f)
    f = click.option("--profile", default="local", show_default=True, help="conf/<profile>.yaml: local, test, cluster.")(f)
    return f


def build_config(profile: str, config_files, overrides, conf_dir, verbose: bool, log_format: str | None = None
                 ) -> Config:
    """Load the config (--verbose and --log-format are log.* overrides) and set up logging from it."""
    flags = [*(["log.verbose=true"] if verbose else []), *([f"log.format={log_format}"] if log_format else [])]
    try:
        cfg = load_config(profile, [*overrides, *flags], config_files, conf_dir)
    except ConfigError as e:
        logs.configure(LogConf(verbose=verbose))
        raise click.UsageError(str(e)) from None
    logs.configure(cfg.log)
    return cfg


@dataclass(frozen=True)
class JobOption:
    """A job's own command-line option, a shorthand for one config key (`--resume` = `--set train.resume=true`).

    Options become config overrides, so a scheduler can pass the same thing with `--set` and the value is
    validated with the rest of the config; a job declares them as `OPTIONS = [JobOption(...)]`.
    """

    flag: str          # e.g. "--rebuild"
    key: str           # e.g. "silver.rebuild"
    help: str
    is_flag: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def decorate(self, f: Callable) -> Callable:
        if self.is_flag:
            return click.option(self.flag, self.dest, is_flag=True, default=False, help=self.help)(f)
        return click.option(self.flag, self.dest, default=None, metavar=self.metavar, help=self.help)(f)

    def override(self, value) -> str | None:
        if self.is_flag:
            return f"{self.key}=true" if value else None
        return None if value is None else f"{self.key}={value}"


def stage_command(stage: str, fn: StageFn, doc: str, options: Sequence[JobOption] = ()) -> click.Command:
    """A click command that runs one stage by itself (its own Spark session and MLflow run)."""

    def command(profile, config_files, overrides, conf_dir, verbose, log_format, **job_options):
        extra = [o.override(job_options[o.dest]) for o in options]
        overrides = (*overrides, *(e for e in extra if e is not None))
        cfg = build_config(profile, config_files, overrides, conf_dir, verbose, log_format)
        tracking.fail_runs_on_sigterm()
        parent = cfg.mlflow.parent_run_id
        result = run_stage(stage, fn, cfg, get_spark(cfg), parent_run_id=parent, pipeline_run_id=parent)
        print_result(stage, result)
        exit_for_attention({stage: result})

    for option in options:
        command = option.decorate(command)
    return click.command(name=stage, help=doc)(config_options(command))


def print_result(stage: str, result: StageResult) -> None:
    click.echo(result.describe(stage))


def exit_for_attention(results: dict[str, StageResult]) -> None:
    """Repeat the lines a person must read (e.g. rejected input files) and exit with EXIT_ATTENTION: the
    work is done and committed, but a scheduler must not take the run for a clean one."""
    lines = [f"[{stage}] {line}" for stage, result in results.items() for line in result.attention]
    if lines:
        for line in lines:
            click.echo(line, err=True)
        sys.exit(EXIT_ATTENTION)


def job_main(stage: str, fn: StageFn, doc: str,
             options: Sequence[JobOption] = ()) -> Callable[[list[str] | None], None]:
    """`main(argv=None)` for a job module: the same under python -m, spark-submit and a scheduler."""

    def main(argv: list[str] | None = None) -> None:
        stage_command(stage, fn, doc, options).main(args=argv, prog_name=f"lakerec {stage}", standalone_mode=True)

    return main
