"""The pipeline definition: a valid DAG whose every stage has a job module with run()."""
import importlib

import pytest
from pydantic import ValidationError

from lakerec.pipeline import Pipeline, load_pipeline


def test_shipped_pipeline_is_ordered_and_every_job_exists():
    p = load_pipeline()
    order = [s.name for s in p.order()]
    for s in p.stages:
        for dep in s.depends_on:
            assert order.index(dep) < order.index(s.name)
        assert callable(importlib.import_module(f"jobs.{s.job}").run)
    assert order[0] == "generate" and order[-1] in ("evaluate", "score")


def test_cycle_is_rejected():
    with pytest.raises(ValidationError, match="cycle"):
        Pipeline.model_validate({"name": "x", "stages": [
            {"name": "a", "job": "a", "depends_on": ["b"]}, {"name": "b", "job": "b", "depends_on": ["a"]}]})


def test_unknown_dependency_is_rejected():
    with pytest.raises(ValidationError, match="unknown stage"):
        Pipeline.model_validate({"name": "x", "stages": [{"name": "a", "job": "a", "depends_on": ["zz"]}]})


def test_the_refresh_set_chains_its_stages_in_order_with_its_overrides_and_cron():
    full = load_pipeline()
    refresh = full.subset("refresh")
    assert [(s.name, s.depends_on) for s in refresh.order()] == [
        ("ingest", []), ("silver", ["ingest"]), ("sequences", ["silver"]), ("train", ["sequences"]),
        ("evaluate", ["train"]), ("score", ["evaluate"])]  # score after evaluate: it serves the champion
    assert refresh.name == "lakerec_refresh" and refresh.schedule.cron != full.schedule.cron
    assert refresh.schedule.set[: len(full.schedule.set)] == full.schedule.set
    assert {"refresh.skip_done=true", "train.init=champion"} <= set(refresh.schedule.set)
    assert refresh.stage("ingest").daily == full.stage("ingest").daily  # the day's drop folder


@pytest.mark.parametrize("stages, message", [
    (["silver", "nowhere"], "unknown stage"),
    (["b", "a"], "lists 'b' before \\['a'\\]"),
])
def test_a_stage_set_naming_unknown_stages_or_out_of_order_is_rejected(stages, message):
    with pytest.raises(ValidationError, match=message):
        Pipeline.model_validate({"name": "x", "sets": {"s": {"stages": stages}}, "stages": [
            {"name": "a", "job": "a"}, {"name": "b", "job": "b", "depends_on": ["a"]},
            {"name": "silver", "job": "silver"}]})
