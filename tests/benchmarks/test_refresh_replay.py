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
