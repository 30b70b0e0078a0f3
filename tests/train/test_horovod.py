"""Real Horovod ranks (Gloo) started by horovod.spark.run on the test Spark session, fed by Petastorm from the lake."""
import math
import os
import time

import numpy as np

import optuna
import pytest
import torch

from jobs import sequences as sequences_job
from lakerec import tables as T
from lakerec.config import load_config
from lakerec.context import run_stage
from lakerec.data.feed import FeedError, petastorm_urls, plan_feed
from lakerec.data.sequences import layout_for_feed
from lakerec.lake import Lake
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.train import tune
from lakerec.train.runner import ITEM_TEXT, TrainingError, rank_env, train_distributed
from tests.conftest import CONF_DIR
from tests.data.helpers import event_rows, own_mlflow_store, sequential_histories, write_silver

pytestmark = pytest.mark.slow
N_USERS, N_ITEMS = 60, 30


@pytest.fixture(scope="module")
def lake_setup(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("horovod") / "lake"
    with own_mlflow_store():
        cfg = load_config("test", [f"lake.root={root}", "train.ranks=2", "train.timeout_s=60", "train.lr=0.01",
                                   "train.batch_size=8", "train.warmup_steps=5"], conf_dir=CONF_DIR)
        lake = Lake(cfg.lake.root, spark)
        histories = sequential_histories(N_USERS, N_ITEMS, 12)
        write_silver(spark, lake, event_rows(histories), [f"i{i:03d}" for i in range(N_ITEMS)])
        run_stage("sequences", sequences_job.run, cfg, spark)
    return cfg, lake


def model_config(cfg, name: str = "sasrec", **kw) -> ModelConfig:
    return ModelConfig(n_items=N_ITEMS, max_len=cfg.sequences.max_len, dim=16, layers=1, heads=1, dropout=0.1,
                       name=name, **kw)


def valid_urls(lake):
    return petastorm_urls(lake.files(T.SILVER_SEQUENCES))


def test_two_ranks_on_uneven_shards_stay_identical_share_the_data_and_learn(spark, lake_setup, tmp_path):
    cfg, lake = lake_setup
    # three row groups over two ranks: rank 0 reads two of them, rank 1 one; the shorter rank must wrap
    # around its stream rather than leave rank 0 waiting at an allreduce (timeout_s: a stall fails, not hangs);
    # each streams through a shuffle buffer of 8 rows, a fraction of its shard
    lake.write("silver.windows_uneven", layout_for_feed(lake.read(T.SILVER_TRAIN_WINDOWS), 3), mode="overwrite")
    urls = petastorm_urls(lake.files("silver.windows_uneven"))
    conf = cfg.train.model_copy(update={"epochs": 6, "timeout_s": 30, "patience": 6, "shuffle_buffer": 8})
    result = train_distributed(spark, urls, valid_urls(lake), model_config(cfg), conf, str(tmp_path))

    assert [r["rank"] for r in result.ranks] == [0, 1]
    assert len({r["checksum"] for r in result.ranks}) == 1  # bit-identical weights on every rank
    rows = [r["rows"] for r in result.ranks]
    assert rows[0] > rows[1] > 0  # both ranks got data, unevenly ...
    assert sum(rows) == lake.read(T.SILVER_TRAIN_WINDOWS).count()  # ... and together all of it, once
    assert result.ranks[0]["steps_per_epoch"] == result.ranks[1]["steps_per_epoch"] == -(-rows[0] // 8)
    largest = plan_feed(urls, 2).largest_row_group
    assert all(r["shuffle_buffer"] == 8 and 8 < r["feed_peak_rows"] <= 8 + largest for r in result.ranks)
    assert result.ranks[0]["feed_peak_rows"] < rows[0]  # rank 0 never held its whole shard
    assert sum(r["valid_users"] for r in result.ranks) == N_USERS  # validation users shared out, each once
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.8
    ndcgs = [h["valid_ndcg_10"] for h in result.history]
    assert result.best["valid_ndcg_10"] == max(ndcgs) > ndcgs[0]
    model = build_model(model_config(cfg))
    model.load_state_dict(result.state_dict)  # rank 0's best weights rebuild the module


@pytest.mark.parametrize("name, loss", [("sasrec", "sampled"), ("bert4rec", "ce")])
def test_one_rank_takes_the_same_path_and_repeats_exactly(spark, lake_setup, tmp_path, name, loss):
    cfg, lake = lake_setup
    urls = petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS))
    conf = cfg.train.model_copy(update={"ranks": 1, "epochs": 2, "model": name, "loss": loss, "negatives": 8})
    first = train_distributed(spark, urls, valid_urls(lake), model_config(cfg, name), conf, str(tmp_path / "a"))
    second = train_distributed(spark, urls, valid_urls(lake), model_config(cfg, name), conf, str(tmp_path / "b"))
    assert first.ranks[0]["size"] == 1 and first.ranks[0]["rows"] == lake.read(T.SILVER_TRAIN_WINDOWS).count()
    assert first.history == [{**h, "seconds": f["seconds"]} for h, f in zip(second.history, first.history)]
    assert first.ranks[0]["checksum"] == second.ranks[0]["checksum"]
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)


