"""The daily run's cost against the lake's history: ingest + silver of one new day's drop on a lake holding 1 day
of silver, then on one holding 60 (issue 17.4: bounded by the day, not by the history).

    .venv/bin/python benchmarks/daily_silver.py [--history 1,60] [--per-day 20K] [--work DIR]

For each history length H: generate H days of raw JSON lines (`lakerec.etl.rawlogs`, its dirt included: late
events dated 1-3 days back, duplicates, retries, bots, bad lines) and run ingest and silver on them (not timed);
then drop the next day's file into the same folder and time the real ingest and silver jobs on it. The day's
drop is the same size for every H. Late events make the daily run recompute the days they touch (up to 3 before
the new one), which a 1-day lake mostly lacks: rows_in and days_rewritten are printed beside the times. Re-delivered
ids are looked for within `etl.redelivery_window_days` (default 7) of the run's days; `--set
etl.redelivery_window_days=null` measures the whole-history check it replaced. Last line:
`daily_cost_ratio_60d_vs_1d=<d>` (the largest history over the smallest); goal d <= 1.5. Measure alone.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ lives beside lib/, like under `python -m`

import jobs.ingest  # noqa: E402
import jobs.silver  # noqa: E402
from etl import parse_size  # noqa: E402
from lakerec.config import load_config  # noqa: E402
from lakerec.context import StageContext  # noqa: E402
from lakerec.etl.rawlogs import RawLogSpec, generate_raw_logs  # noqa: E402
from lakerec.lake import Lake  # noqa: E402
from lakerec.spark import get_spark  # noqa: E402
from measure import timed  # noqa: E402

FILES_PER_DAY = 2


def etl_once(cfg, spark, lake) -> tuple[float, float, dict, dict]:
    """ingest then silver on whatever is new in the raw folder: (ingest_s, silver_s, ingest metrics, silver's)."""
    ingest_s, _, ingested = timed(lambda: jobs.ingest.run(StageContext(cfg, spark, lake, "ingest", "bench")))
    silver_s, _, silvered = timed(lambda: jobs.silver.run(StageContext(cfg, spark, lake, "silver", "bench")))
    return ingest_s, silver_s, ingested.metrics, silvered.metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default="1,60", help="days of silver before the daily run, comma-separated")
    parser.add_argument("--per-day", default="20K", help="raw lines per day")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    args = parser.parse_args()
    histories = sorted(int(h) for h in args.history.split(","))
    per_day = parse_size(args.per_day)
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-daily-bench-"))
    # the new day ends an hour ago (ingest refuses events later than its own time + etl.max_future_minutes)
    day_end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    base = ["spark.master=local[2]", *args.overrides]
    spark = get_spark(load_config("local", [f"lake.root={work / 'spark'}", *base], conf_dir=REPO / "conf"))
    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} per_day={per_day} overrides={args.overrides}")
    print(f"{'history_d':>9} {'hist_rows':>9} {'daily_s':>8} {'ingest_s':>8} {'silver_s':>8} {'rows_in':>8} "
          f"{'days_rewr':>9}")
    daily = {}
    try:
        for days in histories:
            raw, root = work / f"raw-{days}", work / f"lake-{days}"
            cfg = load_config("local", [f"lake.root={root}", f"input.events.path={raw}", *base],
                              conf_dir=REPO / "conf")
            lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
            generate_raw_logs(RawLogSpec(events=per_day * days, files=FILES_PER_DAY * days, days=days,
                                         end=day_end - timedelta(days=1), seed=11), raw)
            _, _, history, _ = etl_once(cfg, spark, lake)
            drop = work / f"drop-{days}"
            generate_raw_logs(RawLogSpec(events=per_day, files=FILES_PER_DAY, days=1, end=day_end, seed=12), drop)
            for f in drop.iterdir():  # the next day's files beside the history's, under new names
                f.rename(raw / f"day-{f.name}")
            ingest_s, silver_s, ingested, silvered = etl_once(cfg, spark, lake)
            assert ingested["rows_read"] == per_day, ingested
            daily[days] = ingest_s + silver_s
            print(f"{days:>9} {history['rows_read']:>9} {daily[days]:>8.1f} {ingest_s:>8.1f} {silver_s:>8.1f} "
                  f"{silvered['rows_in']:>8} {silvered['days_rewritten']:>9}", flush=True)
            shutil.rmtree(root)
            shutil.rmtree(raw)
    finally:
        spark.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    small, big = histories[0], histories[-1]
    print(f"daily_cost_ratio_{big}d_vs_{small}d={daily[big] / daily[small]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
