"""score.precision = bf16 with real Spark: the same gold.topn rows as fp32 (items, ranks, scores, reasons), whether
the bf16 shortlist is proven (well-separated scores) or the user falls back to fp32 (near-ties at the cut, fewer
allowed candidates than the shortlist, a group too small), and the bf16 error bound the proof rests on."""
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from lakerec import tables as T
from lakerec.config import ScoreConf
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.score.batch import _U, EXCLUDE, Candidates, ScoreCounters, recent_prior, score_users, user_states

L, DIM = 8, 16
T0 = datetime(2026, 11, 1)
EVENTS = f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.EVENT_TYPE} string, {T.TS} timestamp"


def _model(n_items: int, seed: int = 0) -> SASRec:
    """An untrained SASRec whose item vectors are standard normal: scores spread well apart."""
    torch.manual_seed(seed)
    model = SASRec(SASRecConfig(n_items=n_items, max_len=L, dim=DIM, layers=1, heads=1)).eval()
    with torch.no_grad():
        model.item_emb.weight.normal_()
    return model


def _events(spark, histories: dict[str, list[str]]):
    rows = [(f"{user}-{i}", user, item, "view", T0 + timedelta(minutes=i))
            for user, items in histories.items() for i, item in enumerate(items)]
    return spark.createDataFrame(rows, EVENTS)


def _random_histories(item_ids: list[str], n_users: int, longest: int, seed: int = 1) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {f"u{u:03d}": [item_ids[i] for i in rng.choice(len(item_ids), size=rng.integers(1, longest + 1),
                                                          replace=False)]
            for u in range(n_users)}


def _both(spark, model, item_ids, events, conf: ScoreConf, candidates=None, partitions: int = 2):
    """(fp32 rows, bf16 rows, counters of the bf16 run), each sorted by user and rank."""
    candidates = candidates or Candidates(np.arange(1, len(item_ids) + 1), np.zeros(len(item_ids), np.float32))
    users = user_states(events, item_ids, L, conf.exclude_event_types).repartition(partitions).persist()
    counters = ScoreCounters.create(spark)
    out = []
    for precision in ("fp32", "bf16"):
        run = conf.model_copy(update={"precision": precision})
        rows = score_users(spark, users, model, item_ids, candidates, run,
                           counters=counters if precision == "bf16" else None).toPandas()
        out.append(rows.sort_values([T.USER_ID, T.RANK]).reset_index(drop=True))
    users.unpersist()
    return out[0], out[1], counters


def test_bf16_gives_the_fp32_rows_where_scores_are_well_separated(spark):
    item_ids = [f"i{k:03d}" for k in range(1, 401)]
    histories = _random_histories(item_ids, 60, L)
    fp32, bf16, counters = _both(spark, _model(len(item_ids)), item_ids, _events(spark, histories),
                                 ScoreConf(top_n=5))
    assert len(fp32) == 60 * 5
    pd.testing.assert_frame_equal(bf16, fp32)  # scores too: the re-rank computes fp32's floats
    assert counters.shortlisted.value == 60 and counters.fallback.value == 0  # every user from the bf16 shortlist
    assert ScoreConf(top_n=5).shortlist_size == 20


def test_near_ties_at_the_cut_fall_back_to_fp32_and_keep_its_rows(spark):
    """200 items share one bf16 vector (their fp32 vectors differ below bf16's resolution) and lead the lists of
    the users facing them: a 20-item shortlist cannot hold the tie group, so which 5 of its 200 items are fp32's top
    is invisible in bf16. The proof fails for those users, who are scored in fp32; the others keep the shortlist."""
    n_plain, n_tied = 300, 200
    item_ids = [f"i{k:03d}" for k in range(1, n_plain + n_tied + 1)]
    model = _model(len(item_ids))
    histories = _random_histories(item_ids[:n_plain], 80, L)  # histories of plain items: user vectors stay put
    users = user_states(_events(spark, histories), item_ids, L, None).toPandas().sort_values(T.USER_ID)
    with torch.no_grad():
        user_vectors = model.user_vectors(torch.tensor(np.stack(users[T.SCORE_INPUT].to_numpy()), dtype=torch.long))
        centred = user_vectors - user_vectors.mean(0)
        direction = torch.nn.functional.normalize(centred[0], dim=0)  # towards some users, away from others
        base = (direction * 4 * model.item_emb.weight[1:n_plain + 1].norm(dim=1).max()).bfloat16().float()
        jitter = torch.rand(n_tied, 1, generator=torch.Generator().manual_seed(3)) * 1e-3  # << bf16's 2^-8
        model.item_emb.weight[n_plain + 1:] = base * (1 + jitter)
        tied = model.item_emb.weight[n_plain + 1:]
        assert (tied.bfloat16() == base.bfloat16()).all()  # one vector in bf16
        scores = user_vectors @ model.item_vectors()[1:].T
        bf16_scores = (user_vectors.bfloat16() @ model.item_vectors()[1:].T.bfloat16()).float()
        for row, seen in enumerate(users[EXCLUDE]):
            scores[row, np.asarray(seen) - 1] = bf16_scores[row, np.asarray(seen) - 1] = float("-inf")
    fp32_best = torch.topk(scores, 5, dim=1).indices
    facing = (fp32_best >= n_plain).any(1)  # users whose fp32 top 5 reaches into the tie group
    assert 0 < int(facing.sum()) < len(users)
    bf16_short = torch.topk(bf16_scores, 20, dim=1).indices  # a shortlist taken on trust
    trusted_misses = [not set(fp32_best[r].tolist()) <= set(bf16_short[r].tolist()) for r in range(len(users))]
    assert any(trusted_misses)  # without the proof some published list would be wrong

    fp32, bf16, counters = _both(spark, model, item_ids, _events(spark, histories), ScoreConf(top_n=5))
    pd.testing.assert_frame_equal(bf16, fp32)
    assert counters.fallback.value >= int(facing.sum())
    assert counters.shortlisted.value > 0 and counters.shortlisted.value + counters.fallback.value == len(users)


