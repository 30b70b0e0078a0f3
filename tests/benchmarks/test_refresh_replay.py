"""benchmarks/refresh_replay.py's targets: every rating of the next period, next-item, on hand-made ratings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def bench(bench_script):
    return bench_script("refresh_replay")


def test_every_rating_of_the_period_is_a_target_with_the_history_before_it(bench):
    day = lambda d: pd.Timestamp(2020, 1, d)
    ratings = pd.DataFrame(
        [("u1", "a", day(1)), ("u1", "b", day(2)), ("u2", "a", day(2)), ("u1", "c", day(5)), ("u1", "new", day(6)),
         ("u1", "b", day(7)), ("u3", "c", day(6)), ("u2", "c", day(9))],  # u3: no rating before; u2's c: too late
        columns=["user_id", "item_id", "ts"])
    split = bench.next_period(ratings, day(5), day(8), ["a", "b", "c"], max_len=2)
    assert split["users"] == ["u1", "u1", "u1"]
    assert split["target_item"] == ["c", "new", "b"]
    assert split["targets"].tolist() == [3, 0, 2]  # "new" is not in the index yet: a miss for every model
    # inputs: the newest max_len known items before each target, the period's own ratings included
    assert split["inputs"].tolist() == [[1, 2], [2, 3], [2, 3]]
    # excluded: the whole known history, not only the input window (b repeats: its own earlier rating is history)
    assert [e.tolist() for e in split["excluded"]] == [[1, 2], [1, 2, 3], [1, 2, 3]]


def test_the_recent_prior_multiplies_the_models_softmax_and_its_weight_comes_from_a_past_period(bench):
    import torch

    from lakerec.evaluate.baselines import same_for_everyone

    logits = torch.tensor([0.0, 2.0, 1.0, 0.0])           # the model prefers item 1, then 2
    counts = torch.tensor([0.0, 0.0, 0.0, 63.0])           # item 3 is what everyone rates this week
    model = same_for_everyone(logits)
    items = torch.arange(4)
    assert torch.equal(bench.with_recent(model, counts, 0.0)(torch.zeros(1, 2))(items)[0], logits)
    blended = bench.with_recent(model, counts, 0.5)(torch.zeros(1, 2))(items)[0]
    assert torch.allclose(blended, logits + 0.5 * torch.log(torch.tensor([1.0, 1.0, 1.0, 64.0])))  # 3 = ln 64 / 2
    past = lambda target: {"inputs": np.zeros((4, 2), np.int64), "targets": np.full(4, target),
                           "excluded": [np.array([], np.int64)] * 4}
    # a past period whose ratings went to the model's favourite: no prior; to the week's hit: the smallest weight
    # that puts item 3 first (ln 64 x w > 2: w = 0.5; 0.25 only reaches 1.04)
    assert bench.pick_weight(model, counts, past(1), 3) == 0.0
    assert bench.pick_weight(model, counts, past(3), 3) == 0.5
