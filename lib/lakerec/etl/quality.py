"""The quality report of a silver run (metric -> value) and its gates, checked before silver is published.

Metrics: rows in/out, dropped.<reason> (the duplicates by kind are dropped.duplicate_event_id,
dropped.duplicate_across_batches and dropped.client_retry), share.dropped, quarantine rows and share of the
new batches, share.late (new events landing on days silver had already published), null_rate.<column> of the
published events, and quantiles of events per user, session minutes and events per session.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import GatesConf
from lakerec.etl.sessionize import END_TS, N_EVENTS, START_TS

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
QUALITY_SCHEMA = (f"{T.RUN_ID} string, {T.METRIC} string, {T.VALUE} double, {T.DETAIL} string, "
                  f"{T.PROCESSED_AT} timestamp")
GATES = {  # gate (key of etl.gates) -> the metric it bounds
    "max_quarantine_share": "share.quarantine",
    "max_drop_share": "share.dropped",
    "max_late_share": "share.late",
}


class QualityGateError(RuntimeError):
    """A gate failed: silver was not published. The message names each gate, its value and its limit."""


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    limit: float

    @property
    def failed(self) -> bool:
        return self.value > self.limit

    def describe(self) -> str:
        verdict = "FAILED" if self.failed else "ok"
        return f"{self.gate} {verdict}: {self.metric} = {self.value:.4f}, limit {self.limit:.4f}"


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def null_rates(events: DataFrame) -> dict[str, float]:
    """null_rate.<column> of every column, in one pass."""
    row = events.agg(F.count(F.lit(1)).alias("_n"),
                     *(F.sum(F.col(c).isNull().cast("long")).alias(c) for c in events.columns)).first()
    return {f"null_rate.{c}": share(row[c] or 0, row["_n"]) for c in events.columns}


def distribution(df: DataFrame, column: str, name: str) -> dict[str, float]:
    """<name>.p50/p90/p99/max of a numeric column (exact on these sizes: relative error 0), 0 when empty."""
    values = df.stat.approxQuantile(column, list(QUANTILES.values()), 0.0)
    return {f"{name}.{q}": float(v) for q, v in zip(QUANTILES, values or [0.0] * len(QUANTILES))}


def shape_metrics(events: DataFrame, sessions: DataFrame) -> dict[str, float]:
    per_user = events.groupBy(T.USER_ID).count()
    minutes = sessions.select(((F.unix_micros(END_TS) - F.unix_micros(START_TS)) / 60e6).alias("minutes"),
                              F.col(N_EVENTS).cast("double").alias(N_EVENTS))
    return {**distribution(per_user, "count", "events_per_user"), **distribution(minutes, "minutes", "session_minutes"),
            **distribution(minutes, N_EVENTS, "session_events")}


def check_gates(metrics: dict[str, float], gates: GatesConf) -> list[GateResult]:
    return [GateResult(gate, metric, metrics[metric], getattr(gates, gate)) for gate, metric in GATES.items()]


def report_rows(spark: SparkSession, run_id: str, metrics: dict[str, float], gates: list[GateResult],
                at: datetime) -> DataFrame:
    """silver.quality rows: one per metric, and gate.<name> (1 failed, 0 passed) with the reason in detail."""
    rows = [(run_id, k, float(v), None, at) for k, v in sorted(metrics.items())]
    rows += [(run_id, f"gate.{g.gate}", float(g.failed), g.describe(), at) for g in gates]
    return spark.createDataFrame(rows, QUALITY_SCHEMA)


def figure(metrics: dict[str, float]):
    """Dropped rows by reason, and the per-user / per-session quantiles, as one matplotlib figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    dropped = {k.removeprefix("dropped."): v for k, v in metrics.items() if k.startswith("dropped.")}
    left.barh(list(dropped), list(dropped.values()), color="tab:red")
    left.set_title(f"dropped rows by reason (of {int(metrics['rows.in'])} in)")
    names = ("events_per_user", "session_events", "session_minutes")
    for i, name in enumerate(names):
        right.bar([i * 5 + j for j in range(len(QUANTILES))], [metrics[f"{name}.{q}"] for q in QUANTILES],
                  label=name)
    right.set_xticks([i * 5 + j for i in range(len(names)) for j in range(len(QUANTILES))],
                     [q for _ in names for q in QUANTILES], fontsize=7)
    right.set_yscale("symlog")
    right.legend(fontsize=7)
    right.set_title("distributions (p50 p90 p99 max)")
    fig.tight_layout()
    return fig


def close(fig) -> None:
    """Free a figure from `figure` (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
