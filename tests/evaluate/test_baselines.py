"""Baselines: co-occurrence by hand, each one fitted only before the split, each beating random scores on data
with planted structure (skewed popularity inside item clusters), ALS tuned on valid with real Spark."""
import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from lakerec import tables as T
from lakerec.evaluate import baselines as B
from lakerec.evaluate.metrics import evaluate_all, overall

MAX_LEN = 8


def sequences_of(histories: list[list[int]]) -> pd.DataFrame:
    """silver.sequences-like rows (the evaluation columns) for hand-made histories."""
    def pad(items):
        items = list(items)[-MAX_LEN:]
        return np.array([0] * (MAX_LEN - len(items)) + items, dtype=np.int64)

    return pd.DataFrame({
        T.USER_ID: [f"u{u:03d}" for u in range(len(histories))],
        T.HISTORY: [np.array(h) for h in histories],
        T.VALID_INPUT: [pad(h[:-2]) for h in histories], T.VALID_TARGET: [h[-2] for h in histories],
        T.TEST_INPUT: [pad(h[:-1]) for h in histories], T.TEST_TARGET: [h[-1] for h in histories],
    })


def planted(n_users=160, clusters=4, per_cluster=20, length=8, seed=0) -> tuple[pd.DataFrame, int]:
    """Each user stays in one cluster of items (clusters Zipf-like by users) and draws distinct items there with
    Zipf-like weights (no repeats: a repeated target is a miss under the serving rule): popularity,
    co-occurrence and user factors all carry signal, random scores none."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, per_cluster + 1)
    weights /= weights.sum()
    cluster_weights = 1.0 / np.arange(1, clusters + 1) ** 2
    cluster_weights /= cluster_weights.sum()
    histories = []
    for _ in range(n_users):
        c = rng.choice(clusters, p=cluster_weights)
        histories.append((c * per_cluster + 1 + rng.choice(per_cluster, length, replace=False, p=weights)).tolist())
    return sequences_of(histories), clusters * per_cluster


def random_scores(n_items):
    gen = torch.Generator().manual_seed(0)

    def score(inputs):
        table = torch.rand(len(inputs), n_items + 1, generator=gen)
        return lambda items: table[:, items]

    return score


def every_item(item_scores, n_items):
    """A batch's scores of the whole catalog, [B, n_items + 1], from a scorer's ItemScores."""
    return item_scores(torch.arange(n_items + 1))


def test_cooccurrence_matrix_is_the_cosine_over_users_by_hand():
    matrix = B.cooccurrence_matrix([np.array([1, 2, 2]), np.array([1, 2, 3])], 3)
    assert sp.issparse(matrix)
    # users with 1: 2, with 2: 2, with 3: 1; both 1 and 2: 2 -> 1; 1 and 3: 1 -> 1/sqrt(2); no diagonal
    s = 2 ** -0.5
    expected = torch.tensor([[0, 0, 0, 0], [0, 0, 1, s], [0, 1, 0, s], [0, s, s, 0]], dtype=torch.float32)
    assert np.allclose(matrix.toarray(), expected.numpy())


def test_cooccurrence_scores_sum_the_cosines_of_the_input_items():
    seqs = sequences_of([[1, 2, 9, 9], [1, 2, 3, 9, 9], [4, 5, 9, 9]])
    score = every_item(B.cooccurrence_scorer(seqs, 9, "test")(torch.tensor([[0, 1, 4]])), 9)
    # fitted on history[:-1]: item 2 co-occurs with 1 (cos 1), 5 with 4 (cos 1), 3 with 1 (1/sqrt 2), 9 with all
    assert score[0, 2] == pytest.approx(1.0) and score[0, 5] == pytest.approx(1.0)
    assert score[0, 3] == pytest.approx(2 ** -0.5) and score[0, 6] == 0 and score[0, 0] == 0
    recent = every_item(B.cooccurrence_scorer(seqs, 9, "test", decay=0.5)(torch.tensor([[0, 1, 4]])), 9)
    assert torch.equal(B.cooccurrence_scorer(seqs, 9, "test", decay=0.5)(torch.tensor([[0, 1, 4]]))(
        torch.tensor([5, 2])), recent[:, [5, 2]])  # any block of items: the same scores
    assert recent[0, 2] == pytest.approx(0.5) and recent[0, 5] == pytest.approx(1.0)  # 4 is newer than 1


def test_cooccurrence_decay_tuned_on_valid_favours_the_last_item():
    # the valid target always follows the last input item's partner: (1 -> 2), (3 -> 4); older items mislead
    seqs = sequences_of([[3, 1, 2, 9], [1, 3, 4, 9], [3, 1, 2, 9], [1, 3, 4, 9], [1, 2, 9, 9], [3, 4, 9, 9]])
    best, results = B.tune_cooccurrence(seqs, 9, [1.0, 0.5], [10])
    assert best == 0.5 and list(results["decay"]) == [1.0, 0.5]
    assert results["ndcg_10"].iloc[1] > results["ndcg_10"].iloc[0]


def test_baselines_never_see_the_target_they_rank():
    seqs = sequences_of([[1, 2, 3, 7], [1, 2, 3, 8], [2, 3, 6, 5]])  # 7 and 8 appear only as test targets
    pop_test = every_item(B.popularity_scorer(seqs, 8, "test")(torch.zeros(1, MAX_LEN, dtype=torch.long)), 8)[0]
    assert pop_test[7] == 0 and pop_test[8] == 0 and pop_test[3] == 3 and pop_test[6] == 1
    pop_valid = every_item(B.popularity_scorer(seqs, 8, "valid")(torch.zeros(1, MAX_LEN, dtype=torch.long)), 8)[0]
    assert pop_valid[3] == 1 and pop_valid[6] == 0  # valid fits history[:-2]: 3 and 6 were valid targets


def test_popularity_and_cooccurrence_beat_random_on_planted_structure():
    seqs, n = planted()
    table = evaluate_all(seqs, n, [10], {"random": random_scores(n), B.POP: B.popularity_scorer(seqs, n),
                                         B.COOC: B.cooccurrence_scorer(seqs, n)})
    ndcg = {m: overall(table, m)["ndcg_10"] for m in ("random", B.POP, B.COOC)}
    assert ndcg[B.POP] > ndcg["random"] + 0.05
    assert ndcg[B.COOC] > ndcg[B.POP]  # the cluster is what co-occurrence sees and popularity cannot
    assert overall(table, B.POP)["coverage_10"] < overall(table, B.COOC)["coverage_10"]


@pytest.mark.slow
def test_als_beats_random_and_tuning_picks_the_best_valid_point(spark):
    seqs, n = planted()
    grid = B.als_grid([2, 8], [0.1], [1.0], max_iter=5)
    best, results = B.tune_als(spark, seqs, n, grid, [10])
    assert len(results) == 2 and set(results["rank"]) == {2, 8}
    assert best.rank == results.loc[results["ndcg_10"].idxmax(), "rank"]
    table = evaluate_all(seqs, n, [10], {"random": random_scores(n),
                                         B.ALS_NAME: B.als_scorer(spark, seqs, n, "test", best)})
    assert overall(table, B.ALS_NAME)["ndcg_10"] > overall(table, "random")["ndcg_10"] + 0.1


def test_als_scores_an_unknown_user_zero(spark):
    seqs, n = planted(n_users=20)
    score = B.als_scorer(spark, seqs, n, "test", B.AlsParams(4, 0.1, 1.0, max_iter=2))
    out = every_item(score(torch.zeros(2, MAX_LEN, dtype=torch.long), np.array(["u000", "nobody"])), n)
    assert out.shape == (2, n + 1) and out[0].abs().sum() > 0 and out[1].abs().sum() == 0


def test_an_empty_als_grid_is_a_clear_error(spark):
    seqs, n = planted(n_users=20)
    with pytest.raises(ValueError, match="ALS grid is empty"):
        B.tune_als(spark, seqs, n, [], [10])


def test_new_items_popularity_ranks_recent_releases_first_by_count_then_newest():
    # cut 2020-01-31, window 30 days: items 3, 4, 5 are new (released 2020-01-02..31), item 6 is released after
    # the cut, item 1 long ago, item 2 has no date at all; counts before the test split: 1 x5, 2 x4, 3 x2, 6 x1,
    # 4 and 5 none (only test targets, as a held-out item)
    data = sequences_of([[1, 1, 2, 3, 4], [1, 2, 3, 2, 5], [1, 2, 1, 6, 4]])
    day = lambda s: np.datetime64(s, "D")
    released = np.array(["NaT", "2001-01-01", "NaT", "2020-01-02", "2020-01-31", "2020-01-20", "2020-02-05"],
                        dtype="datetime64[D]")
    scorer = B.new_items_popularity_scorer(data, 6, released, day("2020-01-31"), window_days=30)
    order = every_item(scorer(torch.zeros(2, 3, dtype=torch.long)), 6)[0].argsort(descending=True).tolist()
    # 3 (2 events) before 4 and 5 (no event before the test targets: newest first), then the rest by popularity
    assert order[:3] == [3, 4, 5]
    assert order[3:] == [1, 2, 6, 0]
    # five days later: item 3 has left the window, item 6 (one event) is released and leads
    later = B.new_items_popularity_scorer(data, 6, released, day("2020-02-05"), window_days=30)
    assert every_item(later(torch.zeros(1, 3, dtype=torch.long)), 6)[0].argsort(descending=True).tolist()[:5] == [
        6, 4, 5, 1, 2]
    with pytest.raises(ValueError):
        B.new_items_popularity_scorer(data, 6, released[:3], day("2020-01-31"), window_days=30)


def test_release_dates_prefer_published_then_first_event(spark):
    items = spark.createDataFrame([("a", datetime.date(1999, 5, 1)), ("b", None), ("c", None)],
                                  f"{T.ITEM_ID} string, {T.PUBLISHED} date")
    events = spark.createDataFrame([("a", datetime.datetime(2020, 1, 5, 10)), ("b", datetime.datetime(2020, 3, 9, 8)),
                                    ("b", datetime.datetime(2020, 2, 1, 23)), ("d", datetime.datetime(2021, 1, 1))],
                                   f"{T.ITEM_ID} string, {T.TS} timestamp")
    out = B.release_dates(items, events, ["a", "b", "c", "d", "e"])
    assert out.dtype == np.dtype("datetime64[D]") and len(out) == 6
    assert [str(d) for d in out] == ["NaT", "1999-05-01", "2020-02-01", "NaT", "2021-01-01", "NaT"]
