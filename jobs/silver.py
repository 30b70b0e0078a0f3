"""bronze.events -> silver.events (partitioned by dt) + silver.sessions, incrementally: only the days that new
bronze batches touch are recomputed (--rebuild FROM:TO recomputes exactly that range). Every counted row is
accounted for by reason, the quality report goes to silver.quality and MLflow, and a failing gate stops the
run before anything is published.

Commit order: silver.quality, silver.events, silver.sessions, then silver.batches, the run's last commit: it records
the new batches and names the silver.events and silver.sessions versions the run published, the consistent set
downstream stages read (`read_published`). A run killed earlier has not recorded its batches, so readers keep the
previous set and the rerun recomputes the same days from the same bronze rows: the same silver."""
from datetime import datetime, timezone

import mlflow
from pyspark.sql import functions as F

from jobs.common import JobOption, job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.etl import quality as Q
from lakerec.etl.ingest import SOURCE_EVENTS
from lakerec.etl.pseudonym import load_key
from lakerec.etl.silver import (
    PUBLISHED_TABLES, around, build_silver, counted, dropped_counts, in_days, plan_run, published_ids,
    published_versions, replace_where, run_input, session_rows, touched_days,
)

OPTIONS = [JobOption("--rebuild", "silver.rebuild",
                     "Recompute exactly these UTC days from bronze, e.g. 2026-11-01:2026-11-03.", metavar="FROM:TO")]


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    etl = cfg.etl
    key = load_key(etl.pseudonymise, lake.root) if etl.pseudonymise.enabled else None
    published = _column_set(lake, T.SILVER_BATCHES, T.BATCH_ID)
    bronze = lake.read(T.BRONZE_EVENTS)  # one snapshot for the batch list and the rows
    batches = {r[0] for r in bronze.select(T.BATCH_ID).distinct().collect()}
    silver = lake.read(T.SILVER_EVENTS) if lake.exists(T.SILVER_EVENTS) else None
    published_days = {r[0] for r in silver.select(T.DT).distinct().collect()} if silver is not None else set()
    rebuild = cfg.silver.rebuild_range
    touched = touched_days(bronze, tuple(sorted(batches - published)), etl) if rebuild is None else set()
    plan = plan_run(batches, published, touched, published_days, rebuild)
    if not plan.days and not plan.new_batches:
        return StageResult(metrics={"batches_new": 0}, skipped="no new bronze batches")

    rows = run_input(bronze, plan, etl)
    out = build_silver(rows, plan, etl, key, None if silver is None else published_ids(silver, plan))
    marked = out.marked.persist()  # clean + dedupe once: events and drops both read it
    events, dropped = out.events.persist(), out.dropped
    sessions = session_rows(events, None if silver is None else around(silver, plan), plan).persist()
    try:
        rows_in, rows_out, n_sessions = counted(rows, plan, etl).count(), events.count(), sessions.count()
        drops = dropped_counts(dropped)
        if rows_in != rows_out + sum(drops.values()):
            raise RuntimeError(f"silver lost rows: in {rows_in} != out {rows_out} + dropped {drops}")
        metrics = {"rows.in": rows_in, "rows.out": rows_out, "sessions": n_sessions,
                   **{f"dropped.{reason}": n for reason, n in drops.items()},
                   "share.dropped": Q.share(sum(drops.values()), rows_in),
                   **_batch_shares(ctx, plan, bronze, events, published_days),
                   **Q.null_rates(events), **Q.shape_metrics(events, sessions)}
        gates = Q.check_gates(metrics, etl.gates)
        _report(ctx, metrics, gates)
        failed = [g for g in gates if g.failed]
        if failed:
            raise Q.QualityGateError("silver not published: " + "; ".join(g.describe() for g in failed))
        # a run that rewrites no day publishes the set the previous run did
        versions = published_versions(lake) or {t: lake.version(t) for t in PUBLISHED_TABLES if lake.exists(t)}
        if plan.days:
            versions[T.SILVER_EVENTS] = lake.write(T.SILVER_EVENTS, events, mode="overwrite", partition_by=[T.DT],
                                                   replace_where=replace_where(plan.days))
            versions[T.SILVER_SESSIONS] = lake.write(T.SILVER_SESSIONS, sessions, mode="overwrite",
                                                     partition_by=[T.DT],
                                                     replace_where=replace_where(plan.session_days))
        # every publishing run ends here, a rebuild too (with no batch rows): one commit records the whole run
        lake.write(T.SILVER_BATCHES, ctx.spark.createDataFrame(
            [(b, ctx.run_id, datetime.now(timezone.utc)) for b in plan.new_batches],
            f"{T.BATCH_ID} string, {T.RUN_ID} string, {T.PROCESSED_AT} timestamp"), mode="append",
            metadata={T.RUN_ID: ctx.run_id, **{t: str(v) for t, v in versions.items()}})
    finally:
        for df in (sessions, events, marked):
            df.unpersist()
    return StageResult(metrics={"rows_in": rows_in, "rows_out": rows_out, "sessions": n_sessions,
                                "batches_new": len(plan.new_batches), "days_rewritten": len(plan.days),
                                **{f"dropped.{reason}": n for reason, n in drops.items()}})


def _column_set(lake, table: str, column: str) -> set:
    if not lake.exists(table):
        return set()
    return {r[0] for r in lake.read(table).select(column).distinct().collect()}


def _batch_shares(ctx: StageContext, plan, bronze, events, published_days) -> dict[str, float]:
    """Of the new batches: quarantined / rows read at ingest, and events landing on already published days."""
    new = list(plan.new_batches)
    lake = ctx.lake
    in_bronze = bronze.where(F.col(T.BATCH_ID).isin(new)).count() if new else 0
    quarantined = 0
    if new and lake.exists(T.BRONZE_QUARANTINE):
        quarantined = lake.read(T.BRONZE_QUARANTINE).where(
            (F.col(T.SOURCE) == SOURCE_EVENTS) & F.col(T.BATCH_ID).isin(new)).count()
    from_new = events.where(F.col(T.BATCH_ID).isin(new)) if new else events.limit(0)
    late = from_new.where(in_days(F.col(T.DT).cast("string"), tuple(published_days))).count()
    return {"quarantine.rows": quarantined, "share.quarantine": Q.share(quarantined, quarantined + in_bronze),
            "late.events": late, "share.late": Q.share(late, from_new.count())}


def _report(ctx: StageContext, metrics: dict[str, float], gates: list) -> None:
    """silver.quality rows, and the MLflow metrics quality.*, a plot and the gate verdicts of the stage run."""
    ctx.lake.write(T.SILVER_QUALITY, Q.report_rows(ctx.spark, ctx.run_id, metrics, gates,
                                                   datetime.now(timezone.utc)), mode="append")
    if mlflow.active_run() is None:  # run outside a stage (tests of the job alone): the table is the report
        return
    mlflow.log_metrics({f"quality.{k}": float(v) for k, v in metrics.items()})
    mlflow.log_metrics({f"quality.gate.{g.gate}": float(g.failed) for g in gates})
    mlflow.set_tag("lakerec.quality.gates", "; ".join(g.describe() for g in gates))
    fig = Q.figure(metrics)
    mlflow.log_figure(fig, "quality/silver_quality.png")
    Q.close(fig)


main = job_main("silver", run, __doc__, options=OPTIONS)

if __name__ == "__main__":
    main()
