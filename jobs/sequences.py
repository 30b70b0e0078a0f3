"""silver.events (as the last complete silver run published it) + silver.items -> silver.item_index
(item_id -> 1..n), silver.sequences (one row per user: leave-last-out train/valid/test arrays and the scoring
input) and silver.train_windows (the training part cut
into fixed-length windows, what the train stage feeds; its commit names the silver.sequences version it came from).
With sequences.holdout (cold-start protocol) the held-out items' events are dropped first, except as test targets."""
from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.data.holdout import drop_holdout_events, holdout_items
from lakerec.etl.silver import read_published
from lakerec.data.sequences import (SEQUENCES_VERSION, SequenceInputError, build_item_index, build_sequences,
                                    build_train_windows, check_inputs, layout_for_feed, sequence_metrics)


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    events = read_published(ctx.lake, T.SILVER_EVENTS)  # the last complete silver run's, not a killed run's
    items = ctx.lake.read(T.SILVER_ITEMS)
    n_events = check_inputs(events, items)

    index = build_item_index(events, items).persist()
    ctx.lake.write(T.SILVER_ITEM_INDEX, index, mode="overwrite")
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
                   metadata={SEQUENCES_VERSION: str(version), "window_stride": str(cfg.sequences.window_stride)})

    metrics = {**sequence_metrics(sequences), "items": index.count(), **held,
               "train_windows": ctx.lake.read(T.SILVER_TRAIN_WINDOWS).count()}
    for df in (sequences, index, *cached):
        df.unpersist()
    if metrics["interactions"] != n_events:
        raise SequenceInputError(f"{n_events} events read but {metrics['interactions']} reached a sequence")
    return StageResult(metrics=metrics)


main = job_main("sequences", run, __doc__)

if __name__ == "__main__":
    main()
