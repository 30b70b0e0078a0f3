"""Batch scoring steps with real Spark and a real (untrained, seeded) SASRec: user states from events, candidates,
the fallback, N ranked rows a user with reasons from the history, exclusions, bad input."""
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

from lakerec import tables as T
from lakerec.config import CandidatesConf, ScoreConf
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.score.batch import (EXCLUDE, REASON_HISTORY, REASON_POPULAR, Candidates, ScoringInputError,
                                 candidate_items, item_users, popularity, recent_prior, score_users,
                                 user_states)

L, N_ITEMS = 6, 12
ITEM_IDS = [f"i{k:02d}" for k in range(1, N_ITEMS + 1)]  # item_idx k -> "i<k>"
T0 = datetime(2026, 11, 1)
EVENTS = f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.EVENT_TYPE} string, {T.TS} timestamp"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=L, dim=8, layers=2, heads=2)).eval()


def _events(spark, histories: dict[str, list], start=T0):
    """histories: user -> [item_id or (item_id, event_type)], one event a minute in that order."""
    rows = []
    for user, items in histories.items():
        for i, item in enumerate(items):
            item, kind = item if isinstance(item, tuple) else (item, "view")
            rows.append((f"{user}-{i}", user, item, kind, start + timedelta(minutes=i)))
    return spark.createDataFrame(rows, EVENTS)


def _all_items():
    idx = np.arange(1, N_ITEMS + 1, dtype=np.int64)
    return Candidates(idx, np.zeros(N_ITEMS, dtype=np.float32))


def _score(spark, model, events, conf: ScoreConf, candidates=None):
    users = user_states(events, ITEM_IDS, L, conf.exclude_event_types)
    return score_users(spark, users.repartition(3), model, ITEM_IDS, candidates or _all_items(), conf).toPandas()


def test_user_states_keep_the_newest_known_items_in_order_and_what_to_exclude(spark):
    events = _events(spark, {"a": ["i03", ("i05", "purchase"), "zz", "i03", "i07", "i08", "i09", "i10", "i11"],
                             "b": ["zz", "yy"]})
    got = {r[T.USER_ID]: r for r in user_states(events, ITEM_IDS, L, ["purchase"]).collect()}
    assert got["a"][T.SCORE_INPUT] == [5, 3, 7, 8, 9, 10, 11][-L:]  # unknown "zz" dropped, newest L kept
    assert got["a"][EXCLUDE] == [5]  # only the purchase
    assert got["b"][T.SCORE_INPUT] == [0] * L and got["b"][EXCLUDE] == []  # cold: nothing the model knows
    every_type = {r[T.USER_ID]: r for r in user_states(events, ITEM_IDS, L, None).collect()}
    assert sorted(every_type["a"][EXCLUDE]) == [3, 5, 7, 8, 9, 10, 11]


def test_every_user_gets_n_ranked_unseen_items_with_a_reason_from_their_history(spark, model):
    rng = np.random.default_rng(1)
    histories = {f"u{u}": [ITEM_IDS[i] for i in rng.integers(0, N_ITEMS, size=u % 9 + 1)] for u in range(40)}
    conf = ScoreConf(top_n=4, batch_size=7)  # batches smaller than partitions: the batching path runs
    out = _score(spark, model, _events(spark, histories), conf)
    assert len(out) == 40 * 4
    for user, rows in out.groupby(T.USER_ID):
        rows = rows.sort_values(T.RANK)
        assert rows[T.RANK].tolist() == [1, 2, 3, 4]
        assert not set(rows[T.ITEM_ID]) & set(histories[user])
        assert rows[T.SCORE].tolist() == sorted(rows[T.SCORE], reverse=True)
        assert set(rows[T.REASON_ITEM_ID]) <= set(histories[user][-L:])
        assert (rows[T.REASON_KIND] == REASON_HISTORY).all()
    # the same top-N the model gives on the driver
    h = [ITEM_IDS.index(i) + 1 for i in histories["u5"]]
    with torch.no_grad():
        scores = model.user_vectors(torch.tensor([[0] * (L - len(h[-L:])) + h[-L:]])) @ model.item_vectors().T
    scores[0, 0] = -np.inf
    scores[0, h] = -np.inf
    expected = [ITEM_IDS[i - 1] for i in torch.topk(scores[0], 4).indices.tolist()]
    assert out[out[T.USER_ID] == "u5"].sort_values(T.RANK)[T.ITEM_ID].tolist() == expected


