"""The score stage with real Spark, Delta, a real MLflow registry and a real concurrent reader process: gold.topn
complete with lineage, pinned versions, atomic publishing, a failed run publishing nothing, retention, bad input."""
import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs import score as score_job
from lakerec import tables as T, tracking
from lakerec.context import run_stage
from lakerec.lake import Lake
from lakerec.models.registry import RegistryError, log_model
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.score.batch import REASON_HISTORY, REASON_POPULAR, ScoringInputError
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

N_USERS, N_ITEMS = 30, 20
ITEM_IDS = [f"i{i:03d}" for i in range(N_ITEMS)]

# The reader ends with os._exit(0) once its last line is flushed: a normal interpreter exit runs the C++ static
# destructors of deltalake/pyarrow while their native worker threads may still be alive, and a std::thread
# destroyed while joinable calls std::terminate ("terminate called without an active exception", SIGABRT; seen
# once in CI, and reported for delta-rs at exit). The reader has nothing left to release, so it skips that teardown.
READER = """
import json, os, select, sys
import pyarrow.compute as pc
from deltalake import DeltaTable

def read():
    table = DeltaTable(sys.argv[1])
    data = table.to_pyarrow_table(columns=["user_id", "run_id"])
    print(json.dumps({"version": table.version(), "rows": data.num_rows, "users": len(pc.unique(data["user_id"])),
                      "runs": pc.unique(data["run_id"]).to_pylist()}), flush=True)

read()  # the first read tells the test the reader is up
while not select.select([sys.stdin], [], [], 0)[0]:  # as fast as it can, until the test writes a line
    read()
read()  # after the writes
sys.stdout.flush()
os._exit(0)
"""


@pytest.fixture
def lake_and_model(spark, make_cfg):
    """silver.events of N_USERS ring walks plus one user of unknown items, and a registered untrained SASRec."""
    with own_mlflow_store():
        cfg = make_cfg("score.top_n=4")
        lake = Lake(cfg.lake.root, spark)
        histories = sequential_histories(N_USERS, N_ITEMS, 6, seed=1) | {"stranger": ["zz1", "zz2"]}
        write_silver(spark, lake, event_rows(histories), ITEM_IDS)
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=cfg.sequences.max_len, dim=8, layers=1, heads=1))
        with tracking.stage_run(cfg, "train"):
            _, version, _ = log_model(model.eval(), ITEM_IDS, cfg.mlflow.registered_model)
        yield cfg, lake, histories, version


def _score(cfg, spark, **score):
    cfg = cfg.model_copy(update={"score": cfg.score.model_copy(update=score)})
    return run_stage("score", score_job.run, cfg, spark)


def test_every_user_gets_n_rows_with_reasons_and_lineage(spark, lake_and_model):
    cfg, lake, histories, version = lake_and_model
    result = _score(cfg, spark)
    topn = lake.read(T.GOLD_TOPN).toPandas()
    assert result.metrics["users_scored"] == N_USERS + 1 and result.metrics["users_cold"] == 1
    assert len(topn) == (N_USERS + 1) * 4 == result.metrics["rows"]
    for user, rows in topn.groupby(T.USER_ID):
        assert sorted(rows[T.RANK]) == [1, 2, 3, 4]
        assert not set(rows[T.ITEM_ID]) & set(histories[user])
        if user == "stranger":
            assert (rows[T.REASON_KIND] == REASON_POPULAR).all() and rows[T.REASON_ITEM_ID].isna().all()
        else:
            assert (rows[T.REASON_KIND] == REASON_HISTORY).all()
            assert set(rows[T.REASON_ITEM_ID]) <= set(histories[user])
    assert set(topn[T.MODEL_NAME]) == {cfg.mlflow.registered_model} and set(topn[T.MODEL_VERSION]) == {version}
    assert set(topn[T.RUN_ID]) == {result.run_id} and set(topn[T.SILVER_VERSION]) == {lake.version(T.SILVER_EVENTS)}
    assert MlflowClient().get_run(result.run_id).data.tags["lakerec.model_chosen_by"] == "latest"


