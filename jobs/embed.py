"""silver.items -> silver.item_embeddings: item texts encoded by text.encoder (offline, in the executors), only
the items whose text is new or changed since the last run; reports texts/s. Nothing changed: nothing written."""
import logging
import time

from pyspark.sql import functions as F

from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.text.embeddings import embed_texts, texts_to_embed

log = logging.getLogger("lakerec")


def run(ctx: StageContext) -> StageResult:
    cfg, lake, conf = ctx.cfg, ctx.lake, ctx.cfg.text
    if not lake.exists(T.SILVER_ITEMS):
        return StageResult(skipped=f"{T.SILVER_ITEMS} does not exist yet: run the items stage first")
    items = lake.read(T.SILVER_ITEMS)
    existing = lake.read(T.SILVER_ITEM_EMBEDDINGS) if lake.exists(T.SILVER_ITEM_EMBEDDINGS) else None
    todo, keep = texts_to_embed(items, existing, conf.encoder)
    todo, keep = todo.persist(), keep.persist()
    try:
        # keep also holds other encoders' rows, which this run neither reuses nor removes
        n_items, n_todo, n_keep = items.count(), todo.count(), keep.where(F.col(T.ENCODER) == conf.encoder).count()
        removed = 0 if existing is None else (existing.where(F.col(T.ENCODER) == conf.encoder)
                                              .join(items.select(T.ITEM_ID), T.ITEM_ID, "left_anti").count())
        metrics = {"items": n_items, "embedded": n_todo, "reused": n_keep, "texts_per_s": 0.0, "embed_seconds": 0.0}
        if n_todo == 0 and removed == 0:
            log.info("[embed] %d items, all embedded already by %s: nothing to do", n_items, conf.encoder)
            return StageResult(metrics={**metrics, "removed": 0})
        start = time.perf_counter()
        fresh = embed_texts(todo, conf.encoder, conf.batch_size, conf.device, conf.partitions).persist()
        fresh.count()  # the encoding itself, timed apart from the write
        seconds = time.perf_counter() - start
        rate = n_todo / seconds if seconds > 0 else 0.0
        log.info("[embed] %d texts embedded with %s in %.1f s: %.0f texts/s (%d reused)", n_todo, conf.encoder,
                 seconds, rate, n_keep)
        lake.write(T.SILVER_ITEM_EMBEDDINGS, fresh.unionByName(keep), mode="overwrite",
                   metadata={T.ENCODER: conf.encoder, "embedded": str(n_todo), "reused": str(n_keep)})
        fresh.unpersist()
        return StageResult(metrics={**metrics, "texts_per_s": rate, "embed_seconds": seconds, "removed": removed})
    finally:
        todo.unpersist()
        keep.unpersist()


main = job_main("embed", run, __doc__)

if __name__ == "__main__":
    main()
