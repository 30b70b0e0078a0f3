"""Real Horovod ranks (Gloo) started by horovod.spark.run on the test Spark session, fed by Petastorm from the lake."""
import pytest
import torch

from jobs import sequences as sequences_job
from lakerec import tables as T
from lakerec.config import load_config
from lakerec.context import run_stage
from lakerec.data.feed import petastorm_urls
from lakerec.data.sequences import layout_for_feed
from lakerec.lake import Lake
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.train.runner import TrainingError, train_distributed
from tests.conftest import CONF_DIR
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

pytestmark = pytest.mark.slow
N_USERS, N_ITEMS = 60, 30


@pytest.fixture(scope="module")
def lake_setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("horovod") / "lake"
    with own_mlflow_store():
        cfg = load_config("test", [f"lake.root={root}", "train.ranks=2", "train.timeout_s=60", "train.lr=0.01",
                                   "train.batch_size=8"], conf_dir=CONF_DIR)
        lake = Lake(cfg.lake.root, spark)
        histories = sequential_histories(N_USERS, N_ITEMS, 12)
        write_silver(spark, lake, event_rows(histories), [f"i{i:03d}" for i in range(N_ITEMS)])
        run_stage("sequences", sequences_job.run, cfg, spark)
    return cfg, lake


def model_config(cfg) -> SASRecConfig:
    return SASRecConfig(n_items=N_ITEMS, max_len=cfg.sequences.max_len, dim=16, layers=1, heads=1, dropout=0.1)


def test_two_ranks_on_uneven_shards_stay_identical_share_the_data_and_learn(spark, lake_setup):
    cfg, lake = lake_setup
    # three row groups over two ranks: rank 0 reads two of them, rank 1 one; the shorter rank must wrap
    # around its shard rather than leave rank 0 waiting at an allreduce (timeout_s: a stall fails, not hangs)
    lake.write("silver.sequences_uneven", layout_for_feed(lake.read(T.SILVER_SEQUENCES), 3), mode="overwrite")
    urls = petastorm_urls(lake.files("silver.sequences_uneven"))
    conf = cfg.train.model_copy(update={"epochs": 6, "timeout_s": 30})
    result = train_distributed(spark, urls, model_config(cfg), conf)

    assert [r["rank"] for r in result.ranks] == [0, 1]
    assert len({r["checksum"] for r in result.ranks}) == 1  # bit-identical weights on every rank
    rows = [r["rows"] for r in result.ranks]
    assert rows[0] > rows[1] > 0  # both ranks got data, unevenly ...
    assert sum(rows) == N_USERS  # ... and together all of it, once
    assert result.ranks[0]["steps_per_epoch"] == result.ranks[1]["steps_per_epoch"] == -(-rows[0] // 8)
    assert len(result.history) == 6 and result.history[-1] < result.history[0] * 0.8
    model = SASRec(model_config(cfg))
    model.load_state_dict(result.state_dict)  # rank 0's weights rebuild the module


def test_one_rank_takes_the_same_path_and_repeats_exactly(spark, lake_setup):
    cfg, lake = lake_setup
    urls = petastorm_urls(lake.files(T.SILVER_SEQUENCES))
    conf = cfg.train.model_copy(update={"ranks": 1, "epochs": 2})
    first = train_distributed(spark, urls, model_config(cfg), conf)
    second = train_distributed(spark, urls, model_config(cfg), conf)
    assert first.ranks[0]["size"] == 1 and first.ranks[0]["rows"] == N_USERS
    assert first.history == second.history
    assert first.ranks[0]["checksum"] == second.ranks[0]["checksum"]
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)


def test_more_ranks_than_local_task_slots_is_a_clear_error(spark, lake_setup):
    cfg, lake = lake_setup
    conf = cfg.train.model_copy(update={"ranks": spark.sparkContext.defaultParallelism + 1})
    with pytest.raises(TrainingError, match="concurrent Spark tasks"):
        train_distributed(spark, petastorm_urls(lake.files(T.SILVER_SEQUENCES)), model_config(cfg), conf)
