"""Raw events (a file or a folder; jsonl, csv, tsv or parquet, gzip read transparently) -> bronze.events and
bronze.quarantine. Files already ingested are skipped, so a rerun adds nothing; a run killed before its commits
leaves both tables as they were, and the rerun completes it (each table skips the files it already holds)."""
import logging
import os
import signal
from datetime import datetime, timezone

from pyspark.sql import functions as F

from jobs.common import job_main
from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS
from lakerec.context import StageContext, StageResult
from lakerec.etl.ingest import (
    REASONS, REQUIRED_EVENT_FIELDS, SOURCE_EVENTS, bronze_events, check_accounting, commit_metadata, count_by_reason,
    ingested_files, quarantine_rows, rows_of_files, slim_raw, validate_events,
)
from lakerec.etl.sources import (
    REC, add_source_lines, batch_id_of, events_input_path, line_offsets, list_input_files, read_source,
    required_columns, wanted_columns,
)

log = logging.getLogger("lakerec.ingest")
KILL_AT_ENV = "LAKEREC_TEST_KILL_AT"  # tests: "before_commit" or "between_commits" kills this process there


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    source = cfg.input.events
    listed = list_input_files(ctx.spark, events_input_path(cfg))
    if not listed:
        return StageResult(metrics={"files_new": 0, "rows_read": 0}, skipped=f"no files at {events_input_path(cfg)}")
    # bronze.events is committed last: a file it has is fully ingested
    done = ingested_files(lake, T.BRONZE_EVENTS)
    new = [f for f in listed if f not in done]
    if not new:
        return StageResult(metrics={"files_new": 0, "files_skipped": len(listed), "rows_read": 0},
                           skipped=f"no new input files ({len(listed)} already ingested)")
    # the same files give the same batch id, so the rerun of a killed batch writes under the id it started with
    batch_id, ingested_at = batch_id_of(ctx.spark, new), datetime.now(timezone.utc)
    log.info("ingest: %d new file(s) of %d, batch %s", len(new), len(listed), batch_id)
    # One pass over the raw lines (nothing parsed) counts and numbers them; one parse validates every row, cached
    # with the raw text kept for the bad rows only (the few quarantine needs): the counts, the quarantine and
    # bronze then read the cache, not the raw files again.
    offsets, rows_read = line_offsets(ctx.spark, new, source)
    raw = read_source(ctx.spark, new, source, wanted_columns(source, CONTRACT_EVENT_FIELDS),
                      required_columns(source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS))
    validated = validate_events(raw, source, cfg.etl, ingested_at).drop(REC)
    numbered = add_source_lines(slim_raw(validated), offsets).persist()
    quarantined = quarantine_rows(numbered, SOURCE_EVENTS, batch_id, ingested_at)
    try:
        _, _, counts = count_by_reason(numbered)
        rows_quarantined = sum(counts.values())
        summary = {"rows_read": rows_read, "rows_bronze": rows_read - rows_quarantined,
                   "rows_quarantined": rows_quarantined, **{f"quarantined.{reason}": n for reason, n in counts.items()}}
        log.info("ingest: %d rows read, %d quarantined %s", rows_read, rows_quarantined, counts)
        _maybe_killed("before_commit")
        # quarantine first, each table skipping files it already has: a rerun completes a crashed batch
        q_done = ingested_files(lake, T.BRONZE_QUARANTINE, SOURCE_EVENTS)
        q_new = [f for f in new if f not in q_done]
        if q_new:
            lake.write(T.BRONZE_QUARANTINE, quarantined.where(F.col(T.SOURCE_FILE).isin(q_new)), mode="append",
                       partition_by=[T.SOURCE], metadata=commit_metadata(SOURCE_EVENTS, batch_id, q_new, summary))
        _maybe_killed("between_commits")
        lake.write(T.BRONZE_EVENTS, bronze_events(numbered, batch_id, ingested_at), mode="append",
                   metadata=commit_metadata(SOURCE_EVENTS, batch_id, new, summary))
    finally:
        numbered.unpersist()
    check_accounting("ingest", rows_read, {
        T.BRONZE_EVENTS: rows_of_files(lake, T.BRONZE_EVENTS, new),
        T.BRONZE_QUARANTINE: rows_of_files(lake, T.BRONZE_QUARANTINE, new, SOURCE_EVENTS),
    })
    return StageResult(metrics={
        "files_new": len(new), "files_skipped": len(listed) - len(new), **summary,
        **{f"quarantined.{reason}": counts.get(reason, 0) for reason in REASONS},
    })


def _maybe_killed(point: str) -> None:
    """The test hook for killed runs: SIGKILL, so nothing (no finally, no atexit) gets to tidy up."""
    if os.environ.get(KILL_AT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


main = job_main("ingest", run, __doc__)

if __name__ == "__main__":
    main()
