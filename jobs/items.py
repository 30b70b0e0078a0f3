"""Raw item catalog -> silver.items (the whole catalog, rebuilt each run; a repeated item_id keeps its last row)
and its bad rows -> bronze.quarantine (source "items", replaced each run)."""
from datetime import datetime, timezone

from jobs.common import job_main
from lakerec import tables as T
from lakerec.config import CONTRACT_ITEM_FIELDS
from lakerec.context import StageContext, StageResult
from lakerec.etl.ingest import SOURCE_ITEMS, check_accounting, commit_metadata, count_by_reason, quarantine_rows
from lakerec.etl.items import ITEM_REASONS, REQUIRED_ITEM_FIELDS, latest_items, validate_items
from lakerec.etl.sources import (
    add_source_lines, items_input_path, list_input_files, read_source, required_columns, wanted_columns,
)


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    source = cfg.item_catalog
    if source is None:
        return StageResult(skipped="no item catalog (input.items is null, or events come from input.events.path "
                                   "without input.items.path): the models run on item ids alone")
    files = list_input_files(ctx.spark, items_input_path(cfg))
    if not files:
        return StageResult(skipped=f"no item files at {items_input_path(cfg)}")
    raw = read_source(ctx.spark, files, source, wanted_columns(source, CONTRACT_ITEM_FIELDS),
                      required_columns(source, CONTRACT_ITEM_FIELDS, REQUIRED_ITEM_FIELDS)).persist()
    validated = add_source_lines(validate_items(raw, source)).persist()
    items = latest_items(validated).persist()
    try:
        rows_read, rows_items = raw.count(), items.count()
        rows, rows_valid, counts = count_by_reason(validated)
        rows_quarantined = sum(counts.values())
        check_accounting("items", rows_read, {"valid": rows_valid, T.BRONZE_QUARANTINE: rows_quarantined})
        batch_id, ingested_at = ctx.run_id, datetime.now(timezone.utc)
        meta = commit_metadata(SOURCE_ITEMS, batch_id, files)
        # the catalog is a snapshot: its quarantine rows are replaced, like silver.items
        lake.write(T.BRONZE_QUARANTINE, quarantine_rows(validated, SOURCE_ITEMS, batch_id, ingested_at),
                   mode="overwrite", partition_by=[T.SOURCE], replace_where=f"{T.SOURCE} = '{SOURCE_ITEMS}'",
                   metadata=meta)
        lake.write(T.SILVER_ITEMS, items, mode="overwrite", metadata=meta)
    finally:
        for df in (items, validated, raw):
            df.unpersist()
    return StageResult(metrics={
        "files": len(files), "rows_read": rows_read, "rows_items": rows_items, "duplicates": rows_valid - rows_items,
        "rows_quarantined": rows_quarantined,
        **{f"quarantined.{reason}": counts.get(reason, 0) for reason in ITEM_REASONS},
    })


main = job_main("items", run, __doc__)

if __name__ == "__main__":
    main()