def test_the_reason_is_the_history_item_that_points_to_the_recommendation(spark, model):
    """Items 3 and 4 copy the vectors of items 1 and 2: whatever the attention, 3 is recommended because of 1."""
    with torch.no_grad():
        weights = torch.zeros_like(model.item_emb.weight)
        for item, axis in ((1, 0), (2, 1), (3, 0), (4, 1)):
            weights[item, axis] = 1.0
        model.item_emb.weight.copy_(weights)
    candidates = Candidates(np.array([3, 4]), np.zeros(2, dtype=np.float32))
    out = _score(spark, model, _events(spark, {"u": ["i01", "i02"]}), ScoreConf(top_n=2), candidates)
    assert dict(zip(out[T.ITEM_ID], out[T.REASON_ITEM_ID])) == {"i03": "i01", "i04": "i02"}


def test_only_the_configured_event_types_are_excluded(spark, model):
    history = [(i, "view") for i in ITEM_IDS[:6]] + [(ITEM_IDS[6], "purchase")]
    events = _events(spark, {"u": history})
    only_purchases = _score(spark, model, events, ScoreConf(top_n=N_ITEMS - 1, exclude_event_types=["purchase"]))
    assert ITEM_IDS[6] not in set(only_purchases[T.ITEM_ID])
    assert set(ITEM_IDS[:6]) <= set(only_purchases[T.ITEM_ID])  # 11 of the 11 allowed items: the views come back
    everything = _score(spark, model, events, ScoreConf(top_n=5))
    assert not set(everything[T.ITEM_ID]) & set(ITEM_IDS[:7])


def test_a_user_who_saw_nearly_everything_still_gets_n_rows(spark, model):
    out = _score(spark, model, _events(spark, {"greedy": ITEM_IDS[:-1]}), ScoreConf(top_n=3))
    assert len(out) == 3
    assert out.sort_values(T.RANK)[T.ITEM_ID].iloc[0] == ITEM_IDS[-1]  # the unseen item ranks first


def test_cold_users_get_recent_popularity_marked_as_such(spark, model):
    old, new = T0, T0 + timedelta(days=60)
    events = (_events(spark, {f"old{u}": ["i01", "i02"][: 1 + (u < 4)] for u in range(5)}, old)  # popular long ago
              .union(_events(spark, {f"new{u}": ["i09", "i10"][: 1 + u % 2] for u in range(3)}, new)))
    recent, total = item_users(events, ITEM_IDS, [30])
    pop = popularity(recent[0], total)
    assert pop[9] > pop[10] > pop[1] > pop[2] > pop[3] == 0  # recent users first (3, 1), then all time (5, 4)
    cold_events = events.union(_events(spark, {"stranger": ["zz", "yy"]}, new))
    candidates = Candidates(np.arange(1, N_ITEMS + 1, dtype=np.int64), pop[1:])
    out = _score(spark, model, cold_events, ScoreConf(top_n=4), candidates)
    stranger = out[out[T.USER_ID] == "stranger"].sort_values(T.RANK)
    assert stranger[T.ITEM_ID].tolist() == ["i09", "i10", "i01", "i02"]
    assert (stranger[T.REASON_KIND] == REASON_POPULAR).all() and stranger[T.REASON_ITEM_ID].isna().all()
    assert (out[out[T.USER_ID] != "stranger"][T.REASON_KIND] == REASON_HISTORY).all()


