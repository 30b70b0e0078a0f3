"""bronze.events -> silver.events (partitioned by dt) + silver.sessions: clean, dedupe, sessionize; recomputed
in full each run, every dropped row counted by reason."""
from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.etl.silver import build_silver, dropped_counts


def run(ctx: StageContext) -> StageResult:
    bronze = ctx.lake.read(T.BRONZE_EVENTS).persist()
    out = build_silver(bronze, ctx.cfg.etl)
    events, sessions = out.events.persist(), out.sessions.persist()
    try:
        rows_in, rows_out, n_sessions = bronze.count(), events.count(), sessions.count()
        dropped = dropped_counts(out.dropped)
        if rows_in != rows_out + sum(dropped.values()):
            raise RuntimeError(f"silver lost rows: in {rows_in} != out {rows_out} + dropped {dropped}")
        ctx.lake.write(T.SILVER_EVENTS, events, mode="overwrite", partition_by=[T.DT])
        ctx.lake.write(T.SILVER_SESSIONS, sessions, mode="overwrite")
    finally:
        sessions.unpersist()
        events.unpersist()
        bronze.unpersist()
    return StageResult(metrics={"rows_in": rows_in, "rows_out": rows_out, "sessions": n_sessions,
                                **{f"dropped.{reason}": n for reason, n in dropped.items()}})


main = job_main("silver", run, __doc__)

if __name__ == "__main__":
    main()
