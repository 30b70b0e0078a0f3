"""`lakerec refresh` as a new user runs it, through the real CLI, Spark, Delta, Horovod ranks and MLflow: after
`lakerec run`, a new day's drop with new items; a refresh killed at evaluate leaves the champion and gold.topn as
they were, its rerun completes (warm-started from the champion, the new items in gold.topn), and a rerun of the
day writes nothing."""
from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from jobs.cli import main
from lakerec import tables as T
from lakerec.context import FAIL_STAGE_ENV
from lakerec.lake import Lake
from lakerec.models import build_model
from lakerec.models.registry import load_model
from lakerec.train.loop import parameter_checksum
from lakerec.train.warm import INIT_TAG, PARENT_TAG, grown_state
from tests.data.helpers import own_mlflow_store

pytestmark = pytest.mark.slow
NEW_ITEMS = ["new-001", "new-002", "new-003", "new-004", "new-005"]
TABLES = (T.BRONZE_EVENTS, T.SILVER_EVENTS, T.SILVER_ITEM_INDEX, T.SILVER_SEQUENCES, T.SILVER_TRAIN_WINDOWS,
          T.SILVER_WARM_WINDOWS, T.GOLD_TOPN)


def cli(root, *args, env=None):
    """A failing command's exception is kept in the result (exit code 1), as a scheduler would see it."""
    return CliRunner().invoke(main, [*args, "--profile", "test", "--set", f"lake.root={root}",
                                     "--set", "evaluate.baselines=[pop]", "--set", "train.epochs=30",
                                     "--set", "train.warmup_steps=0", "--set", "train.lr=0.01"],
                              env=env, catch_exceptions=env is not None)


def drop_new_day(root, lake: Lake) -> None:
    """On 2026-11-03 every demo user (not the bots) walks four steps of the ring of five new items from a start of
    their own: each step of the ring is a training transition of some users and the test target of others, and
    the fifth item, unseen by the user, is what the refreshed model should recommend."""
    users = sorted(r[0] for r in lake.read(T.BRONZE_EVENTS).where(~F.col(T.USER_AGENT).rlike("(?i)bot"))
                   .where(F.col(T.USER_ID).isNotNull()).select(T.USER_ID).distinct().collect())
    n = len(NEW_ITEMS)
    lines = [json.dumps({"event_id": f"d3-{u}-{k}", "user_id": u, "item_id": NEW_ITEMS[(i + k) % n],
                         "event_type": "view", "ts": f"2026-11-03T10:{k:02d}:00Z", "user_agent": "Mozilla/5.0"})
             for i, u in enumerate(users) for k in range(n - 1)]
    (root / "raw" / "events" / "2026-11-03.jsonl").write_text("\n".join(lines) + "\n")


def state(lake: Lake, name: str):
    client = MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    return {t: lake.version(t) for t in TABLES if lake.exists(t)}, versions, champion


def test_a_new_day_refreshes_warm_from_the_champion_idempotently(spark, tmp_path):
    root = tmp_path / "lake"
    with own_mlflow_store():
        first = cli(root, "run")
        assert first.exit_code == 0, first.output
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        lake = Lake(str(root), spark)
        name = "lakerec-model"
        before = state(lake, name)
        assert before[1:] == ([1], "1")

        drop_new_day(root, lake)
        killed = cli(root, "refresh", env={FAIL_STAGE_ENV: "evaluate"})
        assert killed.exit_code != 0 and "[evaluate] FAILED" in killed.output
        tables, versions, champion = state(lake, name)
        assert champion == "1" and tables[T.GOLD_TOPN] == before[0][T.GOLD_TOPN] and versions == [1, 2]

        done = cli(root, "refresh")
        assert done.exit_code == 0, done.output
        assert "[train] skipped: lakerec-model v2 was already trained on these inputs" in done.output
        tables, versions, champion = state(lake, name)
        assert versions == [1, 2] and champion == "2"  # v1 cannot rank the new items the day's users went to

        v1, meta1 = load_model((name, "1"))
        v2, meta2 = load_model((name, "2"))
        assert meta2["item_ids"][: len(meta1["item_ids"])] == meta1["item_ids"]  # old ids kept, new appended
        assert set(meta2["item_ids"][len(meta1["item_ids"]):]) == set(NEW_ITEMS)
        tags = meta2["tags"]
        assert tags[PARENT_TAG] == "1" and tags[INIT_TAG] == "champion"
        for table in (T.SILVER_SEQUENCES, T.SILVER_ITEM_INDEX):
            assert tags[f"parent.read.{table}"] == meta1["tags"][f"read.{table}"] != tags[f"read.{table}"]
        assert tags[f"read.{T.SILVER_WARM_WINDOWS}"] == str(lake.version(T.SILVER_WARM_WINDOWS))
        warm_start = build_model(v2.config)
        warm_start.load_state_dict(grown_state(v1, v2.config))
        train_run = MlflowClient().get_run(meta2["run_id"])  # the ranks started from exactly these weights
        assert train_run.data.tags["lakerec.init_checksum"] == parameter_checksum(warm_start)
        assert train_run.data.params["epochs"] == "30" and train_run.data.metrics["warm_new_windows"] > 0

        topn = lake.read(T.GOLD_TOPN)
        assert {r[0] for r in topn.select(T.MODEL_VERSION).distinct().collect()} == {"2"}
        assert topn.where(F.col(T.ITEM_ID).isin(NEW_ITEMS)).count() > 0

        again = cli(root, "refresh")  # the same day once more: every stage skips, nothing is written
        assert again.exit_code == 0, again.output
        assert "lakerec refresh: nothing new" in again.output
        assert state(lake, name) == (tables, versions, champion)
