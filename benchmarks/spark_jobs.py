"""Where a Spark application spent its time, from its event log: seconds per job and per Python call site.

    .venv/bin/python benchmarks/spark_jobs.py EVENT_LOG_DIR_OR_FILE [--top 25]

PySpark names each job after the line of our code that started it (`count at jobs/ingest.py:40`), so the table
says which action of which job costs what (write it with `benchmarks/etl.py --event-log DIR`).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def _lines(path: Path):
    """An application's events: one file, or a rolling log's folder (eventlog_v2_*: events_<n>_* in order)."""
    parts = sorted((p for p in path.iterdir() if p.name.startswith("events_")),
                   key=lambda p: int(p.name.split("_")[1])) if path.is_dir() else [path]
    for part in parts:
        if part.suffix == ".zstd":  # Spark 4 compresses event logs with zstd by default
            import io

            import pyarrow as pa

            with pa.CompressedInputStream(pa.OSFile(str(part)), "zstd") as raw:
                try:
                    yield from io.TextIOWrapper(raw, encoding="utf-8")
                except OSError:  # a log still being written ends mid-frame: what came before is complete
                    return
        else:
            with part.open() as f:
                yield from f


def jobs(path: Path) -> list[dict]:
    """One dict per finished job: id, call site, seconds, stages, tasks."""
    started, out, stage_tasks, queries = {}, [], {}, {}
    for line in _lines(path):
        e = json.loads(line)
        kind = e["Event"]
        if kind.endswith("SparkListenerSQLExecutionStart"):
            queries[str(e["executionId"])] = e.get("description", "?")
        elif kind == "SparkListenerJobStart":
            props = e.get("Properties") or {}
            query = props.get("spark.sql.execution.id")
            # writes go through py4j without a Python call site: name them by their SQL query instead
            site = (props.get("callSite.short") or props.get("spark.job.description")
                    or f"query {query}: {queries.get(query, '?')}")
            stages = [s["Stage ID"] for s in e.get("Stage Infos", [])]
            started[e["Job ID"]] = (e["Submission Time"], site, stages)
        elif kind == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            stage_tasks[info["Stage ID"]] = info.get("Number of Tasks", 0)
        elif kind == "SparkListenerJobEnd" and e["Job ID"] in started:
            t0, site, stages = started.pop(e["Job ID"])
            out.append({"job": e["Job ID"], "site": site, "seconds": (e["Completion Time"] - t0) / 1000,
                        "stages": stages})
    for j in out:  # stages skipped (shuffle reuse) never complete: count only the tasks that ran
        j["tasks"] = sum(stage_tasks.get(s, 0) for s in j.pop("stages"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    apps = [args.log] if args.log.is_file() or args.log.name.startswith("eventlog_v2_") else sorted(args.log.iterdir())
    for path in apps:
        done = jobs(path)
        total = sum(j["seconds"] for j in done)
        print(f"{path.name}: {len(done)} jobs, {total:.1f} s in jobs")
        by_site = defaultdict(lambda: [0, 0.0, 0])
        for j in done:
            by_site[j["site"]][0] += 1
            by_site[j["site"]][1] += j["seconds"]
            by_site[j["site"]][2] += j["tasks"]
        print(f"{'seconds':>8} {'jobs':>5} {'tasks':>6}  call site")
        for site, (n, secs, tasks) in sorted(by_site.items(), key=lambda kv: -kv[1][1])[:args.top]:
            print(f"{secs:>8.1f} {n:>5} {tasks:>6}  {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
