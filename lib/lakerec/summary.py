"""The closing summary of a pipeline run: what ran, rows per table, quarantine reasons, metrics, where to look."""
from __future__ import annotations

import fnmatch
import os

from pyspark.sql import SparkSession

from lakerec import tables as T
from lakerec.config import Config
from lakerec.context import StageResult
from lakerec.lake import Lake

SUMMARY_TABLES = (T.BRONZE_EVENTS, T.BRONZE_QUARANTINE, T.SILVER_EVENTS, T.SILVER_SESSIONS, T.SILVER_ITEMS,
                  T.SILVER_ITEM_INDEX, T.SILVER_SEQUENCES, T.GOLD_TOPN)
# fnmatch patterns: every model's NDCG@10, the model's ratio to the best baseline, the share of repeat targets
HEADLINE_METRICS = ("test.*.ndcg_10", "ndcg_10_vs_best_baseline", "repeat_target_share", "users_scored")


def table_counts(lake: Lake) -> dict[str, tuple[int, int]]:
    """table -> (version, rows) for every pipeline table that exists."""
    return {t: (lake.version(t), lake.read(t).count()) for t in SUMMARY_TABLES if lake.exists(t)}


def quarantine_reasons(lake: Lake) -> dict[str, int]:
    if not lake.exists(T.BRONZE_QUARANTINE):
        return {}
    rows = lake.read(T.BRONZE_QUARANTINE).groupBy(T.SOURCE, T.REASON).count().collect()
    return {f"{r[T.SOURCE]}:{r[T.REASON]}": r["count"] for r in sorted(rows, key=lambda r: -r["count"])}


def pipeline_summary(cfg: Config, spark: SparkSession, results: dict[str, StageResult], seconds: float) -> str:
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    lines = [f"\n=== lakerec summary ({seconds:.0f}s) ===", "stages:"]
    for name, r in results.items():
        lines.append(f"  {name:<10} " + (f"skipped: {r.skipped}" if r.skipped else f"ok  {r.seconds:6.1f}s"))
    lines.append("tables (version, rows):")
    for t, (v, n) in table_counts(lake).items():
        lines.append(f"  {t:<20} v{v:<4} {n:>10,}")
    reasons = quarantine_reasons(lake)
    if reasons:
        lines.append("quarantined by reason:")
        lines += [f"  {k:<32} {n:>8,}" for k, n in reasons.items()]
    metrics = {k: v for r in results.values() for k, v in r.metrics.items()
               if any(fnmatch.fnmatchcase(k, p) for p in HEADLINE_METRICS)}
    if metrics:
        lines.append("metrics: " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in metrics.items()))
    lines += [f"lake:   {os.path.abspath(cfg.lake.root) if '://' not in cfg.lake.root else cfg.lake.root}",
              f"mlflow: {cfg.tracking_uri}  (open the UI: lakerec ui --profile {cfg.profile}, then http://127.0.0.1:5000)"]
    return "\n".join(lines)
