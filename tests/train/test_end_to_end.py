"""sequences -> train -> evaluate as stage runs on strongly sequential data: the model must beat popularity."""
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from jobs import evaluate as evaluate_job
from jobs import sequences as sequences_job
from jobs import train as train_job
from lakerec import tables as T
from lakerec.context import run_stage
from lakerec.lake import Lake
from lakerec.tracking import PIPELINE_RUN_TAG
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

pytestmark = pytest.mark.slow
EPOCHS = 12


@pytest.fixture
def isolated():
    with own_mlflow_store():
        yield


def test_sequential_data_model_beats_popularity_with_lineage(spark, make_cfg, isolated):
    cfg = make_cfg("train.ranks=2", f"train.epochs={EPOCHS}", "train.lr=0.01", "train.batch_size=8",
                   "train.dropout=0.1", "train.timeout_s=60")
    lake = Lake(cfg.lake.root, spark)
    histories = sequential_histories(60, 30, 12, seed=1)
    write_silver(spark, lake, event_rows(histories), [f"i{i:03d}" for i in range(30)])

    pipeline = "pipeline-e2e"
    run_stage("sequences", sequences_job.run, cfg, spark, pipeline_run_id=pipeline)
    trained = run_stage("train", train_job.run, cfg, spark, pipeline_run_id=pipeline)
    evaluated = run_stage("evaluate", evaluate_job.run, cfg, spark, pipeline_run_id=pipeline)

    m = evaluated.metrics
    assert m["test_users"] == 60
    assert m["test.sasrec.ndcg_10"] > m["test.pop.ndcg_10"] + 0.3
    assert m["test.sasrec.hr_10"] > m["test.pop.hr_10"] and m["test.sasrec.mrr_10"] > m["test.pop.mrr_10"]
    assert trained.metrics["best_valid_ndcg_10"] > m["test.pop.ndcg_10"]
    assert 1 <= trained.metrics["best_epoch"] <= trained.metrics["epochs_run"] <= EPOCHS
    assert m["model_version"] == trained.metrics["model_version"] == 1

    client = MlflowClient()
    losses = client.get_metric_history(trained.run_id, "train_loss")
    assert [x.step for x in losses] == list(range(1, int(trained.metrics["epochs_run"]) + 1))
    assert losses[-1].value < losses[0].value
    ndcgs = client.get_metric_history(trained.run_id, "valid_ndcg_10")
    assert max(x.value for x in ndcgs) == pytest.approx(trained.metrics["best_valid_ndcg_10"])
    assert "learning_curves.png" in [f.path for f in client.list_artifacts(trained.run_id)]
    version = client.get_model_version(cfg.mlflow.registered_model, "1")
    assert version.run_id == trained.run_id
    assert version.tags[f"read.{T.SILVER_SEQUENCES}"] == str(trained.reads[T.SILVER_SEQUENCES])
    assert version.tags[PIPELINE_RUN_TAG] == pipeline
    run = mlflow.get_run(evaluated.run_id)
    assert run.data.tags["lakerec.model_chosen_by"] == "pipeline_run"
    assert run.data.metrics["test.pop.ndcg_10"] == pytest.approx(m["test.pop.ndcg_10"])
