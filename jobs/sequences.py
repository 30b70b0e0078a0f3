"""silver.events (as the last complete silver run published it) + silver.items -> silver.item_index
(item_id -> 1..n, only ever appended to), silver.sequences (one row per user: leave-last-out train/valid/test arrays and the scoring
input) and silver.train_windows (the training part cut
into fixed-length windows, what the train stage feeds; its commit names the silver.sequences version it came from).
With sequences.holdout (cold-start protocol) the held-out items' events are dropped first, except as test targets.
The windows' commit records the inputs (table versions, settings): with refresh.skip_done a run on the same
inputs skips."""
import json

from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.data.holdout import drop_holdout_events, holdout_items
from lakerec.etl.silver import read_published
from lakerec.data.sequences import (INPUTS, SEQUENCES_VERSION, SequenceInputError, build_item_index, build_sequences,
                                    build_train_windows, check_inputs, layout_for_feed, sequence_metrics)


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    events = read_published(lake, T.SILVER_EVENTS)  # the last complete silver run's, not a killed run's
    items = lake.read(T.SILVER_ITEMS) if cfg.item_catalog is not None else no_catalog(ctx)
    inputs = json.dumps({T.SILVER_EVENTS: lake.reads[T.SILVER_EVENTS], T.SILVER_ITEMS: lake.reads.get(T.SILVER_ITEMS),
                         "sequences": sequences_settings(cfg), "ranks": cfg.train.ranks}, sort_keys=True)
    if cfg.refresh.skip_done and built_from(ctx) == inputs:
        return StageResult(skipped=f"{T.SILVER_SEQUENCES} v{lake.version(T.SILVER_SEQUENCES)} is already built "
                                   f"from {T.SILVER_EVENTS} v{lake.reads[T.SILVER_EVENTS]}")
    n_events = check_inputs(events, items)

    previous = lake.read(T.SILVER_ITEM_INDEX) if lake.exists(T.SILVER_ITEM_INDEX) else None
    added = build_item_index(events, items, previous).persist()
    n_added = added.count()
    if previous is None or n_added:  # existing items keep their item_idx: new ones are appended
        lake.write(T.SILVER_ITEM_INDEX, added, mode="append")
    index = lake.read(T.SILVER_ITEM_INDEX).persist()
    holdout, held, cached = cfg.sequences.holdout, {}, []
    if holdout.protocol != "none":  # the index keeps every item: held-out items must stay rankable
        held_out = holdout_items(index, items, holdout).persist()
        events = drop_holdout_events(events, held_out).persist()
        kept = events.count()
        held = {"holdout_items": held_out.count(), "holdout_dropped_events": n_events - kept}
        n_events, cached = kept, [held_out, events]
    # at least two row groups per rank: Petastorm shards by row group, a rank must not starve
    sequences = layout_for_feed(build_sequences(events, index, cfg.sequences), 2 * cfg.train.ranks).persist()
    version = ctx.lake.write(T.SILVER_SEQUENCES, sequences, mode="overwrite",
                             metadata={"max_len": str(cfg.sequences.max_len), "min_events": str(cfg.sequences.min_events),
                                       **({"holdout": holdout.model_dump_json()} if held else {})})
    windows = layout_for_feed(build_train_windows(sequences, cfg.sequences), 2 * cfg.train.ranks)
    ctx.lake.write(T.SILVER_TRAIN_WINDOWS, windows, mode="overwrite",
                   metadata={SEQUENCES_VERSION: str(version), "window_stride": str(cfg.sequences.window_stride),
                             INPUTS: inputs})

    metrics = {**sequence_metrics(sequences), "items": index.count(), "items_added": n_added, **held,
               "train_windows": ctx.lake.read(T.SILVER_TRAIN_WINDOWS).count()}
    for df in (sequences, index, added, *cached):
        df.unpersist()
    if metrics["interactions"] != n_events:
        raise SequenceInputError(f"{n_events} events read but {metrics['interactions']} reached a sequence")
    return StageResult(metrics=metrics)


def sequences_settings(cfg) -> dict:
    """The sequences settings a build is keyed by (not `prefixes` while off, which builds as before it existed: a
    lake built then still skips a rerun on the same inputs)."""
    return cfg.sequences.model_dump(mode="json", exclude=None if cfg.sequences.prefixes else {"prefixes"})


def built_from(ctx: StageContext) -> str | None:
    """The inputs the current silver.train_windows were built from (None: no complete build), the last commit of
    a build: a run killed before it recorded nothing, and its rerun builds again."""
    lake = ctx.lake
    if not (lake.exists(T.SILVER_TRAIN_WINDOWS) and lake.exists(T.SILVER_SEQUENCES)):
        return None
    meta = lake.history(T.SILVER_TRAIN_WINDOWS)[0]["metadata"]
    if meta.get(SEQUENCES_VERSION) != str(lake.version(T.SILVER_SEQUENCES)):
        return None
    return meta.get(INPUTS)


def no_catalog(ctx: StageContext):
    """An ID-only data set's catalog: no rows, so the item index holds the items of the events alone."""
    return ctx.spark.createDataFrame([], f"{T.ITEM_ID} string, {T.PUBLISHED} date")


main = job_main("sequences", run, __doc__)

if __name__ == "__main__":
    main()
