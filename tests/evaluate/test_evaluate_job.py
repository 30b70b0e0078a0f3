"""The evaluate stage with real Spark, Delta and a real MLflow store: the registered model beside the baselines
(metrics per slice, plots, the tidy CSV) and the champion alias, which moves only to a strictly better version."""
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs import evaluate as evaluate_job
from jobs import sequences as sequences_job
from lakerec import tables as T, tracking
from lakerec.context import run_stage
from lakerec.evaluate.champion import aligned_scores, beats
from lakerec.evaluate.metrics import model_scores
from lakerec.evaluate.stats import per_user_ndcg
from lakerec.lake import Lake
from lakerec.models.registry import log_model
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.train.losses import full_softmax_ce
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

N_USERS, N_ITEMS = 40, 20
ITEM_IDS = [f"i{i:03d}" for i in range(N_ITEMS)]


@pytest.fixture
def isolated():
    with own_mlflow_store():
        yield


def lake_with_sequences(spark, cfg) -> pd.DataFrame:
    """Ring-walk histories (the next item follows from the last) -> silver.sequences; returns its rows."""
    lake = Lake(cfg.lake.root, spark)
    write_silver(spark, lake, event_rows(sequential_histories(N_USERS, N_ITEMS, 10, seed=3)), ITEM_IDS)
    run_stage("sequences", sequences_job.run, cfg, spark)
    return lake.read(T.SILVER_SEQUENCES).toPandas()


