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
