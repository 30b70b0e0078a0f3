"""Benchmark scripts import their neighbours (measure.py, movielens.py): load them with benchmarks/ on sys.path."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_script(monkeypatch):
    """A function importing benchmarks/<name>.py as a module, benchmarks/ on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module
