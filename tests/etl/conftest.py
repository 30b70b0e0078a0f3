"""ETL fixtures: a test-profile config whose demo days lie in the recent past, a way to run a job's `run(ctx)`
on a real Lake without the MLflow wrapper (run_stage is the lead's and tested with the pipeline), and one demo
lake built through generate -> ingest -> items -> silver, shared by the ETL tests (read-only)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from lakerec.config import Config, load_config
from lakerec.context import StageContext, StageResult
from lakerec.lake import Lake
from tests.conftest import CONF_DIR


def etl_cfg(root: Path, *overrides: str, config_files: tuple[str, ...] = ()) -> Config:
    """The test profile with its lake at `root`; the demo starts ten days ago, so no clean event lies beyond
    the ingest time's future window whatever today's date is."""
    start = (date.today() - timedelta(days=10)).isoformat()
    return load_config("test", [f"lake.root={root}", f"demo.start='{start}'", *overrides], config_files,
                       conf_dir=CONF_DIR)


def run_job(job, cfg: Config, spark, lake: Lake | None = None) -> StageResult:
    lake = lake or Lake(cfg.lake.root, spark, cfg.lake.engine)
    return job.run(StageContext(cfg, spark, lake, job.__name__.rsplit(".", 1)[-1], "test-run"))


@dataclass
class DemoLake:
    cfg: Config
    lake: Lake
    results: dict[str, StageResult]


@pytest.fixture(scope="session")
def demo_lake(spark, tmp_path_factory) -> DemoLake:
    import jobs.generate
    import jobs.ingest
    import jobs.items
    import jobs.silver

    cfg = etl_cfg(tmp_path_factory.mktemp("demo") / "lake")
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    results = {}
    for job in (jobs.generate, jobs.ingest, jobs.items, jobs.silver):
        results[job.__name__.split(".")[-1]] = run_job(job, cfg, spark, lake)
    return DemoLake(cfg, lake, results)
