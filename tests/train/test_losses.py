"""Losses on cases small enough to compute by hand, and the learning-rate schedule."""
import math

import pytest
import torch

from lakerec.train.losses import full_softmax_ce, make_loss, proposal, sampled_softmax_ce
from lakerec.train.loop import lr_schedule

# item_idx 0 (padding), 1, 2, 3 as 2-d vectors
ITEMS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
HIDDEN = torch.tensor([[1.0, 0.0], [0.0, 2.0]])


def test_full_softmax_ce_by_hand():
    # user 1 scores items 1, 2, 3 as 1, 0, 1 and its target is 1; user 2 scores 0, 2, 2 with target 3
    loss = full_softmax_ce(HIDDEN, ITEMS, torch.tensor([1, 3]))
    first = -math.log(math.e / (math.e + 1 + math.e))
    second = -math.log(math.e ** 2 / (1 + 2 * math.e ** 2))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_sampled_softmax_subtracts_log_q_and_masks_the_own_target():
    log_q = torch.log(torch.tensor([1e-9, 0.5, 0.25, 0.25]))
    negatives = torch.tensor([2, 3, 1])
    loss = sampled_softmax_ce(HIDDEN, ITEMS, torch.tensor([1, 3]), negatives, log_q)
    lq = [None, math.log(0.5), math.log(0.25), math.log(0.25)]
    # user 1, target 1: positive 1 - lq1; negatives 2 and 3 (item 1 among the negatives is its own target: out)
    pos1, negs1 = 1 - lq[1], [0 - lq[2], 1 - lq[3]]
    first = -pos1 + math.log(math.exp(pos1) + sum(map(math.exp, negs1)))
    # user 2, target 3: positive 2 - lq3; negatives 2 and 1 (3 is out)
    pos2, negs2 = 2 - lq[3], [2 - lq[2], 0 - lq[1]]
    second = -pos2 + math.log(math.exp(pos2) + sum(map(math.exp, negs2)))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_proposal_follows_counts_and_never_draws_padding():
    q = proposal(torch.tensor([50, 3, 1, 0]))
    assert q.tolist() == pytest.approx([0.0, 4 / 7, 2 / 7, 1 / 7])
    torch.manual_seed(0)
    loss = make_loss("sampled", 64, torch.tensor([50, 3, 1, 0]))
    value = loss(HIDDEN.requires_grad_(), ITEMS, torch.tensor([1, 3]))
    value.backward()
    assert torch.isfinite(value) and HIDDEN.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="item counts"):
        make_loss("sampled", 8)
    assert make_loss("ce", 8) is full_softmax_ce


@pytest.mark.parametrize("decay, end", [("cosine", 0.0), ("linear", 0.0), ("constant", 1.0)])
def test_warm_up_then_decay(make_cfg, decay, end):
    conf = make_cfg("train.warmup_steps=4", "train.epochs=3", f"train.decay={decay}").train
    f = lr_schedule(conf, steps_per_epoch=10)  # 30 steps
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(30) == pytest.approx(end)
    if decay == "cosine":
        assert f(17) == pytest.approx(0.5)  # half-way through the 26 decay steps
    if decay == "linear":
        assert f(17) == pytest.approx(0.5)


def test_sampled_loss_on_a_large_catalog_allocates_per_item_or_per_negative_never_per_row_and_item():
    # 200k items, 512 rows: a [rows x items] logit block would be 400 MiB; the item gradient is 6 MiB
    n_items, rows, dim = 200_000, 512, 8
    loss_fn = make_loss("sampled", 64, torch.ones(n_items + 1))
    items = torch.randn(n_items + 1, dim, requires_grad=True)
    hidden = torch.randn(rows, dim, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_fn(hidden, items, torch.randint(1, n_items + 1, (rows,))).backward()
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert (n_items + 1) * dim * 4 <= largest < rows * n_items * 4 / 20
    assert items.grad.shape == items.shape
