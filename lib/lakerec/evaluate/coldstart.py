"""Cold-start comparison: the same full-ranking evaluation, reported on the cold, long-tail and warm slices.

Run on a silver.sequences snapshot cut under a holdout protocol (lakerec.data.holdout), where the held-out
items were never seen before the split: `cold` = targets never seen before the split (the held-out items and
any naturally new one), `warm` = the others, `tail` = warm targets outside the head (evaluate.head_share of
the items seen, most popular first). `text_scorer` is the text-only baseline: items nearest, in the encoder's
space, to the user's recent history.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lakerec.evaluate.metrics import (ALL, COLD, HEAD, TAIL, TIDY_COLUMNS, ItemScores, ScoreFn, ranking_metrics,
                                      score_users, popularity_slices, split_data, split_popularity)
from lakerec.evaluate.report import bar_chart
from lakerec.models.base import PAD

WARM = "warm"
SLICES = (COLD, TAIL, WARM, ALL)
ARTIFACTS = "cold_start"


def text_scorer(text: np.ndarray, recent: int = 10, decay: float = 0.8) -> ScoreFn:
    """Text-only baseline: cosine of every item's text with the user's profile, the decayed sum of the unit
    text vectors of the newest `recent` input items (newest weight 1). Needs no training and no ID history.

    text: [n_items + 1, dim] by item_idx (row 0 and items without text: zeros)."""
    vectors = torch.as_tensor(text, dtype=torch.float32)
    norms = vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit = vectors / norms

    def score(inputs: torch.Tensor) -> ItemScores:
        last = inputs[:, -recent:]
        weights = decay ** torch.arange(last.shape[1] - 1, -1, -1, dtype=torch.float32)
        weights = weights.unsqueeze(0) * (last != PAD)
        profile = (unit[last] * weights.unsqueeze(-1)).sum(1)
        return lambda items: profile @ unit[items].T

    return score


def coldstart_table(sequences: pd.DataFrame, n_items: int, scorers: Mapping[str, ScoreFn],
                    ks: Sequence[int] = (10,), head_share: float = 0.2, batch_size: int = 256) -> pd.DataFrame:
    """Tidy (model, slice, metric, value) on the test split: users, hr_k, ndcg_k, mrr_k per slice in SLICES."""
    data = split_data(sequences, "test")
    labels = popularity_slices(data.targets, split_popularity(data, n_items), head_share)
    masks = {COLD: labels == COLD, TAIL: labels == TAIL, WARM: np.isin(labels, [HEAD, TAIL]),
             ALL: np.ones(len(labels), bool)}
    rows = []
    for model, fn in scorers.items():
        users = data.users if getattr(fn, "needs_users", False) else None  # user-aware scorers get the ids
        ranks, _ = score_users(fn, data.inputs, data.targets, data.excluded, n_items, batch_size, users)
        for name in SLICES:
            mask = torch.as_tensor(masks[name])
            metrics = {"users": float(mask.sum())}
            if mask.any():
                metrics.update(ranking_metrics(ranks[mask], ks))
            rows += [(model, name, metric, value) for metric, value in metrics.items()]
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def wide(table: pd.DataFrame, metrics: Sequence[str] = ("ndcg_10", "hr_10")) -> pd.DataFrame:
    """One row per model, one column per slice and metric (e.g. cold.ndcg_10), in SLICES order."""
    rows = table[table["metric"].isin(metrics)]
    out = rows.pivot_table(index="model", columns=["slice", "metric"], values="value", sort=False)
    out = out[[(s, m) for s in SLICES for m in metrics if (s, m) in out.columns]]
    out.columns = [f"{s}.{m}" for s, m in out.columns]
    return out.loc[list(dict.fromkeys(rows["model"]))]


def comparison_metrics(tables: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """`coldstart.<protocol>.<model>.<slice>.<metric>` for every protocol's table (user counts and NaN left out)."""
    return {f"coldstart.{protocol}.{model}.{slice_}.{name}": float(value)
            for protocol, table in tables.items()
            for model, slice_, name, value in table.itertuples(index=False)
            if name != "users" and np.isfinite(value)}


def comparison_artifacts(tables: Mapping[str, pd.DataFrame], metric: str = "ndcg_10") -> dict[str, Figure | str]:
    """Per protocol, by path under cold_start/: the wide table (CSV and Markdown) and a bar plot of `metric` by
    slice and model. The caller logs them (lakerec.tracking.log_artifacts)."""
    out: dict[str, Figure | str] = {}
    for protocol, table in tables.items():
        frame = wide(table)
        out[f"{ARTIFACTS}/{protocol}_table.csv"] = frame.to_csv()
        out[f"{ARTIFACTS}/{protocol}_table.md"] = (frame.round(4).to_markdown() if _has_tabulate()
                                                    else frame.round(4).to_string())
        by_slice = table[table["metric"] == metric].pivot(index="slice", columns="model", values="value")
        by_slice = by_slice.loc[[s for s in SLICES if s in by_slice.index], list(dict.fromkeys(table["model"]))]
        out[f"{ARTIFACTS}/{protocol}_{metric}_by_slice.png"] = bar_chart(
            by_slice, f"{metric} by slice, holdout protocol {protocol}", metric)
    return out


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401  (pandas' to_markdown needs it)
    except ImportError:
        return False
    return True
