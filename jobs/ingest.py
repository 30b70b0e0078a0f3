"""Raw events (a file or a folder; jsonl, csv, tsv or parquet, gzip read transparently) -> bronze.events and
bronze.quarantine. Files already ingested are skipped, so a rerun adds nothing; a run killed before its commits
leaves both tables as they were, and the rerun completes it (each table skips the files it already holds).
A file that cannot be read is rejected alone (bronze.rejected_files; exit status 3) and not marked as ingested:
the next run tries it again."""
import logging
import os
import signal
from datetime import datetime, timezone

from pyspark.sql import functions as F

from jobs.common import job_main
from lakerec import tables as T
from lakerec.config import CONTRACT_EVENT_FIELDS, Config
from lakerec.context import StageContext, StageResult
from lakerec.etl import reasons as R
from lakerec.etl.ingest import (
    REASONS, REQUIRED_EVENT_FIELDS, SOURCE_EVENTS, bronze_events, check_accounting, commit_metadata, ingested_files,
    long_line_rows, quarantine_rows, read_validated, rows_of_files,
)
from lakerec.etl.rawfiles import BadInputFiles, new_rejections, rejected_rows, scan_files
from lakerec.etl.sources import batch_id_of, events_input_path, list_input_files, required_columns

log = logging.getLogger("lakerec.ingest")


def run(ctx: StageContext) -> StageResult:
    cfg, lake, spark = ctx.cfg, ctx.lake, ctx.spark
    source = cfg.input.events
    listed = list_input_files(spark, events_input_path(cfg))
    if not listed:
        return StageResult(metrics={"files_new": 0, "rows_read": 0}, skipped=f"no files at {events_input_path(cfg)}")
    # bronze.events is committed last: a file it has is fully ingested
    done = ingested_files(lake, T.BRONZE_EVENTS)
    new = [f for f in listed if f not in done]
    if not new:
        return StageResult(metrics={"files_new": 0, "files_skipped": len(listed), "rows_read": 0},
                           skipped=f"no new input files ({len(listed)} already ingested)")
    # the same files give the same batch id, so the rerun of a killed batch writes under the id it started with
    batch_id, ingested_at = batch_id_of(spark, new), datetime.now(timezone.utc)
    log.info("ingest: %d new file(s) of %d, batch %s", len(new), len(listed), batch_id)
    # One pass over the raw lines (nothing parsed) counts and numbers them and finds the unreadable files; one
    # parse validates every row, cached with the raw text kept for the bad rows only (the few quarantine
    # needs): the counts, the quarantine and bronze then read the cache, not the raw files again.
    required = required_columns(source, CONTRACT_EVENT_FIELDS, REQUIRED_EVENT_FIELDS)
    scan = scan_files(spark, new, source, required, cfg.input.max_line_bytes)
    numbered, counts = read_validated(spark, scan, cfg, required, ingested_at)
    try:
        for rejected in scan.rejected:
            log.warning("ingest: %s", rejected.describe())
        if scan.rejected and cfg.input.on_bad_file == "fail":
            raise BadInputFiles("input.on_bad_file is fail and nothing was committed: "
                                + "; ".join(r.describe() for r in scan.rejected))
        long_lines = [ln for f in scan.files for ln in scan.long_lines.get(f, [])]
        if long_lines:
            counts[R.LINE_TOO_LONG] = counts.get(R.LINE_TOO_LONG, 0) + len(long_lines)
        rows_read, rows_quarantined = scan.rows_read, sum(counts.values())
        summary = {"rows_read": rows_read, "rows_bronze": rows_read - rows_quarantined,
                   "rows_quarantined": rows_quarantined, **{f"quarantined.{reason}": n for reason, n in counts.items()}}
        log.info("ingest: %d rows read, %d quarantined %s", rows_read, rows_quarantined, counts)
        _maybe_killed(cfg, "before_commit")
        rejections = new_rejections(lake, scan.rejected)
        if rejections:  # first: a rerun that finds the same file (same size and time) adds no row
            lake.write(T.BRONZE_REJECTED_FILES, rejected_rows(spark, rejections, batch_id, ingested_at),
                       mode="append", metadata=commit_metadata(SOURCE_EVENTS, batch_id, []))
        good = scan.files
        # quarantine next, each table skipping files it already has: a rerun completes a crashed batch
        q_done = ingested_files(lake, T.BRONZE_QUARANTINE, SOURCE_EVENTS)
        q_new = [f for f in good if f not in q_done]
        if q_new and numbered is not None:
            quarantined = quarantine_rows(numbered, SOURCE_EVENTS, batch_id, ingested_at)
            if long_lines:
                quarantined = quarantined.unionByName(
                    long_line_rows(spark, long_lines, SOURCE_EVENTS, batch_id, ingested_at))
            lake.write(T.BRONZE_QUARANTINE, quarantined.where(F.col(T.SOURCE_FILE).isin(q_new)), mode="append",
                       partition_by=[T.SOURCE], metadata=commit_metadata(SOURCE_EVENTS, batch_id, q_new, summary))
        _maybe_killed(cfg, "between_commits")
        if numbered is not None:
            lake.write(T.BRONZE_EVENTS, bronze_events(numbered, batch_id, ingested_at), mode="append",
                       metadata=commit_metadata(SOURCE_EVENTS, batch_id, good, summary))
    finally:
        if numbered is not None:
            numbered.unpersist()
    if good:
        check_accounting("ingest", rows_read, {
            T.BRONZE_EVENTS: rows_of_files(lake, T.BRONZE_EVENTS, good),
            T.BRONZE_QUARANTINE: rows_of_files(lake, T.BRONZE_QUARANTINE, good, SOURCE_EVENTS),
        })
    return StageResult(
        metrics={"files_new": len(good), "files_skipped": len(listed) - len(new), "files_rejected": len(scan.rejected),
                 **summary, **{f"quarantined.{reason}": counts.get(reason, 0) for reason in REASONS}},
        attention=[r.describe() for r in scan.rejected],
    )


def _maybe_killed(cfg: Config, point: str) -> None:
    """The kill drill (drill.kill_at): SIGKILL, so nothing (no finally, no atexit) gets to tidy up."""
    if cfg.drill.kill_at == point:
        os.kill(os.getpid(), signal.SIGKILL)


main = job_main("ingest", run, __doc__)

if __name__ == "__main__":
    main()