def test_bf16_precision_publishes_the_fp32_table(spark, lake_and_model):
    """score.precision=bf16 end to end: gold.topn holds the rows fp32 scoring publishes, scores to the bit."""
    cfg, lake, _, _ = lake_and_model
    lineage = [T.RUN_ID, T.GENERATED_AT]
    fp32 = _score(cfg, spark)
    exact = lake.read(T.GOLD_TOPN).toPandas().drop(columns=lineage).sort_values([T.USER_ID, T.RANK])
    bf16 = _score(cfg, spark, precision="bf16", shortlist=5)  # 14 allowed items a user: more than the shortlist
    cheap = lake.read(T.GOLD_TOPN).toPandas().drop(columns=lineage).sort_values([T.USER_ID, T.RANK])
    pd.testing.assert_frame_equal(cheap.reset_index(drop=True), exact.reset_index(drop=True))
    assert "users_bf16_shortlist" not in fp32.metrics
    assert bf16.metrics["users_bf16_shortlist"] > 0
    assert bf16.metrics["users_bf16_shortlist"] + bf16.metrics["users_fp32_fallback"] == N_USERS  # the stranger: cold


def test_model_alias_and_silver_version_are_pinned(spark, lake_and_model):
    cfg, lake, _, version = lake_and_model
    MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion", version)
    first = lake.version(T.SILVER_EVENTS)
    lake.write(T.SILVER_EVENTS, spark.createDataFrame(event_rows({"newcomer": ["i001", "i002"]}),
                                                      lake.read(T.SILVER_EVENTS).schema))
    result = _score(cfg, spark, model_alias="champion", silver_version=first)
    topn = lake.read(T.GOLD_TOPN).toPandas()
    assert "newcomer" not in set(topn[T.USER_ID]) and set(topn[T.SILVER_VERSION]) == {first}
    assert MlflowClient().get_run(result.run_id).data.tags["lakerec.model_chosen_by"] == "alias"
    _score(cfg, spark)
    assert "newcomer" in set(lake.read(T.GOLD_TOPN).toPandas()[T.USER_ID])


