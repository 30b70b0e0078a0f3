"""Seed statistics and the paired tests over users, on hand-made numbers."""
import math

import numpy as np
import pytest
import torch

from lakerec.evaluate.metrics import MISSED
from lakerec.evaluate.report import ranks_frame
from lakerec.evaluate.stats import mean_sd, paired_test, per_user_ndcg


def test_mean_sd_is_the_sample_sd():
    assert mean_sd([0.10, 0.12, 0.14]) == pytest.approx((0.12, 0.02))
    mean, sd = mean_sd([0.3])
    assert mean == 0.3 and math.isnan(sd)
    assert all(math.isnan(x) for x in mean_sd([]))


def test_per_user_ndcg_by_hand_and_missed_is_zero():
    got = per_user_ndcg([1, 3, 10, 11, MISSED], k=10)
    assert got == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0, 0.0])


def test_paired_t_by_hand():
    a, b = [0.5, 0.6, 0.9, 0.4], [0.4, 0.4, 0.6, 0.4]  # differences 0.1, 0.2, 0.3, 0.0
    r = paired_test(a, b, resamples=2000)
    # mean .15, sd sqrt(((-.05)^2 + .05^2 + .15^2 + .15^2) / 3) = .1291, t = .15 / (.1291 / 2) = 2.324
    assert r.diff == pytest.approx(0.15) and r.t == pytest.approx(2.3238, abs=1e-3)
    assert r.p_t == pytest.approx(0.1028, abs=1e-3)  # 3 degrees of freedom, two-sided
    assert 0 <= r.ci_low <= r.diff <= r.ci_high <= 0.3


def test_bootstrap_separates_a_real_gap_from_noise():
    rng = np.random.default_rng(1)
    base = rng.random(400)
    win = paired_test(base + 0.05 + rng.normal(0, 0.01, 400), base)
    assert win.p_boot < 0.001 and win.p_t < 1e-10 and win.ci_low > 0.04
    noise = paired_test(base + rng.normal(0, 0.05, 400), base)
    assert noise.p_boot > 0.05 and noise.ci_low < 0 < noise.ci_high
    assert paired_test([1.0, 1.0], [0.0, 0.0]).p_t == 0.0  # a constant gap: no variance, certain
    with pytest.raises(ValueError, match="equal-length"):
        paired_test([1.0, 2.0], [1.0])


def test_ranks_frame_keeps_users_aligned():
    frame = ranks_frame(np.array(["u1", "u2"]), {"sasrec": torch.tensor([1, MISSED]), "pop": torch.tensor([4, 2])})
    assert list(frame.columns) == ["user_id", "sasrec", "pop"]
    assert frame["sasrec"].tolist() == [1, MISSED] and frame["pop"].tolist() == [4, 2]