def test_recent_users_count_each_user_once_inside_the_window_only(spark):
    old, new = T0, T0 + timedelta(days=60)
    events = (_events(spark, {"a": ["i01", "i01", "i02"], "b": ["i01"]}, new)  # a touches i01 twice: one user
              .union(_events(spark, {"c": ["i02", "i03"], "d": ["i03"]}, old)))
    (recent, wide), total = item_users(events, ITEM_IDS, [7, 90])
    assert recent[:5].tolist() == [0, 2, 1, 0, 0] and total[:5].tolist() == [0, 2, 2, 2, 0]
    assert wide[:5].tolist() == total[:5].tolist()  # 90 days reach back to the old events
    assert recent_prior(recent, 2.0)[:4].tolist() == pytest.approx([0, 2 * np.log(3), 2 * np.log(2), 0])


def test_the_recent_prior_adds_weight_log1p_n_to_the_models_scores(spark, model):
    """gold.topn with a prior is the driver's ranking of logit + prior (the extra product dimension changes nothing
    else), and a prior heavy enough puts the recent items first."""
    rng = np.random.default_rng(2)
    histories = {f"u{u}": [ITEM_IDS[i] for i in rng.integers(0, N_ITEMS, size=u % 5 + 1)] for u in range(20)}
    prior = recent_prior(np.array([0, 5, 0, 0, 1, 0, 9, 0, 0, 0, 2, 0, 0]), 0.7)
    candidates = Candidates(np.arange(1, N_ITEMS + 1, dtype=np.int64), np.zeros(N_ITEMS, np.float32), prior[1:])
    out = _score(spark, model, _events(spark, histories), ScoreConf(top_n=4), candidates)
    for user in ("u3", "u14"):
        h = [ITEM_IDS.index(i) + 1 for i in histories[user]]
        with torch.no_grad():
            scores = model.user_vectors(torch.tensor([[0] * (L - len(h[-L:])) + h[-L:]])) @ model.item_vectors().T
        scores = scores[0] + torch.as_tensor(prior)
        scores[[0, *h]] = -np.inf
        expected = torch.topk(scores, 4)
        rows = out[out[T.USER_ID] == user].sort_values(T.RANK)
        assert rows[T.ITEM_ID].tolist() == [ITEM_IDS[i - 1] for i in expected.indices.tolist()]
        assert rows[T.SCORE].to_numpy() == pytest.approx(expected.values.numpy(), abs=1e-5)
    heavy = Candidates(candidates.item_idx, candidates.popularity, recent_prior(np.eye(N_ITEMS)[5] * 1e6, 1.0))
    out = _score(spark, model, _events(spark, {"u": ["i01"]}), ScoreConf(top_n=2), heavy)
    assert out.sort_values(T.RANK)[T.ITEM_ID].iloc[0] == "i06"  # the only recent item leads


def test_candidate_filters_combine_table_categories_and_blocked_items(spark):
    allowed = spark.createDataFrame([(i, i != "i04") for i in ITEM_IDS[:8]], f"{T.ITEM_ID} string, available boolean")
    catalog = spark.createDataFrame([(i, ["noir"] if k % 2 else ["comedy", "war"]) for k, i in enumerate(ITEM_IDS)],
                                    f"{T.ITEM_ID} string, {T.CATEGORIES} array<string>")
    conf = CandidatesConf(table="gold.candidates", categories=["comedy"], exclude_items=["i05"])
    # allowed i01..i08 minus unavailable i04; comedy = even positions i01 i03 i05 i07 ...; i05 blocked
    assert candidate_items(ITEM_IDS, conf, allowed, catalog).tolist() == [1, 3, 7]
    assert candidate_items(ITEM_IDS, CandidatesConf()).tolist() == list(range(1, N_ITEMS + 1))


def test_empty_or_too_small_candidate_sets_are_clear_errors(spark, model):
    with pytest.raises(ScoringInputError, match="empty candidate set"):
        candidate_items(ITEM_IDS, CandidatesConf(exclude_items=ITEM_IDS))
    two = Candidates(np.array([1, 2]), np.zeros(2, dtype=np.float32))
    with pytest.raises(ScoringInputError, match="fewer than score.top_n"):
        _score(spark, model, _events(spark, {"u": ["i01"]}), ScoreConf(top_n=3), two)
