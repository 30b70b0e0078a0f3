"""Raw -> bronze -> silver at scale, beside the I/O floor, on generated raw logs (`lakerec.etl.rawlogs`).

    .venv/bin/python benchmarks/etl.py [--sizes 1M,10M] [--files 8] [--gzip] [--work DIR] [--driver-memory 8g]

For each size: generate the raw JSON lines (not timed), then time
- floor: Spark reads the same raw files once (as text) and writes them once as Parquet (the issue's I/O floor);
- parse floor: the same, but read as JSON with an explicit all-string schema of the contract's fields: the least
  any ingest of these files does (parsing is most of the gap between the floor and the ETL);
- etl: the real ingest and silver jobs (`jobs.ingest.run`, `jobs.silver.run`) into a fresh lake.
Prints events/s, the peak memory of the whole process tree (this Python process, the Spark JVM and its Python
workers, sampled every 0.2 s) and the ETL time over each floor. The last line is `etl_ratio_to_floor@<size>=<x>
etl_ratio_to_parse_floor@<size>=<y>` for the largest size. Goals: y <= 3 at 10M, the 10M time within 12x the 1M
time, 10M within 24 GiB on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ lives beside lib/, like under `python -m`

import jobs.ingest  # noqa: E402
import jobs.silver  # noqa: E402
from lakerec.config import CONTRACT_EVENT_FIELDS, load_config  # noqa: E402
from lakerec.context import StageContext  # noqa: E402
from lakerec.etl.rawlogs import RawLogSpec, generate_raw_logs  # noqa: E402
from lakerec.etl.sources import wanted_columns  # noqa: E402
from lakerec.lake import Lake  # noqa: E402
from lakerec.spark import get_spark  # noqa: E402
from measure import timed  # noqa: E402


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated event counts, e.g. 100K,1M,10M")
    parser.add_argument("--files", type=int, default=8, help="raw files per size")
    parser.add_argument("--gzip", action="store_true", help="gzip the raw files")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--driver-memory", default="8g", help="Spark driver (local mode: all of Spark) heap")
    parser.add_argument("--event-log", default=None, metavar="DIR",
                        help="write Spark's event log here (then: benchmarks/spark_jobs.py DIR shows time per job)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-etl-bench-"))
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    extra = {"spark.driver.memory": args.driver_memory}
    if args.event_log:
        Path(args.event_log).mkdir(parents=True, exist_ok=True)
        extra |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": Path(args.event_log).resolve().as_uri()}
    cfg = load_config("local", [f"lake.root={work / 'lake'}", "spark.master=local[2]",
                                "spark.extra={" + ", ".join(f"'{k}': '{v}'" for k, v in extra.items()) + "}"],
                      conf_dir=REPO / "conf")
    spark = get_spark(cfg)
    print(f"cores={os.cpu_count()} spark={spark.sparkContext.master} driver_memory={args.driver_memory} "
          f"files={args.files} gzip={args.gzip}")
    print(f"{'events':>10} {'floor_s':>8} {'parse_s':>8} {'etl_s':>8} {'ingest_s':>8} {'silver_s':>8} "
          f"{'etl_ev/s':>10} {'floor_ev/s':>10} {'peak_GiB':>8} {'ratio':>6} {'vs_parse':>8}")
    json_schema = ", ".join(f"`{c}` string" for c in wanted_columns(cfg.input.events, CONTRACT_EVENT_FIELDS))
    results = {}
    try:
        for n in sizes:
            raw = work / f"raw-{n}"
            if not raw.exists():
                generate_raw_logs(RawLogSpec(events=n, files=args.files, gzip=args.gzip), raw)
            files = sorted(str(p) for p in raw.iterdir())
            floor_out = work / f"floor-{n}"
            floor_s, floor_mem, _ = timed(lambda: spark.read.text(files).write.mode("overwrite").parquet(str(floor_out)))
            parse_s, parse_mem, _ = timed(lambda: spark.read.schema(json_schema).json(files)
                                          .write.mode("overwrite").parquet(str(floor_out)))
            shutil.rmtree(floor_out)
            root = work / f"lake-{n}"
            run_cfg = load_config("local", [f"lake.root={root}", f"input.events.path={raw}",
                                            "spark.master=local[2]"], conf_dir=REPO / "conf")
            lake = Lake(run_cfg.lake.root, spark, run_cfg.lake.engine)
            ingest_s, ingest_mem, ingested = timed(
                lambda: jobs.ingest.run(StageContext(run_cfg, spark, lake, "ingest", "bench")))
            silver_s, silver_mem, _ = timed(lambda: jobs.silver.run(StageContext(run_cfg, spark, lake, "silver", "bench")))
            assert ingested.metrics["rows_read"] == n, ingested.metrics
            etl_s = ingest_s + silver_s
            peak = max(floor_mem, parse_mem, ingest_mem, silver_mem) / 2**30
            results[n] = (floor_s, parse_s, etl_s)
            print(f"{n:>10} {floor_s:>8.1f} {parse_s:>8.1f} {etl_s:>8.1f} {ingest_s:>8.1f} {silver_s:>8.1f} "
                  f"{n / etl_s:>10.0f} {n / floor_s:>10.0f} {peak:>8.2f} {etl_s / floor_s:>6.2f} "
                  f"{etl_s / parse_s:>8.2f}", flush=True)
            shutil.rmtree(root)
    finally:
        spark.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        print(f"time_scaling {big}/{small} events: {results[big][2] / results[small][2]:.1f}x "
              f"for {big / small:.0f}x the events")
    big = max(sizes)
    label = f"{big // 1_000_000}M" if big % 1_000_000 == 0 else str(big)
    floor_s, parse_s, etl_s = results[big]
    print(f"etl_ratio_to_floor@{label}={etl_s / floor_s:.2f} etl_ratio_to_parse_floor@{label}={etl_s / parse_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