@pytest.mark.slow
def test_a_concurrent_reader_sees_only_complete_versions(spark, lake_and_model):
    cfg, lake, _, _ = lake_and_model
    _score(cfg, spark)
    reader = subprocess.Popen([sys.executable, "-c", READER, lake.uri(T.GOLD_TOPN)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = json.loads(reader.stdout.readline())  # the reader is up and has read a version
    _score(cfg, spark)
    _score(cfg, spark)
    out, _ = reader.communicate("stop\n", timeout=120)
    reads = [first] + [json.loads(line) for line in out.splitlines()]
    assert reader.returncode == 0 and len(reads) >= 3
    versions = [r["version"] for r in reads]
    assert versions == sorted(versions) and versions[-1] == lake.version(T.GOLD_TOPN) > versions[0]
    for r in reads:  # never a mix of two runs, never a part of one
        assert r["rows"] == (N_USERS + 1) * 4 and r["users"] == N_USERS + 1 and len(r["runs"]) == 1, r


def test_a_failed_run_publishes_nothing(spark, lake_and_model, monkeypatch):
    cfg, lake, _, _ = lake_and_model
    _score(cfg, spark)
    version, before = lake.version(T.GOLD_TOPN), lake.read(T.GOLD_TOPN).toPandas()
    real = score_job.score_users

    def dies_midway(*args, **kwargs):
        """A task lost while others have written their files (an executor dying cannot be staged here for real)."""
        out = real(*args, **kwargs)

        def fail_on_stranger(batches):
            for pdf in batches:
                if (pdf[T.USER_ID] == "stranger").any():
                    raise RuntimeError("task lost")
                yield pdf
        return out.repartition(4).mapInPandas(fail_on_stranger, out.schema)

    monkeypatch.setattr(score_job, "score_users", dies_midway)
    with pytest.raises(Exception, match="task lost"):
        _score(cfg, spark)
    assert lake.version(T.GOLD_TOPN) == version
    after = lake.read(T.GOLD_TOPN).toPandas()
    assert after.sort_values([T.USER_ID, T.RANK]).reset_index(drop=True).equals(
        before.sort_values([T.USER_ID, T.RANK]).reset_index(drop=True))
    last = MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                                      order_by=["start_time DESC"], max_results=1)[0]
    assert last.info.run_name == "score" and last.info.status == "FAILED"


def test_old_versions_stay_for_the_retention_then_are_vacuumed(spark, lake_and_model):
    cfg, lake, _, _ = lake_and_model
    _score(cfg, spark)
    first, rows = lake.version(T.GOLD_TOPN), (N_USERS + 1) * 4
    _score(cfg, spark)
    assert lake.read(T.GOLD_TOPN, first).count() == rows  # within the default retention: time travel works
    result = _score(cfg, spark, retention_hours=0)
    assert result.metrics["files_vacuumed"] > 0
    with pytest.raises(Exception):
        lake.read(T.GOLD_TOPN, first).count()
    assert lake.read(T.GOLD_TOPN).count() == rows


@pytest.mark.parametrize("setting, error, message", [
    ({"model_version": 99}, RegistryError, "no version 99"),
    ({"model_alias": "nonesuch"}, RegistryError, "no alias 'nonesuch'"),
    ({"candidates": {"exclude_items": ITEM_IDS}}, ScoringInputError, "empty candidate set"),
])
def test_bad_input_fails_before_any_write(spark, lake_and_model, setting, error, message):
    cfg, lake, _, _ = lake_and_model
    if "candidates" in setting:
        setting = {"candidates": cfg.score.candidates.model_copy(update=setting["candidates"])}
    with pytest.raises(error, match=message):
        _score(cfg, spark, **setting)
    assert not lake.exists(T.GOLD_TOPN)


def test_a_model_that_knows_none_of_the_items_is_refused(spark, lake_and_model):
    cfg, lake, _, _ = lake_and_model
    strangers = event_rows({f"s{u}": ["x1", "x2"] for u in range(3)})
    lake.write(T.SILVER_EVENTS, spark.createDataFrame(strangers, lake.read(T.SILVER_EVENTS).schema), mode="overwrite")
    with pytest.raises(ScoringInputError, match="disagree on item ids"):
        _score(cfg, spark)
    assert not lake.exists(T.GOLD_TOPN)


def test_a_text_aware_model_recommends_new_catalog_items_with_reasons(spark, make_cfg):
    """An item added to the catalog after training (only its text embedding exists) can reach gold.topn."""
    from datetime import datetime

    from lakerec.text.embeddings import EMBEDDING_SCHEMA

    with own_mlflow_store():
        cfg = make_cfg("score.top_n=4")
        lake = Lake(cfg.lake.root, spark)
        histories = sequential_histories(N_USERS, N_ITEMS, 6, seed=1)
        write_silver(spark, lake, event_rows(histories), ITEM_IDS)
        torch.manual_seed(0)
        text = torch.nn.functional.normalize(torch.randn(N_ITEMS + 2, 8), dim=1)  # the last row: the new item
        model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=cfg.sequences.max_len, dim=8, layers=1, heads=1,
                                    text_dim=8, text_encoder="enc"))
        model.set_item_text(text[: N_ITEMS + 1])
        with tracking.stage_run(cfg, "train"):
            log_model(model.eval(), ITEM_IDS, cfg.mlflow.registered_model)
        now = datetime(2026, 11, 2)
        rows = [(item, "enc", f"h{k}", 8, text[k + 1].tolist(), now) for k, item in enumerate(ITEM_IDS)]
        rows.append(("brand-new", "enc", "hn", 8, text[N_ITEMS + 1].tolist(), now))
        lake.write(T.SILVER_ITEM_EMBEDDINGS, spark.createDataFrame(rows, EMBEDDING_SCHEMA))
        # only the new item and three old ones are candidates, so the new one must appear for every user
        blocked = [i for i in ITEM_IDS if i not in ("i000", "i001", "i002")]
        cfg = cfg.model_copy(update={"score": cfg.score.model_copy(
            update={"exclude_event_types": [], "candidates": cfg.score.candidates.model_copy(update={"exclude_items": blocked})})})
        result = run_stage("score", score_job.run, cfg, spark)
        topn = lake.read(T.GOLD_TOPN).toPandas()
    assert result.metrics["candidates_text_only"] == 1 and result.metrics["candidates"] == 4
    new = topn[topn[T.ITEM_ID] == "brand-new"]
    assert len(new) == N_USERS and (new[T.REASON_KIND] == REASON_HISTORY).all()
    assert all(row[T.REASON_ITEM_ID] in histories[row[T.USER_ID]] for _, row in new.iterrows())


def test_the_recent_prior_keys_the_published_table_only_while_on(make_cfg):
    """refresh.skip_done compares settings keys: a prior that is off must key as a table scored before it existed
    (no needless rewrite), and its weight and window must key once it is on."""
    cfg = make_cfg()

    def key(**score):
        return score_job.settings_key(cfg.model_copy(update={"score": cfg.score.model_copy(update=score)}))

    assert key(recent_days=30) == key()  # off: the window changes nothing
    assert key(recent_weight=1.0) != key() and key(recent_weight=1.0, recent_days=30) != key(recent_weight=1.0)
