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

from jobs.common import JobOption, job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.etl import quality as Q
from lakerec.etl.pseudonym import load_key
from lakerec.etl.silver import around, build_silver, published_ids, run_input, session_rows
from lakerec.etl.silver_run import (account, batch_shares, plan_from_lake, publish, quality_metrics,
                                    stop_on_failed_gates)

OPTIONS = [JobOption("--rebuild", "silver.rebuild",
                     "Recompute exactly these UTC days from bronze, e.g. 2026-11-01:2026-11-03.", metavar="FROM:TO")]


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    etl = cfg.etl
    key = load_key(etl.pseudonymise, lake.root) if etl.pseudonymise.enabled else None
    inputs = plan_from_lake(lake, etl, cfg.silver.rebuild_range)
    plan, silver = inputs.plan, inputs.silver
    if not plan.days and not plan.new_batches:
        return StageResult(metrics={"batches_new": 0}, skipped="no new bronze batches")

    rows = run_input(inputs.bronze, plan, etl)
    published = None if silver is None else published_ids(silver, plan, etl.redelivery_window_days)
    out = build_silver(rows, plan, etl, key, published)
    marked = out.marked.persist()  # clean + dedupe once: events and drops both read it
    events = out.events.persist()
    sessions = session_rows(events, None if silver is None else around(silver, plan), plan).persist()
    try:
        counts = account(rows, plan, etl, events, out.dropped, sessions)
        metrics = quality_metrics(counts, batch_shares(lake, inputs, events), events, sessions)
        gates = Q.check_gates(metrics, etl.gates)
        _report(ctx, metrics, gates)
        stop_on_failed_gates(gates)
        publish(lake, ctx.spark, plan, events, sessions, ctx.run_id)
    finally:
        for df in (sessions, events, marked):
            df.unpersist()
    return StageResult(metrics={"rows_in": counts.rows_in, "rows_out": counts.rows_out, "sessions": counts.sessions,
                                "batches_new": len(plan.new_batches), "days_rewritten": len(plan.days),
                                **{f"dropped.{reason}": n for reason, n in counts.dropped.items()}})


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
