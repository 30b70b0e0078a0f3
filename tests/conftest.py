"""One Spark session for the whole suite (local[2], UTC, 2 shuffle partitions) and config factories."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakerec.config import Config, load_config
from lakerec.spark import get_spark

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
ML100K = Path(os.environ.get("LAKEREC_ML100K", REPO.parent / "shared" / "data" / "ml-100k"))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    base = tmp_path_factory.mktemp("spark")
    # One JVM serves the whole suite (several hundred Spark jobs, 500 fuzz drops): Spark's default 1 GB heap ran
    # close to full there (a full GC seen at the fuzz tests), and in local mode an OutOfMemoryError in a task
    # ends the JVM and fails every later test. The machine has 24 GB.
    cfg = load_config("test", [f"lake.root={base}", "spark.extra={'spark.driver.memory': '3g'}"], conf_dir=CONF_DIR)
    session = get_spark(cfg)
    assert session.sparkContext.getConf().get("spark.driver.memory") == "3g"
    yield session
    session.stop()


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg("a.b=1", ...) -> the test profile with its lake (and MLflow store) in this test's tmp_path."""

    def make(*overrides: str, profile: str = "test", config_files: tuple[str, ...] = ()) -> Config:
        return load_config(profile, [f"lake.root={tmp_path / 'lake'}", *overrides], config_files, conf_dir=CONF_DIR)

    return make


@pytest.fixture
def cfg(make_cfg) -> Config:
    return make_cfg()


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (licensed data, never in the repo; set LAKEREC_ML100K)")
    return ML100K
