"""Full-ranking metrics on hand-computed cases: rank 1, rank 3, ties, history exclusion, the popularity baseline."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lakerec import tables as T
from lakerec.evaluate.metrics import (evaluate_sequences, history_mask, popularity_scores, rank_users,
                                      ranking_metrics, target_ranks)

N = 5  # items 1..5, column 0 is padding


def scores(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def no_history(batch):
    return history_mask([np.array([], np.int64)] * batch, N)


def test_rank_one_gives_ndcg_one_and_rank_three_gives_one_over_log2_4():
    s = scores([9.0, 5, 4, 3, 2, 1],   # padding scores highest yet never counts; target 1 is first
               [0.0, 5, 4, 3, 2, 1])   # target 3 is third
    ranks = target_ranks(s, torch.tensor([1, 3]), no_history(2))
    assert ranks.tolist() == [1, 3]
    m = ranking_metrics(ranks, [1, 3])
    assert m["ndcg_1"] == pytest.approx(0.5) and m["hr_1"] == pytest.approx(0.5)
    assert m["ndcg_3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert m["hr_3"] == 1.0 and m["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_history_items_are_excluded_but_the_target_is_kept():
    s = scores([0.0, 5, 4, 3, 2, 1])
    # items 1 and 2 were seen: target 3 moves from rank 3 to rank 1
    assert target_ranks(s, torch.tensor([3]), history_mask([np.array([1, 2])], N)).tolist() == [1]
    # the target itself was seen before (a repeat): it still counts
    assert target_ranks(s, torch.tensor([2]), history_mask([np.array([2, 1])], N)).tolist() == [1]


def test_ties_count_against_the_target():
    flat = scores([0.0, 1, 1, 1, 1, 1])
    assert target_ranks(flat, torch.tensor([1]), no_history(1)).tolist() == [N]


def test_batches_give_the_same_ranks_as_one_pass():
    rng = np.random.default_rng(0)
    table = torch.as_tensor(rng.normal(size=(7, N + 1)), dtype=torch.float32)
    inputs = np.arange(7).reshape(7, 1)  # the "input" is the row of the score table
    targets = rng.integers(1, N + 1, size=7)
    histories = [rng.integers(1, N + 1, size=k) for k in range(7)]
    score_fn = lambda x: table[x[:, 0]]  # noqa: E731
    one = rank_users(score_fn, inputs, targets, histories, N, batch_size=100)
    small = rank_users(score_fn, inputs, targets, histories, N, batch_size=3)
    assert torch.equal(one, small)


def test_popularity_baseline_and_split_histories():
    seqs = pd.DataFrame({
        T.USER_ID: ["a", "b", "c"],
        # training part = history[:-2]: item 4 is the most popular there (3 times), then 5 (twice)
        T.HISTORY: [np.array([4, 5, 1, 2]), np.array([4, 5, 2, 1]), np.array([4, 3, 4])],
        T.VALID_INPUT: [np.array([4, 5]), np.array([4, 5]), np.array([0, 4])],
        T.VALID_TARGET: [1, 2, 3],
        T.TEST_INPUT: [np.array([5, 1]), np.array([5, 2]), np.array([4, 3])],
        T.TEST_TARGET: [2, 1, 4],
    })
    m = evaluate_sequences(seqs, N, [1], model=None)
    # test, user a: history before target = 4 5 1 excluded; pop order 4(3) 5(2) 1,2,3(0): target 2 ties
    # with 3 -> rank 2. user b: same by symmetry -> rank 2. user c: 4 is the target (kept), 3 excluded -> rank 1
    assert m["pop_test_mrr"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["pop_test_hr_1"] == pytest.approx(1 / 3)
    # valid, user a: 4 5 excluded, target 1 ties with 2 and 3 -> rank 3; b the same.
    # user c: only 4 excluded, 5 (count 2) comes first, then 3 ties with 1 and 2 -> rank 4
    assert m["pop_valid_mrr"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 4) / 3)
    assert m["test_users"] == 3


def test_popularity_scores_broadcast_per_user():
    fn = popularity_scores(np.array([0, 3, 1, 0, 0, 2]))
    assert fn(torch.zeros(4, 2, dtype=torch.long)).shape == (4, N + 1)
