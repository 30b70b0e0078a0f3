"""benchmarks/refresh_replay.py on hand-made ratings: the lists made at a period's start, the recent prior."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def bench(bench_script):
    return bench_script("refresh_replay")


def test_every_rating_of_the_period_is_a_target_of_the_list_made_at_its_start(bench):
    day = lambda d: pd.Timestamp(2020, 1, d)
    ratings = pd.DataFrame(
        [("u1", "a", day(1)), ("u1", "b", day(2)), ("u2", "a", day(2)), ("u1", "c", day(5)), ("u1", "new", day(6)),
         ("u1", "b", day(7)), ("u3", "c", day(6)), ("u2", "c", day(9))],  # u3: no rating before; u2's c: too late
        columns=["user_id", "item_id", "ts"])
    split = bench.next_period(ratings, day(5), day(8), ["a", "b", "c"], max_len=1)
    assert split["users"] == ["u1", "u1", "u1"]
    assert split["target_item"] == ["c", "new", "b"]
    assert split["targets"].tolist() == [3, 0, 2]  # "new" is not in the index yet: a miss for every model
    # one list per user, made before the period: the same input (the newest max_len items before day 5) for each
    # of its targets, the period's own ratings never in it; excluded: the whole history before day 5 (b repeats
    # a history item: a miss, as the serving rule would have it)
    assert split["inputs"].tolist() == [[2], [2], [2]]
    assert [e.tolist() for e in split["excluded"]] == [[1, 2]] * 3


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
