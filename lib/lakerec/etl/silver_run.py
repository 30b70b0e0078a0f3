"""The steps of one silver run around the transformations of lakerec.etl.silver, each a function the job calls in
order: what to recompute (`plan_from_lake`), the accounting of every counted row (`account`), the quality metrics
the gates judge (`quality_metrics`, `stop_on_failed_gates`), and the commits that publish the run (`publish`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import EtlConf
from lakerec.etl import quality as Q
from lakerec.etl.ingest import SOURCE_EVENTS
from lakerec.etl.silver import (PUBLISHED_TABLES, Plan, counted, dropped_counts, in_days, plan_run,
                                published_versions, replace_where, touched_days)
from lakerec.lake import Lake


@dataclass(frozen=True)
class RunInputs:
    """What a silver run reads, and the plan made from it."""

    bronze: DataFrame           # one bronze.events snapshot, for the batch list and the rows
    silver: DataFrame | None    # silver.events before the run (None: the first run)
    published_days: set[date]   # its dt partitions
    plan: Plan


def plan_from_lake(lake: Lake, etl: EtlConf, rebuild: tuple[date, date] | None) -> RunInputs:
    """The batches and days this run recomputes: the new bronze batches' days, or exactly the rebuild range."""
    published = _column_set(lake, T.SILVER_BATCHES, T.BATCH_ID)
    bronze = lake.read(T.BRONZE_EVENTS)
    batches = {r[0] for r in bronze.select(T.BATCH_ID).distinct().collect()}
    silver = lake.read(T.SILVER_EVENTS) if lake.exists(T.SILVER_EVENTS) else None
    published_days = {r[0] for r in silver.select(T.DT).distinct().collect()} if silver is not None else set()
    touched = touched_days(bronze, tuple(sorted(batches - published)), etl) if rebuild is None else set()
    return RunInputs(bronze, silver, published_days, plan_run(batches, published, touched, published_days, rebuild))


@dataclass(frozen=True)
class Counts:
    """Rows counted in, out to silver.events, dropped by reason (every reason, 0 when none), and sessions."""

    rows_in: int
    rows_out: int
    sessions: int
    dropped: dict[str, int]


def account(rows: DataFrame, plan: Plan, etl: EtlConf, events: DataFrame, dropped: DataFrame,
            sessions: DataFrame) -> Counts:
    """Every counted bronze row is in silver or dropped with a reason; a row lost in between is an error (nothing
    is published)."""
    counts = Counts(counted(rows, plan, etl).count(), events.count(), sessions.count(), dropped_counts(dropped))
    if counts.rows_in != counts.rows_out + sum(counts.dropped.values()):
        raise RuntimeError(f"silver lost rows: in {counts.rows_in} != out {counts.rows_out} + dropped "
                           f"{counts.dropped}")
    return counts


def batch_shares(lake: Lake, inputs: RunInputs, events: DataFrame) -> dict[str, float]:
    """Of the new batches: quarantined / rows read at ingest, and events landing on already published days."""
    new = list(inputs.plan.new_batches)
    in_bronze = inputs.bronze.where(F.col(T.BATCH_ID).isin(new)).count() if new else 0
    quarantined = 0
    if new and lake.exists(T.BRONZE_QUARANTINE):
        quarantined = lake.read(T.BRONZE_QUARANTINE).where(
            (F.col(T.SOURCE) == SOURCE_EVENTS) & F.col(T.BATCH_ID).isin(new)).count()
    from_new = events.where(F.col(T.BATCH_ID).isin(new)) if new else events.limit(0)
    late = from_new.where(in_days(F.col(T.DT).cast("string"), tuple(inputs.published_days))).count()
    return {"quarantine.rows": quarantined, "share.quarantine": Q.share(quarantined, quarantined + in_bronze),
            "late.events": late, "share.late": Q.share(late, from_new.count())}


def quality_metrics(counts: Counts, shares: dict[str, float], events: DataFrame,
                    sessions: DataFrame) -> dict[str, float]:
    """The run's quality report (silver.quality, MLflow quality.*): what the gates judge."""
    return {"rows.in": counts.rows_in, "rows.out": counts.rows_out, "sessions": counts.sessions,
            **{f"dropped.{reason}": n for reason, n in counts.dropped.items()},
            "share.dropped": Q.share(sum(counts.dropped.values()), counts.rows_in),
            **shares, **Q.null_rates(events), **Q.shape_metrics(events, sessions)}


def stop_on_failed_gates(gates: list[Q.GateResult]) -> None:
    """A failed gate stops the run before anything is published."""
    failed = [g for g in gates if g.failed]
    if failed:
        raise Q.QualityGateError("silver not published: " + "; ".join(g.describe() for g in failed))


def publish(lake: Lake, spark: SparkSession, plan: Plan, events: DataFrame, sessions: DataFrame,
            run_id: str) -> dict[str, int]:
    """silver.events and silver.sessions (the replaced days), then silver.batches, the run's last commit: it
    records the new batches and names the versions published together; returns them."""
    # a run that rewrites no day publishes the set the previous run did
    versions = published_versions(lake) or {t: lake.version(t) for t in PUBLISHED_TABLES if lake.exists(t)}
    if plan.days:
        versions[T.SILVER_EVENTS] = lake.write(T.SILVER_EVENTS, events, mode="overwrite", partition_by=[T.DT],
                                               replace_where=replace_where(plan.days))
        versions[T.SILVER_SESSIONS] = lake.write(T.SILVER_SESSIONS, sessions, mode="overwrite", partition_by=[T.DT],
                                                 replace_where=replace_where(plan.session_days))
    # every publishing run ends here, a rebuild too (with no batch rows): one commit records the whole run
    lake.write(T.SILVER_BATCHES, spark.createDataFrame(
        [(b, run_id, datetime.now(timezone.utc)) for b in plan.new_batches],
        f"{T.BATCH_ID} string, {T.RUN_ID} string, {T.PROCESSED_AT} timestamp"), mode="append",
        metadata={T.RUN_ID: run_id, **{t: str(v) for t, v in versions.items()}})
    return versions


def _column_set(lake: Lake, table: str, column: str) -> set:
    if not lake.exists(table):
        return set()
    return {r[0] for r in lake.read(table).select(column).distinct().collect()}
