"""Full-ranking metrics on hand-computed cases: rank 1, rank 3, ties, history exclusion (the serving rule: a
repeated target is a miss), MRR@k, slices, coverage and popularity bias of the lists, user-aware scorers; and
agreement with an independent masked full ranking on random data with repeats; item chunks of every size give
the results of one full [users x items] block."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lakerec import tables as T
from lakerec.evaluate.metrics import (MISSED, evaluate_all, length_slices, overall, popularity_percentile,
                                      popularity_slices, rank_users, ranking_metrics, score_users, split_data,
                                      user_aware)
from lakerec.models.topk import NO_ITEM, top_k

N = 5  # items 1..5, column 0 is padding


def scores(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def table_scorer(table):
    """The user whose input is [i] scores item j table[i, j], whichever block of items it is asked for."""
    table = torch.as_tensor(table)
    return lambda x: lambda items: table[x[:, 0]][:, items]


def target_ranks(table, targets, histories=None, **kw):
    """Ranks of one target per row of a score table (row i is user i), histories excluded."""
    histories = histories or [np.array([], np.int64)] * len(table)
    return rank_users(table_scorer(table), np.arange(len(table)).reshape(-1, 1), np.asarray(targets), histories,
                      table.shape[1] - 1, **kw)


def by_index(inputs):
    """Item i scores i: item 5 first, padding never counts."""
    return lambda items: items.float().expand(len(inputs), -1)


def tiny_sequences():
    """Three users; before the test targets: item 4 three times, 5 twice, 1, 2 and 3 once."""
    return pd.DataFrame({
        T.USER_ID: ["a", "b", "c"],
        T.HISTORY: [np.array([4, 5, 1, 2]), np.array([4, 5, 2, 1]), np.array([4, 3, 4])],
        T.VALID_INPUT: [np.array([4, 5]), np.array([4, 5]), np.array([0, 4])],
        T.VALID_TARGET: [1, 2, 3],
        T.TEST_INPUT: [np.array([5, 1]), np.array([5, 2]), np.array([4, 3])],
        T.TEST_TARGET: [2, 1, 4],
    })


def test_rank_one_gives_ndcg_one_and_rank_three_gives_one_over_log2_4():
    s = scores([9.0, 5, 4, 3, 2, 1],   # padding scores highest yet never counts; target 1 is first
               [0.0, 5, 4, 3, 2, 1])   # target 3 is third
    ranks = target_ranks(s, [1, 3])
    assert ranks.tolist() == [1, 3]
    m = ranking_metrics(ranks, [1, 3])
    assert m["ndcg_1"] == pytest.approx(0.5) and m["hr_1"] == pytest.approx(0.5)
    assert m["ndcg_3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert m["hr_3"] == 1.0 and m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["mrr_1"] == pytest.approx(0.5) and m["mrr_3"] == pytest.approx((1 + 1 / 3) / 2)


def test_mrr_at_k_counts_only_hits_within_k():
    m = ranking_metrics(torch.tensor([1, 4, 12]), [5, 10])
    assert m["mrr_5"] == pytest.approx((1 + 1 / 4) / 3)
    assert m["mrr_10"] == pytest.approx((1 + 1 / 4) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 12) / 3)


def test_history_items_are_excluded_and_a_repeated_target_is_a_miss():
    s = scores([0.0, 5, 4, 3, 2, 1])
    # items 1 and 2 were seen: target 3 moves from rank 3 to rank 1
    assert target_ranks(s, [3], [np.array([1, 2])]).tolist() == [1]
    # the target itself was seen before (a repeat): scoring never recommends it again, so it is never a hit
    ranks = target_ranks(s, [2], [np.array([2, 1])])
    assert ranks.tolist() == [MISSED]
    m = ranking_metrics(ranks, [1, 10, 1000])
    assert m["hr_1000"] == 0 and m["ndcg_1000"] == 0 and m["mrr"] == pytest.approx(0, abs=1e-15)


def test_a_scorer_that_rates_history_highest_gets_no_hit_on_a_repeat_target():
    """The old rule unmasked the target, leaving it the only history item in the ranking: rank 1 for free."""
    seqs = pd.DataFrame({T.USER_ID: ["a"], T.HISTORY: [np.array([3, 1, 4, 3])],
                         T.VALID_INPUT: [np.array([0, 3, 1])], T.VALID_TARGET: [4],
                         T.TEST_INPUT: [np.array([3, 1, 4])], T.TEST_TARGET: [3]})

    def history_first(inputs):
        out = torch.zeros(len(inputs), N + 1)
        return lambda items: out.scatter(1, inputs, 10.0)[:, items]  # every input item scores 10, the rest 0

    table = evaluate_all(seqs, N, [1, 10], {"history": history_first})
    assert overall(table, "history")["hr_10"] == 0 and overall(table, "history")["repeat_target_share"] == 1
    # repeat-aware mode (score.exclude_event_types: []): nothing is excluded, in scoring and here alike
    aware = evaluate_all(seqs, N, [1, 10], {"history": history_first}, exclude_types=[])
    assert overall(aware, "history")["repeat_target_share"] == 0
    assert overall(aware, "history")["hr_1"] == 0  # 1 and 4 tie with 3 at 10: ties count against the target
    assert overall(aware, "history")["ndcg_10"] == pytest.approx(1 / math.log2(4))


def test_type_filter_excludes_only_the_listed_event_types():
    seqs = pd.DataFrame({T.USER_ID: ["a"], T.HISTORY: [np.array([1, 2, 5, 3])],
                         T.HISTORY_TYPES: [np.array(["purchase", "view", "view", "view"], dtype=object)],
                         T.VALID_INPUT: [np.array([1, 2])], T.VALID_TARGET: [5],
                         T.TEST_INPUT: [np.array([2, 5])], T.TEST_TARGET: [3]})
    data = split_data(seqs, "test", ["purchase"])
    assert [e.tolist() for e in data.excluded] == [[1]] and data.histories[0].tolist() == [1, 2, 5]
    assert split_data(seqs, "test").excluded[0].tolist() == [1, 2, 5]  # None: every type
    with pytest.raises(ValueError, match="history_types"):
        split_data(seqs.drop(columns=[T.HISTORY_TYPES]), "test", ["purchase"])


def _reference_ranks(table: np.ndarray, targets: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """An independent masked full ranking, written as the published protocols do it: history items (target
    included) set to -inf, then rank = 1 + items scoring higher + other items scoring equal; a masked target
    never ranks within k."""
    out = []
    for row, target, history in zip(table, targets, histories):
        s = row.astype(np.float64).copy()
        s[0] = -np.inf
        s[history] = -np.inf
        if target in history:
            out.append(np.inf)
            continue
        out.append(1 + (s > s[target]).sum() + (s == s[target]).sum() - 1)
    return np.asarray(out)


def test_metrics_agree_with_an_independent_masked_ranking_with_and_without_repeats():
    rng = np.random.default_rng(3)
    n, users = 40, 300
    table = rng.normal(size=(users, n + 1)).astype(np.float32)
    table[:, 1:6] += 3  # a few strong items, often in histories: repeats would rank first if unmasked
    histories = [rng.integers(1, n + 1, size=rng.integers(1, 12)) for _ in range(users)]
    targets = rng.integers(1, n + 1, size=users)
    targets[:60] = [h[0] for h in histories[:60]]  # 60 repeat targets at least
    ranks = target_ranks(table, targets, [np.unique(h) for h in histories])
    ref = _reference_ranks(table, targets, histories)
    ours, theirs = ranking_metrics(ranks, [10]), {
        "ndcg_10": np.where(ref <= 10, 1 / np.log2(ref + 1), 0).mean(), "hr_10": (ref <= 10).mean()}
    assert ours["ndcg_10"] == pytest.approx(theirs["ndcg_10"], abs=1e-4)
    assert ours["hr_10"] == pytest.approx(theirs["hr_10"], abs=1e-4)
    repeat = np.array([t in h for t, h in zip(targets, histories)])
    assert repeat.sum() >= 60 and (ranks.numpy()[repeat] == MISSED).all()
    assert np.array_equal(ranks.numpy()[~repeat], ref[~repeat].astype(np.int64))  # no repeat: nothing moves


def test_ties_count_against_the_target():
    flat = scores([0.0, 1, 1, 1, 1, 1])
    assert target_ranks(flat, [1]).tolist() == [N]


def test_batches_give_the_same_ranks_and_lists_as_one_pass():
    rng = np.random.default_rng(0)
    table = torch.as_tensor(rng.normal(size=(7, N + 1)), dtype=torch.float32)
    inputs = np.arange(7).reshape(7, 1)  # the "input" is the row of the score table
    targets = rng.integers(1, N + 1, size=7)
    histories = [rng.integers(1, N + 1, size=k) for k in range(7)]
    score_fn = table_scorer(table)
    one = score_users(score_fn, inputs, targets, histories, N, batch_size=100, list_k=3)
    small = score_users(score_fn, inputs, targets, histories, N, batch_size=3, list_k=3)
    assert torch.equal(one[0], small[0]) and torch.equal(one[1], small[1])
    assert torch.equal(rank_users(score_fn, inputs, targets, histories, N, batch_size=3), one[0])


def _one_block(table: torch.Tensor, targets: np.ndarray, excluded: list[np.ndarray], k: int):
    """Ranks and top-k lists from one masked [users x items] block: the evaluator before item chunks."""
    mask = torch.zeros(table.shape, dtype=torch.bool)
    for row, items in enumerate(excluded):
        mask[row, torch.as_tensor(items, dtype=torch.long)] = True
    mask[:, 0] = True
    rows, targets = torch.arange(len(targets)), torch.as_tensor(targets)
    masked = table.masked_fill(mask, float("-inf"))
    own = masked[rows, targets].unsqueeze(1)
    ranks = 1 + (masked > own).sum(1) + (masked == own).sum(1) - 1
    return torch.where(mask[rows, targets], MISSED, ranks), top_k(masked, k)[1]


@pytest.mark.parametrize("item_chunk", [1, 3, 16, 40, 41, 1000])
def test_item_chunks_give_the_ranks_and_lists_of_one_full_block(item_chunk):
    rng = np.random.default_rng(item_chunk)
    n, users = 40, 60
    table = torch.as_tensor(rng.integers(0, 4, size=(users, n + 1)), dtype=torch.float32)  # ties everywhere
    table[rng.random(table.shape) < 0.05] = float("-inf")  # unrankable items, some of them targets
    excluded = [rng.choice(np.arange(1, n + 1), size=rng.integers(0, 12), replace=False) for _ in range(users)]
    excluded[0], excluded[1] = np.arange(1, n + 1), np.arange(2, n + 1)  # nothing left; only item 1 left
    targets = rng.integers(1, n + 1, size=users)
    targets[2:12] = [e[0] if len(e) else 1 for e in excluded[2:12]]  # repeats
    expected_ranks, expected_top = _one_block(table, targets, excluded, 10)
    inputs = np.arange(users).reshape(-1, 1)
    ranks, top = score_users(table_scorer(table), inputs, targets, excluded, n, batch_size=7, list_k=10,
                             item_chunk=item_chunk)
    assert torch.equal(ranks, expected_ranks) and torch.equal(top, expected_top)
    assert (ranks == MISSED).sum() >= 10 and (top == NO_ITEM).any() and len(np.unique(ranks)) > 10
    no_ranks, lists = score_users(table_scorer(table), inputs, None, excluded, n, batch_size=7, list_k=10,
                                  item_chunk=item_chunk)  # serving: no target to rank
    assert no_ranks is None and torch.equal(lists, expected_top)


def test_the_target_counts_once_at_its_own_score_when_blocks_round_differently():
    # a matmul's last bit may depend on the block's shape: here the targets' block scores 0.5 above the chunks
    shifted = lambda inputs: lambda items: items.float().expand(len(inputs), -1) + 0.5 * (len(items) == 1)  # noqa
    ranks = rank_users(shifted, np.zeros((2, 1)), np.array([3, 5]), [np.array([], np.int64)] * 2, N, batch_size=1)
    assert ranks.tolist() == [3, 1]  # 3.5 below 4 and 5, never above or below itself


def test_no_score_block_is_wider_than_item_chunk_or_taller_than_the_batch():
    shapes = []

    def recorded(inputs):
        def asked(items):
            shapes.append((len(inputs), len(items)))
            return items.float().expand(len(inputs), -1)
        return asked

    rng = np.random.default_rng(1)
    score_users(recorded, np.zeros((10, 1)), rng.integers(1, 101, size=10), [np.array([3])] * 10, 100,
                batch_size=4, list_k=5, item_chunk=16)
    assert max(rows for rows, _ in shapes) == 4 and max(columns for _, columns in shapes) == 16
    assert sum(columns for _, columns in shapes if columns == 16 or columns == 101 % 16) >= 101


def test_top_lists_skip_history_and_end_in_no_item_when_nothing_is_left():
    ranks, top = score_users(by_index, np.zeros((2, 1)), np.array([1, 2]),
                             [np.array([5, 3]), np.array([1, 2, 3, 4, 5])], N, list_k=4)
    assert top.tolist() == [[4, 2, 1, NO_ITEM], [NO_ITEM] * 4]  # user 2 saw everything, the target (a repeat) too
    assert ranks.tolist() == [3, MISSED]


def test_user_aware_scorer_gets_the_users_of_its_batch():
    seen = []

    @user_aware
    def per_user(inputs, users):
        seen.extend(users)
        out = torch.zeros(len(inputs), N + 1)
        out[torch.arange(len(users)), torch.as_tensor([int(u[1:]) for u in users])] = 1.0
        return lambda items: out[:, items]

    seqs = tiny_sequences()
    seqs[T.USER_ID] = ["u2", "u1", "u4"]  # each user's own id names its target: rank 1 (c's repeat: a miss)
    table = evaluate_all(seqs, N, [1], {"oracle": per_user}, batch_size=2)
    assert seen == ["u2", "u1", "u4"]
    assert overall(table, "oracle")["hr_1"] == pytest.approx(2 / 3)


def test_evaluate_all_slices_coverage_and_popularity_bias_by_hand():
    table = evaluate_all(tiny_sequences(), N, [1, 10], {"index": by_index}, length_edges=[3])
    # test histories before the targets: a 4 5 1, b 4 5 2, c 4 3. Targets a:2, b:1, c:4 (a repeat: a miss).
    # Item i scores i: a ranks 2 among {2, 3}; b 1 among {1, 3}; c's 4 is excluded.
    all_users = overall(table, "index")
    assert all_users["users"] == 3 and all_users["hr_1"] == 0 and all_users["mrr"] == pytest.approx(1 / 3)
    assert all_users["ndcg_10"] == pytest.approx(2 / 3 / math.log2(3))
    assert all_users["repeat_target_share"] == pytest.approx(1 / 3)
    # lists: a [3, 2], b [3, 1], c [5, 2, 1]: item 4 is listed for nobody
    assert all_users["coverage_10"] == pytest.approx(4 / N)
    # counts 1:1 2:1 3:1 4:3 5:2 -> percentile (share of items at most as popular) 1-3: .6, 4: 1, 5: .8
    assert all_users["pop_bias_10"] == pytest.approx((6 * 0.6 + 0.8) / 7)
    assert all_users["seconds"] >= 0

    by_slice = table[table["metric"] == "users"].set_index("slice")["value"].to_dict()
    # head: the top 20% of the 5 seen items = item 4 (c's target); a and b's targets are tail; nothing cold
    # lengths before the target: a 3, b 3, c 2 with edges [3] -> len_0-2 (c), len_3_up (a, b)
    assert by_slice == {"all": 3, "head": 1, "tail": 2, "len_0-2": 1, "len_3_up": 2}
    head = table[(table["slice"] == "head")].set_index("metric")["value"]
    assert head["coverage_10"] == pytest.approx(3 / N) and head["pop_bias_10"] == pytest.approx((0.8 + 1.2) / 3)
    assert head["repeat_target_share"] == 1 and head["hr_10"] == 0


def test_valid_split_uses_the_items_before_the_valid_target():
    table = evaluate_all(tiny_sequences(), N, [1], {"index": by_index}, split="valid")
    # valid histories: a 4 5, b 4 5, c 4; targets 1, 2, 3. a: 1 among {1, 2, 3} -> 3; b: 2 -> 2;
    # c: 3 among {1, 2, 3, 5} -> 2
    assert overall(table, "index")["mrr"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)


def test_popularity_slices_head_tail_cold_and_ties_at_the_threshold():
    counts = np.array([0, 9, 5, 5, 1, 0, 1, 1, 1, 1, 1])  # 9 items seen; 20% of 9 -> 2 head items: 1 and 2
    labels = popularity_slices(np.array([1, 2, 3, 4, 5]), counts)
    assert labels.tolist() == ["head", "head", "head", "tail", "cold"]  # 3 ties with 2, the last head item


def test_length_slices_name_their_bounds():
    assert length_slices(np.array([0, 9, 10, 49, 50, 500]), [10, 50]).tolist() == [
        "len_0-9", "len_0-9", "len_10-49", "len_10-49", "len_50_up", "len_50_up"]


def test_popularity_percentile_of_the_most_popular_item_is_one():
    assert popularity_percentile(np.array([0, 3, 1, 1, 0])).tolist() == [0.0, 1.0, 0.75, 0.75, 0.25]


def test_no_user_with_a_split_is_a_clear_error():
    seqs = tiny_sequences().assign(**{T.TEST_TARGET: 0})
    with pytest.raises(ValueError, match="no user has a test target"):
        evaluate_all(seqs, N, [10], {"index": by_index})
