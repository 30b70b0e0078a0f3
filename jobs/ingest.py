"""Raw events (a file or a folder; jsonl, csv, tsv or parquet, gzip read transparently) -> bronze.events and
bronze.quarantine. Files already ingested are skipped, so a rerun adds nothing."""
from datetime import datetime, timezone

from jobs.common import job_main
from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS
from lakerec.context import StageContext, StageResult
from lakerec.etl.ingest import (
    REASONS, SOURCE_EVENTS, bronze_events, commit_metadata, ingested_files, quarantine_rows, account,
    validate_events,
)
from lakerec.etl.sources import events_input_path, list_input_files, read_source, wanted_columns


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    source = cfg.input.events
    listed = list_input_files(ctx.spark, events_input_path(cfg))
    if not listed:
        return StageResult(metrics={"files_new": 0, "rows_read": 0}, skipped=f"no files at {events_input_path(cfg)}")
    # bronze.events is committed last: a file it has is fully ingested
    new = [f for f in listed if f not in ingested_files(lake, T.BRONZE_EVENTS)]
    if not new:
        return StageResult(metrics={"files_new": 0, "files_skipped": len(listed), "rows_read": 0},
                           skipped=f"no new input files ({len(listed)} already ingested)")
    raw = read_source(ctx.spark, new, source, wanted_columns(source, CONTRACT_EVENT_FIELDS)).persist()
    validated = validate_events(raw, source, cfg.etl.event_types).persist()
    try:
        rows_read = raw.count()
        rows_bronze, counts = account(rows_read, validated, "ingest")
        rows_quarantined = sum(counts.values())
        batch_id, ingested_at = ctx.run_id, datetime.now(timezone.utc)
        # quarantine first, each table skipping files it already has: a rerun completes a crashed batch
        q_new = [f for f in new if f not in ingested_files(lake, T.BRONZE_QUARANTINE, SOURCE_EVENTS)]
        if q_new:
            rows = quarantine_rows(validated.where(validated[T.SOURCE_FILE].isin(q_new)), SOURCE_EVENTS,
                                   batch_id, ingested_at)
            lake.write(T.BRONZE_QUARANTINE, rows, mode="append", partition_by=[T.SOURCE],
                       metadata=commit_metadata(SOURCE_EVENTS, batch_id, q_new))
        lake.write(T.BRONZE_EVENTS, bronze_events(validated, batch_id, ingested_at), mode="append",
                   metadata=commit_metadata(SOURCE_EVENTS, batch_id, new))
    finally:
        validated.unpersist()
        raw.unpersist()
    return StageResult(metrics={
        "files_new": len(new), "files_skipped": len(listed) - len(new), "rows_read": rows_read,
        "rows_bronze": rows_bronze, "rows_quarantined": rows_quarantined,
        **{f"quarantined.{reason}": counts.get(reason, 0) for reason in REASONS},
    })


main = job_main("ingest", run, __doc__)

if __name__ == "__main__":
    main()
