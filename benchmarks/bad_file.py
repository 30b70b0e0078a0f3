"""One damaged file in a drop of many: the rest lands in one ingest run, and rejecting it costs little.

    .venv/bin/python benchmarks/bad_file.py [--files 100] [--events 1M] [--repeats 3] [--work DIR]

Generates one drop of gzipped JSON Lines files (`lakerec.etl.rawlogs`, not timed) and a copy in which one file is
cut in half (a truncated gzip, as an interrupted upload leaves it). After one untimed warm-up run, each repeat
ingests both drops into fresh lakes, alternating which goes first, with the real ingest job (`jobs.ingest.run`)
on one Spark session. Checks that the damaged drop lands every other file's rows and names the one file, then
prints the median seconds per drop and, as its last line, `bad_file_ingest_ratio=<damaged / clean>` (issue 21's
goal: <= 1.2). A timing: run it alone on the machine.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ lives beside lib/, like under `python -m`

import jobs.ingest  # noqa: E402
from etl import parse_size  # noqa: E402
from lakerec.config import load_config  # noqa: E402
from lakerec.context import StageContext  # noqa: E402
from lakerec.etl.rawlogs import RawLogSpec, generate_raw_logs  # noqa: E402
from lakerec.lake import Lake  # noqa: E402
from lakerec.spark import get_spark  # noqa: E402
from measure import timed  # noqa: E402


def damaged_copy(clean: Path, damaged: Path) -> tuple[str, int]:
    """Copy the drop and cut its middle file in half; (the cut file's path, the rows the others hold)."""
    shutil.copytree(clean, damaged)
    files = sorted(damaged.iterdir())
    victim = files[len(files) // 2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    others = sum(1 for f in files if f != victim for _ in gzip.open(f, "rt"))
    return str(victim), others


def ingest(spark, work: Path, drop: Path, name: str):
    cfg = load_config("local", [f"lake.root={work / name}", f"input.events.path={drop}", "spark.master=local[2]"],
                      conf_dir=REPO / "conf")
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    seconds, _, result = timed(lambda: jobs.ingest.run(StageContext(cfg, spark, lake, "ingest", "bench")))
    shutil.rmtree(work / name)
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="files in the drop")
    parser.add_argument("--events", default="1M", help="events in the whole drop, e.g. 200K, 1M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-badfile-bench-"))
    events = parse_size(args.events)
    clean, damaged = work / "clean", work / "damaged"
    if not clean.exists():
        generate_raw_logs(RawLogSpec(events=events, files=args.files, gzip=True), clean)
    if damaged.exists():
        shutil.rmtree(damaged)
    victim, other_rows = damaged_copy(clean, damaged)
    cfg = load_config("local", [f"lake.root={work / 'session'}", "spark.master=local[2]"], conf_dir=REPO / "conf")
    spark = get_spark(cfg)
    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} files={args.files} events={events} "
          f"damaged={Path(victim).name}")
    times = {"clean": [], "damaged": []}
    try:
        ingest(spark, work, clean, "lake-warmup")  # not timed: the first run on a session pays the JVM's warm-up
        for repeat in range(args.repeats):
            order = ("clean", "damaged") if repeat % 2 == 0 else ("damaged", "clean")
            for kind in order:
                seconds, result = ingest(spark, work, clean if kind == "clean" else damaged, f"lake-{kind}")
                m = result.metrics
                if kind == "clean":
                    assert m["rows_read"] == events and m["files_rejected"] == 0, m
                else:  # the 99 land, the one is named
                    assert m["rows_read"] == other_rows and m["files_rejected"] == 1, m
                    assert len(result.attention) == 1 and Path(victim).name in result.attention[0], result.attention
                    assert m["files_new"] == args.files - 1, m
                times[kind].append(seconds)
                print(f"repeat {repeat + 1} {kind:>8}: {seconds:7.1f} s  files_new={m['files_new']} "
                      f"rejected={m['files_rejected']} rows_read={m['rows_read']}", flush=True)
    finally:
        spark.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    clean_s, damaged_s = statistics.median(times["clean"]), statistics.median(times["damaged"])
    print(f"{'drop':>8} {'median_s':>9} {'runs':>5}")
    print(f"{'clean':>8} {clean_s:>9.1f} {len(times['clean']):>5}")
    print(f"{'damaged':>8} {damaged_s:>9.1f} {len(times['damaged']):>5}")
    print(f"load_after={os.getloadavg()[0]:.1f}")
    print(f"bad_file_ingest_ratio={damaged_s / clean_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
