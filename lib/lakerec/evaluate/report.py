"""An evaluate_all table for people: MLflow metric names, plots (metrics by slice, model vs baselines) and the
tidy CSV, returned by artifact path; the job logs them (lakerec.tracking.log_artifacts)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lakerec.evaluate.metrics import ALL

ARTIFACTS = "evaluation"  # artifact folder of the evaluate run


def metric_names(table: pd.DataFrame, split: str) -> dict[str, float]:
    """`<split>.<model>.<metric>` (all users) and `<split>.<model>.slice.<slice>.<metric>`; NaN left out."""
    out = {}
    for model, slice_, metric, value in table.itertuples(index=False):
        if value is None or math.isnan(value):
            continue
        key = f"{split}.{model}.{metric}" if slice_ == ALL else f"{split}.{model}.slice.{slice_}.{metric}"
        out[key] = float(value)
    return out


def bar_chart(frame: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """Grouped bars: one group per index label, one bar per column."""
    fig = Figure(figsize=(max(6.0, 1.2 * len(frame.index) * max(1, len(frame.columns)) / 3), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(frame.columns))
    x = np.arange(len(frame.index))
    for i, column in enumerate(frame.columns):
        ax.bar(x + i * width - 0.4 + width / 2, frame[column].to_numpy(), width, label=str(column))
    ax.set_xticks(x, [str(i) for i in frame.index])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return fig


def slice_figure(table: pd.DataFrame, metric: str = "ndcg_10") -> Figure:
    """metric by slice (x) for every model (bars)."""
    rows = table[table["metric"] == metric]
    frame = rows.pivot(index="slice", columns="model", values="value")
    order = [ALL] + sorted(s for s in frame.index if s != ALL)
    return bar_chart(frame.loc[order, list(dict.fromkeys(rows["model"]))], f"{metric} by slice", metric)


def comparison_figure(table: pd.DataFrame) -> Figure:
    """HR, NDCG and MRR at every k over all users: the model beside the baselines."""
    rows = table[(table["slice"] == ALL) & table["metric"].str.match(r"^(hr|ndcg|mrr)_\d+$")]
    frame = rows.pivot(index="metric", columns="model", values="value")
    return bar_chart(frame.loc[list(dict.fromkeys(rows["metric"])), list(dict.fromkeys(rows["model"]))],
                 "model vs baselines (all users)", "value")


def report_artifacts(table: pd.DataFrame, split: str,
                     extra: dict[str, pd.DataFrame] | None = None) -> dict[str, Figure | str]:
    """Plots and CSVs (the tidy table, and any extra tables such as the ALS grid) by path under evaluation/."""
    return {f"{ARTIFACTS}/{split}_ndcg_10_by_slice.png": slice_figure(table),
            f"{ARTIFACTS}/{split}_model_vs_baselines.png": comparison_figure(table),
            f"{ARTIFACTS}/{split}_metrics.csv": table.to_csv(index=False),
            **{f"{ARTIFACTS}/{name}.csv": frame.to_csv(index=False) for name, frame in (extra or {}).items()}}


RANKS_CSV = "{split}_ranks.csv"  # evaluation/<split>_ranks.csv: user_id, then one rank column per model


def ranks_frame(users, ranks: dict) -> pd.DataFrame:
    """One row per evaluated user, one column per model: the target's rank (MISSED, the int64 maximum, for a
    target the serving rule excludes). What a paired test over users (lakerec.evaluate.stats) reads."""
    return pd.DataFrame({"user_id": np.asarray(users), **{m: np.asarray(r) for m, r in ranks.items()}})


def ranks_artifact(users, ranks: dict, split: str) -> dict[str, str]:
    """ranks_frame as CSV, by its path under evaluation/."""
    return {f"{ARTIFACTS}/{RANKS_CSV.format(split=split)}": ranks_frame(users, ranks).to_csv(index=False)}
