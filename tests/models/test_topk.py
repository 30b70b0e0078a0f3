"""The one top-k rule: ties go to the lower column, a short list ends in NO_ITEM, never an excluded item."""
import pytest
import torch

from lakerec.models.topk import NO_ITEM, merge_top_k, top_k

INF = float("-inf")


def test_best_first_and_ties_to_the_lower_column():
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.9, 0.5],
                           [2.0, 2.0, 2.0, 2.0, 2.0]])
    values, items = top_k(scores, 3)
    assert items.tolist() == [[3, 1, 2], [0, 1, 2]]  # row 0: 0.9, then the lowest two of the three 0.5s
    assert values.tolist() == [[pytest.approx(0.9), 0.5, 0.5], [2.0, 2.0, 2.0]]


def test_the_tie_rule_holds_whatever_the_column_order():
    # many ties at the cut in a wide row: torch.topk alone picks whichever its kernel meets first
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 500), generator=generator).float()
    values, items = top_k(scores, 50)
    expected = torch.stack([torch.tensor(sorted(range(500), key=lambda c: (-row[c].item(), c))[:50]) for row in scores])
    assert torch.equal(items, expected)
    assert torch.equal(values, scores.gather(1, expected))


def test_a_short_list_ends_in_no_item_and_never_lists_an_excluded_item():
    scores = torch.tensor([[INF, 0.3, INF, 0.7],
                           [INF, INF, INF, INF]])
    values, items = top_k(scores, 3)
    assert items.tolist() == [[3, 1, NO_ITEM], [NO_ITEM] * 3]
    assert values[0, :2].tolist() == [pytest.approx(0.7), pytest.approx(0.3)] and values[0, 2] == INF


def test_k_beyond_the_columns_gives_every_column_and_k_zero_none():
    values, items = top_k(torch.tensor([[1.0, 3.0]]), 10)
    assert items.tolist() == [[1, 0]] and values.shape == (1, 2)
    assert top_k(torch.tensor([[1.0, 3.0]]), 0)[1].shape == (1, 0)


def test_nan_scores_are_an_error_not_a_random_list():
    with pytest.raises(ValueError, match="NaN"):
        top_k(torch.tensor([[1.0, float("nan")]]), 1)


def _by_the_rule(row: torch.Tensor, k: int) -> list[int]:
    """The rule, written out: best score first, ties to the lower column; -inf columns become NO_ITEM."""
    ranked = sorted(range(len(row)), key=lambda c: (-row[c].item(), c))[:k]
    return [c if row[c] != INF else NO_ITEM for c in ranked]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rows_with_and_without_ties_at_the_cut_follow_the_rule_in_one_batch(dtype):
    """The fast path (no tie at the cut) and the column-order pass (a tie, or a short list) agree with the rule."""
    generator = torch.Generator().manual_seed(1)
    distinct = torch.randn(40, 300, generator=generator)
    coarse = torch.randint(0, 6, (40, 300), generator=generator).float()  # ties everywhere, at the cut too
    short = torch.where(torch.rand(40, 300, generator=generator) < 0.98, INF, distinct)  # about 6 eligible
    scores = torch.cat([distinct, coarse, short]).to(dtype)
    for k in (1, 7, 299, 300, 400):
        values, items = top_k(scores, k)
        assert items.tolist() == [_by_the_rule(row, k) for row in scores], k
        listed = items.clamp(min=0)
        assert torch.equal(values, scores.gather(1, listed).masked_fill(items == NO_ITEM, INF))


def test_a_nan_anywhere_in_a_wide_row_is_found():
    scores = torch.randn(3, 5000)
    scores[2, 4321] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        top_k(scores, 10)
    with pytest.raises(ValueError, match="NaN"):
        top_k(scores[:, 4320:4325], 5)  # k covers every column: no cut, still checked


@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_merging_chunks_in_column_order_gives_the_one_pass_list(chunk):
    """Few distinct values (many ties across chunks) and -inf columns: chunk by chunk == one pass, ties included."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (6, 40), generator=g).float()
    scores[scores == 0] = float("-inf")
    k = 5
    merged = (scores[:, :0], torch.zeros(6, 0, dtype=torch.long))
    for lo in range(0, scores.shape[1], chunk):
        values, columns = top_k(scores[:, lo:lo + chunk], k)
        merged = merge_top_k(merged, (values, columns + lo), k)
    values, columns = top_k(scores, k)
    assert torch.equal(merged[0], values)
    assert torch.equal(merged[1].masked_fill(merged[0] == float("-inf"), NO_ITEM), columns)
