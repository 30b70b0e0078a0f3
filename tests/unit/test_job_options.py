"""A job's own options are shorthands for config keys: they end up as validated overrides."""
from click.testing import CliRunner

from jobs.common import JobOption, stage_command

REBUILD = JobOption("--rebuild", "silver.rebuild", "Recompute a date range.", metavar="FROM:TO")
RESUME = JobOption("--resume", "train.resume", "Continue from the last checkpoint.", is_flag=True)


def test_value_option_becomes_an_override_only_when_given():
    assert REBUILD.override("2026-11-01:2026-11-03") == "silver.rebuild=2026-11-01:2026-11-03"
    assert REBUILD.override(None) is None


def test_flag_option_becomes_true_only_when_set():
    assert RESUME.override(True) == "train.resume=true"
    assert RESUME.override(False) is None


def test_options_appear_in_the_stage_command_help():
    command = stage_command("demo", lambda ctx: None, "A demo stage.", [REBUILD, RESUME])
    out = CliRunner().invoke(command, ["--help"])
    assert out.exit_code == 0, out.output
    assert "--rebuild FROM:TO" in out.output and "--resume" in out.output and "--profile" in out.output


def test_a_bad_option_value_is_a_usage_error_before_any_work():
    ran = []
    bogus = JobOption("--bogus", "nosuch.key", "A key the config does not know.")
    command = stage_command("demo", lambda ctx: ran.append(ctx), "A demo stage.", [bogus])
    out = CliRunner().invoke(command, ["--profile", "test", "--bogus", "x"])
    assert out.exit_code == 2 and "nosuch" in out.output  # validated with the config: rejected, nothing ran
    assert ran == []