def sasrec(cfg, rows: pd.DataFrame | None = None, steps: int = 0) -> SASRec:
    """An untrained model, or one fitted with `steps` full-batch AdamW steps on the training columns."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=cfg.sequences.max_len, dim=16, layers=1, heads=1,
                                dropout=0.0))
    if steps:
        inputs = torch.as_tensor(np.stack(rows[T.TRAIN_INPUT].to_numpy()), dtype=torch.long)
        targets = torch.as_tensor(np.stack(rows[T.TRAIN_TARGET].to_numpy()), dtype=torch.long)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        for _ in range(steps):
            optimizer.zero_grad()
            hidden, y = model.training_pairs(inputs, targets)
            full_softmax_ce(hidden, model.item_vectors(), y).backward()
            optimizer.step()
    return model.eval()


def register(cfg, spark, model: SASRec) -> str:
    """Log and register the model as the train stage does, tagged with the sequences version it belongs to."""
    version = Lake(cfg.lake.root, spark).version(T.SILVER_SEQUENCES)
    with tracking.stage_run(cfg, "train"):
        return log_model(model, ITEM_IDS, cfg.mlflow.registered_model,
                         tags={f"read.{T.SILVER_SEQUENCES}": version})[1]


def evaluate(cfg, spark, version: str):
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"model_version": int(version)})})
    return run_stage("evaluate", evaluate_job.run, cfg, spark)


def champion_of(cfg) -> str:
    alias = cfg.evaluate.champion_alias
    return str(MlflowClient().get_model_version_by_alias(cfg.mlflow.registered_model, alias).version)


def test_a_tie_keeps_the_champion_and_no_champion_loses_to_anything():
    assert beats(0.2, None) and beats(0.3, 0.2)
    assert not beats(0.2, 0.2) and not beats(0.1, 0.2)


def test_aligned_scores_translate_another_item_index():
    model = SASRec(SASRecConfig(n_items=3, max_len=4, dim=8, layers=1, heads=1, dropout=0.0)).eval()
    old_ids, new_ids = ["a", "b", "c"], ["a", "c", "d"]  # b is gone, d is new: old idx 1 3 -> new idx 1 2
    with torch.inference_mode():
        direct = model_scores(model)(torch.tensor([[0, 0, 1, 3]]))(torch.arange(4))
        aligned = aligned_scores(model, old_ids, new_ids)(torch.tensor([[0, 0, 1, 2]]))(torch.arange(4))
    assert aligned.shape == (1, 4)
    assert torch.allclose(aligned[0, [1, 2]], direct[0, [1, 3]])
    assert aligned[0, 3] == torch.finfo(torch.float32).min  # d: the old model cannot score it
    with torch.inference_mode():  # the same index, inputs longer than its max_len: the newest items count
        same = aligned_scores(model, old_ids, old_ids)(torch.tensor([[2, 2, 0, 0, 1, 3]]))(torch.arange(4))
    assert torch.allclose(same[:, 1:], direct[:, 1:])


@pytest.mark.slow
def test_evaluate_stage_logs_model_and_baselines_by_slice_with_plots(spark, make_cfg, isolated):
    cfg = make_cfg()
    rows = lake_with_sequences(spark, cfg)
    version = register(cfg, spark, sasrec(cfg, rows, steps=60))
    result = evaluate(cfg, spark, version)

    m = result.metrics
    assert m["test_users"] == N_USERS and m["champion_promoted"] == 1.0
    for model in ("sasrec", "pop", "cooc", "als"):
        assert 0 <= m[f"test.{model}.ndcg_10"] <= 1 and 0 < m[f"test.{model}.coverage_10"] <= 1
    assert m["test.sasrec.ndcg_10"] > m["test.pop.ndcg_10"] + 0.2  # the ring is learnable, popularity flat

    run = mlflow.get_run(result.run_id)
    logged = run.data.metrics
    assert logged["test.sasrec.ndcg_10"] == pytest.approx(m["test.sasrec.ndcg_10"])
    assert "test.als.pop_bias_10" in logged and "test.pop.mrr" in logged
    assert any(k.startswith("test.sasrec.slice.len_") and k.endswith(".ndcg_10") for k in logged)
    assert run.data.params["als.rank"] == str(cfg.evaluate.als.ranks[0])
    client = MlflowClient()
    files = {f.path for f in client.list_artifacts(result.run_id, "evaluation")}
    assert files == {"evaluation/test_ndcg_10_by_slice.png", "evaluation/test_model_vs_baselines.png",
                     "evaluation/test_metrics.csv", "evaluation/als_grid_valid.csv",
                     "evaluation/cooc_decay_valid.csv", "evaluation/test_ranks.csv"}
    ranks = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{result.run_id}/evaluation/test_ranks.csv")))
    assert list(ranks.columns) == ["user_id", "sasrec", "pop", "cooc", "als"] and len(ranks) == N_USERS
    assert per_user_ndcg(ranks["sasrec"]).mean() == pytest.approx(m["test.sasrec.ndcg_10"])  # the same ranks
    assert float(run.data.params["cooc.decay"]) in cfg.evaluate.cooc_decays
    tidy = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{result.run_id}/evaluation/test_metrics.csv")))
    assert list(tidy.columns) == ["model", "slice", "metric", "value"]
    assert set(tidy["model"]) == {"sasrec", "pop", "cooc", "als"}
    sasrec_all = tidy[(tidy["model"] == "sasrec") & (tidy["slice"] == "all") & (tidy["metric"] == "ndcg_10")]
    assert sasrec_all["value"].item() == pytest.approx(m["test.sasrec.ndcg_10"])
    assert champion_of(cfg) == version and run.data.tags["lakerec.champion_before"] == "none"


@pytest.mark.slow
def test_champion_alias_moves_only_to_a_strictly_better_version(spark, make_cfg, isolated):
    cfg = make_cfg("evaluate.baselines=[pop]")
    rows = lake_with_sequences(spark, cfg)
    untrained = sasrec(cfg)
    v1 = register(cfg, spark, untrained)
    v2 = register(cfg, spark, untrained)  # the same weights: a tie
    v3 = register(cfg, spark, sasrec(cfg, rows, steps=60))

    first = evaluate(cfg, spark, v1)
    assert first.metrics["champion_promoted"] == 1.0 and champion_of(cfg) == v1

    tie = evaluate(cfg, spark, v2)
    assert tie.metrics["champion_promoted"] == 0.0 and champion_of(cfg) == v1
    logged = mlflow.get_run(tie.run_id).data.metrics  # the champion re-evaluated on the same snapshot
    assert logged["test.champion.ndcg_10"] == pytest.approx(tie.metrics["test.sasrec.ndcg_10"])

    better = evaluate(cfg, spark, v3)
    assert better.metrics["champion_promoted"] == 1.0 and champion_of(cfg) == v3
    assert better.metrics["test.sasrec.ndcg_10"] > mlflow.get_run(better.run_id).data.metrics["test.champion.ndcg_10"]

    again = evaluate(cfg, spark, v1)  # an older, worse version evaluated later does not take the title back
    assert again.metrics["champion_promoted"] == 0.0 and champion_of(cfg) == v3
    assert mlflow.get_run(again.run_id).data.tags["lakerec.champion_before"] == v3
