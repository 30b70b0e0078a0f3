"""The whole pipeline on tiny demo data, through the real CLI, real Spark, Delta, Horovod ranks and MLflow."""
from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from jobs.cli import main
from lakerec import tables as T
from lakerec.config import load_config
from lakerec.lake import Lake
from lakerec.pipeline import load_pipeline
from tests.lake.readers import check_readable, lake_tables, plain_read

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "lake"
    result = CliRunner().invoke(main, ["run", "--profile", "test", "--set", f"lake.root={root}"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root, result.output


def test_summary_names_tables_metrics_and_where_to_look(pipeline_run):
    root, out = pipeline_run
    for stage in load_pipeline().stages:
        assert f"[{stage.name}]" in out
    assert T.GOLD_TOPN in out and "lakerec ui" in out and str(root) in out
    assert "test.sasrec.ndcg_10=" in out and "test.als.ndcg_10=" in out
    assert "repeat_target_share=" in out  # the demo has repeat visits: a repeated target is a miss, say how many


def test_every_raw_line_is_accounted_for(pipeline_run, spark):
    root, _ = pipeline_run
    lake = Lake(str(root), spark)
    raw_lines = sum(sum(1 for _ in p.open()) for p in Path(root, "raw", "events").glob("*.jsonl"))
    quarantined = lake.read(T.BRONZE_QUARANTINE).where(F.col(T.SOURCE) == "events").count()
    assert raw_lines == lake.read(T.BRONZE_EVENTS).count() + quarantined
    assert quarantined > 0  # the demo data carries dirt


def test_every_user_gets_n_ranked_unseen_items(pipeline_run, spark, cfg):
    root, _ = pipeline_run
    lake = Lake(str(root), spark)
    topn = lake.read(T.GOLD_TOPN)
    n = cfg.score.top_n
    users = lake.read(T.SILVER_EVENTS).select(T.USER_ID).distinct()
    assert topn.select(T.USER_ID).distinct().count() == users.count()
    per_user = topn.groupBy(T.USER_ID).agg(F.count("*").alias("n"), F.collect_set(T.RANK).alias("ranks")).collect()
    assert all(r["n"] == n and sorted(r["ranks"]) == list(range(1, n + 1)) for r in per_user)
    seen = lake.read(T.SILVER_EVENTS).select(T.USER_ID, T.ITEM_ID).distinct()
    assert topn.join(seen, [T.USER_ID, T.ITEM_ID]).count() == 0
    reasons = topn.where(F.col(T.REASON_KIND) == "history").select(T.USER_ID, F.col(T.REASON_ITEM_ID).alias(T.ITEM_ID))
    assert reasons.count() > 0 and reasons.join(seen, [T.USER_ID, T.ITEM_ID], "left_anti").count() == 0
    assert {r[0] for r in topn.select(T.REASON_KIND).distinct().collect()} <= {"history", "popular"}
    row = topn.first()
    assert row[T.MODEL_VERSION] and row[T.RUN_ID] and row[T.SILVER_VERSION] == lake.version(T.SILVER_EVENTS)
    assert DeltaTable(lake.uri(T.GOLD_TOPN)).version() == lake.version(T.GOLD_TOPN)  # plain delta-rs reads it


def test_every_table_reads_with_plain_deltalake_and_spark(pipeline_run, spark):
    root, _ = pipeline_run
    lake = Lake(str(root), spark)
    tables = lake_tables(root)
    named = {v for k, v in vars(T).items() if k.isupper() and str(v).split(".")[0] in ("bronze", "silver", "gold")}
    # every table of lakerec.tables was written by the pipeline, but the two a clean first run has no cause to
    # write: bronze.rejected_files (read the same ways in tests/etl/test_ingest_files.py) and silver.warm_windows
    # (written by a refresh: tests/integration/test_refresh.py)
    assert named - {T.BRONZE_REJECTED_FILES, T.SILVER_WARM_WINDOWS} <= set(tables)
    counts = check_readable(lake, tables)
    assert plain_read(lake, tables) == {t: [n, n] for t, n in counts.items()}


def test_mlflow_has_a_parent_run_and_a_child_per_stage_with_lineage(pipeline_run, cfg, spark):
    root, _ = pipeline_run
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("pipeline:")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(children) == {s.name for s in load_pipeline().stages}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert {r.data.tags["lakerec.git_commit"] for r in children.values()} == {head.stdout.strip() or "unknown"}
    assert children["score"].data.params[f"wrote.{T.GOLD_TOPN}"] == str(Lake(str(root), spark).version(T.GOLD_TOPN))
    assert children["silver"].data.params[f"read.{T.BRONZE_EVENTS}"] == "0"
    assert f"read.{T.SILVER_SEQUENCES}" in children["train"].data.params
    assert {"test.sasrec.ndcg_10", "test.pop.ndcg_10", "test.cooc.ndcg_10", "test.als.ndcg_10",
            "test.sasrec.slice.len_0-9.ndcg_10"} <= set(children["evaluate"].data.metrics)
    versions = client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")
    assert len(versions) == 1
    champion = client.get_model_version_by_alias(cfg.mlflow.registered_model, cfg.evaluate.champion_alias)
    assert str(champion.version) == str(versions[0].version)  # the first version evaluated becomes the champion


@pytest.mark.parametrize("notebook, expected", [
    ("review_run.ipynb", ["top-N", "champion: version 1"]),
    ("quality_report.ipynb", ["rows in", "runs in the report"]),
    ("user_recommendations.ipynb", ["reason kinds", "because you interacted with", "cold users get"]),
])
def test_notebook_runs_against_the_pipeline_lake(pipeline_run, monkeypatch, notebook, expected):
    """Executes a notebook in a real kernel against the lake the pipeline just made."""
    import nbformat
    from nbclient import NotebookClient

    root, _ = pipeline_run
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("LAKEREC_PROFILE", "test")
    monkeypatch.setenv("LAKEREC_LAKE_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # exported by mlflow in this process: not the kernel's
    nb = nbformat.read(repo / "notebooks" / notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert all(text in printed for text in expected), printed[-2000:]


def test_the_recent_prior_moves_lists_towards_recent_items_and_off_restores_them(pipeline_run, spark):
    """`lakerec score` with score.recent_weight: the items most users touched in silver's last score.recent_days
    climb into more lists; weight 0 writes the original lists again (scoring is deterministic). Runs last: it
    rewrites gold.topn twice."""
    root, _ = pipeline_run
    lake = Lake(str(root), spark)

    def lists():
        rows = lake.read(T.GOLD_TOPN).where(F.col(T.REASON_KIND) == "history").select(T.USER_ID, T.RANK, T.ITEM_ID)
        return sorted(tuple(r) for r in rows.collect())

    def score(weight: float) -> None:
        result = CliRunner().invoke(main, ["score", "--profile", "test", "--set", f"lake.root={root}",
                                           "--set", f"score.recent_weight={weight}"], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    days = load_config("test", [f"lake.root={root}"]).score.recent_days
    events = lake.read(T.SILVER_EVENTS)
    newest = events.agg(F.max(T.TS)).first()[0]
    recent = (events.where(F.col(T.TS) > F.lit(newest - timedelta(days=days)))
              .groupBy(T.ITEM_ID).agg(F.countDistinct(T.USER_ID).alias("n")).orderBy(F.desc("n"), T.ITEM_ID)
              .limit(3).collect())
    hot = {r[T.ITEM_ID] for r in recent}
    plain = lists()
    score(3.0)
    boosted = lists()
    assert sum(item in hot for *_, item in boosted) > sum(item in hot for *_, item in plain)
    score(0.0)
    assert lists() == plain
