"""Is a model's win over a baseline more than noise? Mean ± sd over training seeds, and paired tests over the
same test users of per-user NDCG@k (a user's two scores share that user's difficulty, so pairing removes it).

- `mean_sd`: mean and sample standard deviation (ddof 1) over seeds; sd NaN for a single seed.
- `per_user_ndcg`: 1/log2(rank+1) within k, else 0 (the metrics module's ranks, MISSED included).
- `paired_test`: the paired t-test (scipy.stats.ttest_rel, two-sided) and a seeded paired bootstrap of the
  mean difference (95% percentile interval and the share of resamples where the sign flips, two-sided).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample sd) over seeds; (nan, nan) for none, sd nan for one."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan


def per_user_ndcg(ranks: Sequence[int] | np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each user with one relevant item: 1/log2(rank+1) if rank <= k, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    out = np.zeros_like(r)
    hit = r <= k
    out[hit] = 1.0 / np.log2(r[hit] + 1.0)
    return out


@dataclass(frozen=True)
class PairedTest:
    users: int
    mean_a: float
    mean_b: float
    diff: float            # mean of a - b over users
    t: float
    p_t: float             # paired t-test, two-sided
    ci_low: float          # bootstrap 95% percentile interval of the mean difference
    ci_high: float
    p_boot: float          # two-sided bootstrap p: 2 x share of resampled mean differences on the other side of 0

    def describe(self, a: str = "model", b: str = "baseline") -> str:
        return (f"paired over {self.users} users, NDCG@10 {a} {self.mean_a:.4f} vs {b} {self.mean_b:.4f}: "
                f"diff {self.diff:+.4f} (bootstrap 95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
                f"p={self.p_boot:.4f}); t={self.t:.2f}, p={self.p_t:.2g}")


def paired_test(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0) -> PairedTest:
    """a and b: one value per user, the same users in the same order."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal-length vectors of at least 2 users, got {a.shape} and {b.shape}")
    d = a - b
    if np.all(d == d[0]):  # no variance: the t statistic is undefined; a constant nonzero gap is certain
        t, p = (math.nan, math.nan) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
    else:
        res = stats.ttest_rel(a, b)
        t, p = float(res.statistic), float(res.pvalue)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 500):  # 500 resamples at a time: memory users x 500
        n = min(500, resamples - start)
        means[start:start + n] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    other_side = (means <= 0).mean() if d.mean() > 0 else (means >= 0).mean()
    return PairedTest(len(d), float(a.mean()), float(b.mean()), float(d.mean()), t, p, float(low), float(high),
                      float(min(1.0, 2 * other_side)))