def test_too_few_allowed_candidates_or_users_take_fp32_with_its_rows(spark):
    """A user with no more allowed candidates than the shortlist (one who saw most of the catalog gets some seen
    items back to fill N rows), a candidate set no larger than the shortlist, and a group under 8 users: fp32."""
    item_ids = [f"i{k:02d}" for k in range(1, 41)]
    model = _model(len(item_ids))
    histories = _random_histories(item_ids, 30, 6)  # at least 34 allowed: more than the shortlist of 20
    histories |= {f"w{u}": item_ids[u:u + 21] for u in range(10)}  # 19 allowed: fewer
    histories["x"] = item_ids[:38]  # 2 allowed: 3 of the 5 rows are seen items
    conf = ScoreConf(top_n=5, batch_size=64)
    fp32, bf16, counters = _both(spark, model, item_ids, _events(spark, histories), conf, partitions=1)
    pd.testing.assert_frame_equal(bf16, fp32)
    assert len(bf16[bf16[T.USER_ID] == "x"]) == 5
    assert (counters.shortlisted.value, counters.fallback.value) == (30, 11)

    few = Candidates(np.arange(1, 21), np.zeros(20, np.float32))  # 20 candidates: the shortlist would be all
    fp32, bf16, counters = _both(spark, model, item_ids, _events(spark, histories), conf, few, partitions=1)
    pd.testing.assert_frame_equal(bf16, fp32)
    assert (counters.shortlisted.value, counters.fallback.value) == (0, 41)

    small = {u: h for u, h in list(histories.items())[:7]}  # one group of 7 users
    fp32, bf16, counters = _both(spark, model, item_ids, _events(spark, small), conf, partitions=1)
    pd.testing.assert_frame_equal(bf16, fp32)
    assert (counters.shortlisted.value, counters.fallback.value) == (0, 7)


def test_item_chunks_change_no_row_in_either_precision(spark):
    """score.item_chunk bounds memory only: candidates scored in chunks (of 57, or of 7, fewer than the shortlist)
    give the rows of one block, for model users (fp32 and bf16, with a near-everything-seen user) and cold users
    (the popularity fallback, with tied popularity across chunks)."""
    item_ids = [f"i{k:03d}" for k in range(1, 401)]
    histories = _random_histories(item_ids, 40, L) | {"all": item_ids[:396], "cold": ["unknown"]}
    popular = np.random.default_rng(5).integers(0, 4, len(item_ids)).astype(np.float32)  # many ties
    candidates = Candidates(np.arange(1, len(item_ids) + 1), popular)
    events, model = _events(spark, histories), _model(len(item_ids))
    whole = _both(spark, model, item_ids, events, ScoreConf(top_n=5), candidates, partitions=1)[0]
    assert (whole[T.USER_ID] == "cold").sum() == 5 and (whole[T.REASON_KIND] == "popular").sum() == 5
    for chunk in (57, 7):
        fp32, bf16, counters = _both(spark, model, item_ids, events, ScoreConf(top_n=5, item_chunk=chunk),
                                     candidates, partitions=1)
        pd.testing.assert_frame_equal(fp32, whole)
        pd.testing.assert_frame_equal(bf16, whole)
        assert counters.shortlisted.value > 0  # the chunked bf16 shortlist proved users, not only fell back


def test_bf16_with_the_recent_prior_gives_the_fp32_rows(spark):
    """The prior is one more product dimension: the bf16 proof covers it, the lists stay fp32's."""
    item_ids = [f"i{k:03d}" for k in range(1, 401)]
    histories = _random_histories(item_ids, 60, L)
    recent = np.random.default_rng(3).poisson(3.0, len(item_ids))
    candidates = Candidates(np.arange(1, len(item_ids) + 1), np.zeros(len(item_ids), np.float32),
                            recent_prior(recent, 1.5))
    fp32, bf16, counters = _both(spark, _model(len(item_ids)), item_ids, _events(spark, histories),
                                 ScoreConf(top_n=5), candidates)
    plain = _both(spark, _model(len(item_ids)), item_ids, _events(spark, histories), ScoreConf(top_n=5))[0]
    pd.testing.assert_frame_equal(bf16, fp32)
    assert counters.shortlisted.value > 0
    assert (fp32[T.ITEM_ID] != plain[T.ITEM_ID]).any()  # the prior moved some lists


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_torch_bf16_products_stay_within_the_bound_the_proof_uses(scale):
    """|bf16 score - exact score| <= c1 |bf16 score| + c2 ||u|| ||v||: inputs rounded to bf16, products summed in
    fp32, the sum rounded to bf16. A backend that summed in bf16 would break it (and this test)."""
    generator = torch.Generator().manual_seed(0)
    d = 64
    users = torch.randn(64, d, generator=generator) * scale
    items = torch.randn(d, 5000, generator=generator) * torch.rand(1, 5000, generator=generator) * scale
    approx = (users.bfloat16() @ items.bfloat16()).double()
    exact = users.double() @ items.double()
    g = d * 2.0 ** -24 / (1 - d * 2.0 ** -24)
    c1, c2 = _U / (1 - _U), 2 * _U + _U * _U + g * (1 + _U) ** 2
    bound = c1 * approx.abs() + c2 * users.double().norm(dim=1, keepdim=True) * items.double().norm(dim=0)
    assert ((approx - exact).abs() <= bound).all()
    assert ((approx - exact).abs() > bound / 100).any()  # the bound is not vacuous: errors come near it