def test_bsarec_with_item_dropout_stays_identical_on_two_ranks_and_a_pruner_stops_both(spark, lake_setup, tmp_path):
    """BSARec's filter parameters and a per-rank item dropout (each rank its own RNG) still end bit-identical; the
    tuner's reporter, told to prune by its study (a threshold no NDCG@10 reaches, after one warm-up epoch), stops
    every rank at epoch 2 of 5 and the trial is TrialPruned."""
    cfg, lake = lake_setup
    config = model_config(cfg, "bsarec", item_dropout=0.2, bsarec_alpha=0.5, bsarec_window=4)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask()
    reporter = tune.EpochReporter(storage, "s", tune.epoch_reporter(study, storage, trial).trial_id,
                                  optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=2))
    conf = cfg.train.model_copy(update={"model": "bsarec", "item_dropout": 0.2, "epochs": 5, "patience": 5})
    result = train_distributed(spark, petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS)), valid_urls(lake), config,
                               conf, str(tmp_path / "ckpt"), on_epoch=reporter)
    assert len({r["checksum"] for r in result.ranks}) == 1 and len(result.ranks) == 2
    assert result.stopped and [h["epoch"] for h in result.history] == [1, 2]
    assert study.trials[0].intermediate_values == {e: h["valid_ndcg_10"] for e, h in zip((1, 2), result.history)}
    with pytest.raises(optuna.TrialPruned):
        tune.trial_value(result)
    model = build_model(config)
    model.load_state_dict(result.state_dict)
    assert model.encoder.layers[0].window == 4


def test_the_contrastive_term_trains_two_ranks_that_stay_identical(spark, lake_setup, tmp_path):
    """train.contrastive on BSARec: each rank contrasts its own batch (its own dropout, its own partner draw), the
    gradients are allreduced with the main loss's, so the ranks still end bit-identical; and the term is really
    on: the weights differ from the same run without it."""
    cfg, lake = lake_setup
    urls = petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS))
    conf = cfg.train.model_copy(update={"model": "bsarec", "epochs": 3, "patience": 3})
    with_term = conf.model_copy(update={"contrastive": conf.contrastive.model_copy(update={"weight": 0.1,
                                                                                          "temperature": 1.0})})
    result = train_distributed(spark, urls, valid_urls(lake), model_config(cfg, "bsarec"), with_term,
                               str(tmp_path / "on"))
    assert len(result.ranks) == 2 and len({r["checksum"] for r in result.ranks}) == 1
    assert all(math.isfinite(h["train_loss"]) for h in result.history) and len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    without = train_distributed(spark, urls, valid_urls(lake), model_config(cfg, "bsarec"), conf, str(tmp_path / "off"))
    assert len({r["checksum"] for r in without.ranks}) == 1
    assert without.ranks[0]["checksum"] != result.ranks[0]["checksum"]


def test_a_text_aware_model_gets_the_item_text_from_a_file_on_two_ranks(spark, lake_setup, tmp_path):
    """The item text matrix reaches the ranks as <checkpoint_dir>/item_text.npy, not as a pickled argument."""
    cfg, lake = lake_setup
    text = np.random.default_rng(0).normal(size=(N_ITEMS + 1, 6)).astype(np.float32)
    conf = cfg.train.model_copy(update={"epochs": 1})
    config = model_config(cfg, text_dim=6, text_encoder="enc")
    result = train_distributed(spark, petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS)), valid_urls(lake), config,
                               conf, str(tmp_path), text=text)
    assert len({r["checksum"] for r in result.ranks}) == 1
    assert np.array_equal(np.load(tmp_path / ITEM_TEXT), text)
    assert torch.equal(result.state_dict["text_emb"][: N_ITEMS + 1], torch.from_numpy(text))


def test_a_shuffle_buffer_larger_than_a_shard_fails_before_any_rank_starts(spark, lake_setup, tmp_path):
    cfg, lake = lake_setup
    urls = petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS))
    smallest = min(plan_feed(urls, 2).rows)
    conf = cfg.train.model_copy(update={"shuffle_buffer": smallest + 1})
    with pytest.raises(FeedError, match=f"train.shuffle_buffer={smallest + 1} rows is larger than the smallest"):
        train_distributed(spark, urls, valid_urls(lake), model_config(cfg), conf, str(tmp_path))  # not TrainingError
    assert not list(tmp_path.iterdir())  # no rank started: none wrote a checkpoint


def test_a_failing_rank_fails_the_job_fast_with_its_error(spark, lake_setup, tmp_path):
    cfg, lake = lake_setup
    conf = cfg.train.model_copy(update={"epochs": 2, "timeout_s": 30})
    start = time.monotonic()
    with pytest.raises(TrainingError, match="exited with non-zero status"):
        train_distributed(spark, petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS)), valid_urls(lake),
                          model_config(cfg), conf, str(tmp_path), fail_rank=1)  # the drill.fail_rank drill
    assert time.monotonic() - start < 2 * conf.timeout_s  # failed, did not hang on the dead rank


def test_more_ranks_than_local_task_slots_is_a_clear_error(spark, lake_setup, tmp_path):
    cfg, lake = lake_setup
    conf = cfg.train.model_copy(update={"ranks": spark.sparkContext.defaultParallelism + 1})
    with pytest.raises(TrainingError, match="concurrent Spark tasks"):
        train_distributed(spark, petastorm_urls(lake.files(T.SILVER_TRAIN_WINDOWS)), valid_urls(lake),
                          model_config(cfg), conf, str(tmp_path))


def test_the_ranks_environment_carries_the_timeouts_and_the_allocator_threshold():
    """What horovod.spark.run starts each rank's process with (glibc reads MALLOC_MMAP_THRESHOLD_ at that start)."""
    train = load_config("test", conf_dir=CONF_DIR).train
    env = rank_env(train)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(8 * 2**20) == str(train.malloc_mmap_threshold)
    assert env["HOROVOD_GLOO_TIMEOUT_SECONDS"] == str(train.timeout_s)
    off = rank_env(train.model_copy(update={"malloc_mmap_threshold": None}))
    assert ("MALLOC_MMAP_THRESHOLD_" in off) == ("MALLOC_MMAP_THRESHOLD_" in os.environ)
