"""Item-age prior: buckets, the propensity learned from events at their own time, no future information, and the
blend lifting a just-released item without ID history; hand-made data (real Spark for the event split)."""
import datetime

import numpy as np
import torch

from lakerec import tables as T
from lakerec.evaluate import itemage as A
from lakerec.evaluate.baselines import release_dates, same_for_everyone


def test_age_buckets_and_unreleased():
    b = A.age_buckets(np.array([0, 29, 30, 100, 5000, -1, np.nan]), edges=(30, 90))
    assert b.tolist() == [0, 0, 1, 2, 2, -1, -1]


def test_propensity_counts_each_event_at_its_own_time():
    # items 1, 2 released day 0, item 3 released day 100; every event picks the youngest item released by then
    released = np.array([np.nan, 0.0, 0.0, 100.0])
    days = np.array([5.0, 5.0, 105.0, 105.0, 105.0])
    items = np.array([1, 2, 3, 3, 3])
    p = A.age_propensity(items, days, released, edges=(30,), smoothing=0.0)
    # day 5: items 1, 2 young (exposure 2 x 2 events); day 105: item 3 young, 1 and 2 old (1 and 2 per event x 3)
    assert np.allclose(p, [(2 + 3) / (4 + 3), 0 / 6])
    # an item released after an event is not exposed at it: item 3 does not count at day 5
    with np.errstate(invalid="ignore"):  # no old item is exposed by day 5: 0 / 0 in that bucket
        only_early = A.age_propensity(items[:2], days[:2], released, edges=(30,), smoothing=0.0)
    assert np.allclose(only_early[0], 2 / 4)


def test_blend_lifts_young_items_without_history_only():
    released = np.array([np.nan, 0.0, 0.0, 95.0, 10.0])  # items 3 and 4 have no ID history
    propensity = np.array([0.5, 0.01])  # young items (< 30 days) are picked 50x as often
    no_history = np.array([False, False, False, True, True])
    base_scores = torch.tensor([0.0, 1.2, 1.1, 1.0, 1.0])
    base = same_for_everyone(base_scores)
    scorer = A.age_prior_scorer(base, {"u": 100.0, "v": 20.0}, released, propensity, no_history, edges=(30,))
    assert scorer.needs_users
    out = scorer(torch.zeros(2, 3, dtype=torch.long), np.array(["u", "v"]))(torch.arange(5))
    assert out.shape == (2, 5)
    assert out[0].argmax().item() == 3  # at day 100 item 3 is 5 days old: lifted above the warm items
    assert out[0, 4] < out[0, 2]  # item 4 is 90 days old at day 100: lowered
    assert out[1, 3] < out[1, 4]  # at day 20 item 3 is not yet released: the lowest prior; item 4 is 10 days old
    assert torch.equal(out[0, 1:3], out[1, 1:3])  # warm items keep their standardised base scores
    standard = (base_scores - base_scores.mean()) / base_scores.std()
    assert torch.allclose(out[0, :3], standard[:3], atol=1e-6)  # the row's moments, computed chunk by chunk


def test_events_before_test_drop_each_users_newest_and_items_without_history(spark):
    ts = lambda d: datetime.datetime(2020, 1, d, 12)
    events = spark.createDataFrame(
        [("e1", "u1", "a", ts(1)), ("e2", "u1", "b", ts(2)), ("e3", "u1", "c", ts(3)),
         ("e4", "u2", "c", ts(2)), ("e5", "u2", "a", ts(5)), ("e6", "u2", "zz", ts(1))],
        f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.TS} timestamp")
    no_history = np.array([False, False, True, False])  # item b (idx 2) is held out
    out = A.events_before_test(A.events_but_newest(events), ["a", "b", "c"], no_history)
    got = sorted(zip(out[T.USER_ID], out[T.ITEM_IDX], out["day"]))
    first = (datetime.date(2020, 1, 1) - datetime.date(1970, 1, 1)).days
    # u1: c is the newest (test target), b is held out; u2: a is the newest, zz is outside the index
    assert got == [("u1", 1, first), ("u2", 3, first + 1)]


def test_an_undated_items_release_day_never_comes_from_a_test_target(spark):
    ts = lambda d: datetime.datetime(2020, 1, d, 12)
    events = spark.createDataFrame(
        [("e1", "u1", "a", ts(1)), ("e2", "u1", "n", ts(3)),                          # u1's target: n, day 3
         ("e3", "u2", "a", ts(2)), ("e4", "u2", "n", ts(5)), ("e5", "u2", "m", ts(6))],  # u2's target: m
        f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.TS} timestamp")
    items = spark.createDataFrame([("a", None), ("n", None), ("m", None)], f"{T.ITEM_ID} string, {T.PUBLISHED} date")
    leaky = release_dates(items, events, ["a", "n", "m"])
    seen = release_dates(items, A.events_but_newest(events), ["a", "n", "m"])
    assert [str(d) for d in leaky[1:]] == ["2020-01-01", "2020-01-03", "2020-01-06"]  # dated by the targets
    # n: first seen outside a target on day 5; m: only ever a target, so undated
    assert [str(d) for d in seen[1:]] == ["2020-01-01", "2020-01-05", "NaT"]
    assert set(A.events_but_newest(events).columns) == set(events.columns)
