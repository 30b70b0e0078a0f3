"""Batch scoring in Spark with a real (untrained, seeded) SASRec: shape of the top-N, exclusions, bad input."""
import numpy as np
import pytest
import torch
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import ScoreConf
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.score.batch import HISTORY, check_item_index, score_users, user_histories

L, N_ITEMS = 6, 12
ITEM_IDS = [f"i{k:02d}" for k in range(1, N_ITEMS + 1)]  # item_idx k -> "i<k>"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=L, dim=8, layers=1, heads=1)).eval()


def _users(spark, histories: dict[str, list[int]]):
    rows = [(u, [0] * (L - len(h[-L:])) + h[-L:], sorted(set(h))) for u, h in histories.items()]
    return spark.createDataFrame(rows, f"{T.USER_ID} string, {T.SCORE_INPUT} array<int>, {HISTORY} array<int>")


def test_every_user_gets_n_ranked_unseen_items_matching_the_model(spark, model):
    histories = {f"u{u}": list(np.random.default_rng(u).integers(1, N_ITEMS + 1, size=u % 5 + 1)) for u in range(30)}
    histories = {u: [int(x) for x in h] for u, h in histories.items()}
    conf = ScoreConf(top_n=4, batch_size=7)  # batches smaller than partitions: the batching path runs
    out = score_users(spark, _users(spark, histories).repartition(3), model, ITEM_IDS, conf).toPandas()
    assert len(out) == 30 * 4
    for user, rows in out.groupby(T.USER_ID):
        assert sorted(rows[T.RANK]) == [1, 2, 3, 4]
        assert not set(rows[T.ITEM_ID]) & {ITEM_IDS[i - 1] for i in histories[user]}
        assert list(rows.sort_values(T.RANK)[T.SCORE]) == sorted(rows[T.SCORE], reverse=True)
    # the same top-N the model gives on the driver
    h = histories["u3"]
    with torch.no_grad():
        scores = model.user_vectors(torch.tensor([[0] * (L - len(h)) + h])) @ model.item_vectors().T
    scores[0, 0] = -np.inf
    scores[0, h] = -np.inf
    expected = [ITEM_IDS[i - 1] for i in torch.topk(scores[0], 4).indices.tolist()]
    assert out[out[T.USER_ID] == "u3"].sort_values(T.RANK)[T.ITEM_ID].tolist() == expected


def test_a_user_who_saw_nearly_everything_still_gets_n_rows(spark, model):
    histories = {"greedy": list(range(1, N_ITEMS))}  # one unseen item left
    out = score_users(spark, _users(spark, histories), model, ITEM_IDS, ScoreConf(top_n=3)).toPandas()
    assert len(out) == 3
    assert out.sort_values(T.RANK)[T.ITEM_ID].iloc[0] == ITEM_IDS[-1]  # the unseen item ranks first


def test_empty_candidate_set_is_a_clear_error(spark, model):
    with pytest.raises(ValueError, match="empty candidate set"):
        score_users(spark, _users(spark, {"u": [1]}), model, [], ScoreConf())


def test_history_is_every_distinct_item_the_user_touched(spark):
    events = spark.createDataFrame([("a", "i01"), ("a", "i03"), ("a", "i01"), ("b", "i02")], "user_id string, item_id string")
    index = spark.createDataFrame([(k, ITEM_IDS[k - 1]) for k in (1, 2, 3)], "item_idx int, item_id string")
    got = {r[T.USER_ID]: r[HISTORY] for r in user_histories(events, index).collect()}
    assert got == {"a": [1, 3], "b": [2]}


def test_item_index_mismatch_is_refused(spark):
    index = spark.createDataFrame([(1, "i01"), (2, "zz")], "item_idx int, item_id string")
    check_item_index(index.where(F.col(T.ITEM_IDX) == 1), ["i01"])  # agreeing index passes
    with pytest.raises(ValueError, match="does not match the model's item index"):
        check_item_index(index, ["i01", "i02"])
