"""Write the demo raw drops (event logs per day + item catalog) under <lake.root>/raw; skipped when
input.events.path names real input."""
import logging

from jobs.common import job_main
from lakerec.context import StageContext, StageResult
from lakerec.etl.demo import generate_demo
from lakerec.etl.sources import events_input_path, items_input_path


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    if not cfg.demo_input:
        return StageResult(skipped=f"input.events.path is set: {cfg.input.events.path}")
    # a configured catalog is real input: never overwrite it with demo items; `input.items: null`: no catalog
    catalog = cfg.item_catalog
    items_dir = items_input_path(cfg) if catalog is not None and catalog.path is None else None
    summary = generate_demo(cfg.demo, events_input_path(cfg), items_dir)
    logging.getLogger("lakerec.generate").info("demo drops: %d clean events, dirt injected %s, catalog dirt %s",
                                               summary.clean_events, summary.dirt, summary.item_dirt)
    return StageResult(metrics=summary.metrics())


main = job_main("generate", run, __doc__)

if __name__ == "__main__":
    main()
