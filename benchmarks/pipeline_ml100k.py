"""The whole pipeline on MovieLens 100K, side by side with the most-popular baseline on the same split.

    .venv/bin/python benchmarks/pipeline_ml100k.py [--lake DIR] [--set key=value ...]

Runs `lakerec run --config conf/sources/movielens.yaml` into a fresh lake (default: a temporary folder), then
prints stage times and test-split quality (full ranking over all 1,682 items, history excluded; last item test,
second-last validation) for SASRec and popularity, with their ratio. Reads ../shared/data/ml-100k (licensed,
never copied here); exits with a clear message where it is absent.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-100k" / "u.data"
METRICS = ("hr_10", "ndcg_10", "mrr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: MovieLens 100K not found at {DATA} (licensed data, never in the repository)")
        return 0
    lake = Path(args.lake or tempfile.mkdtemp(prefix="lakerec-ml100k-")) / "lake"
    cmd = [str(Path(sys.executable).with_name("lakerec")), "run", "--config", "conf/sources/movielens.yaml",
           "--set", f"lake.root={lake}", *(x for o in args.overrides for x in ("--set", o))]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start

    client = MlflowClient(tracking_uri=f"sqlite:///{lake}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("lakerec").experiment_id])
    stages = {r.info.run_name: r for r in runs if not r.info.run_name.startswith("pipeline:")}
    print(f"pipeline on MovieLens 100K: {wall:.0f} s wall ({' '.join(cmd[1:])})")
    print("stage seconds: " + ", ".join(f"{n} {r.data.metrics.get('stage_seconds', 0):.0f}" for n, r in stages.items()))
    m = stages["evaluate"].data.metrics
    print(f"\n{'model':<12}" + "".join(f"{k:>10}" for k in METRICS))
    print(f"{'SASRec':<12}" + "".join(f"{m[f'test_{k}']:>10.4f}" for k in METRICS))
    print(f"{'popularity':<12}" + "".join(f"{m[f'pop_test_{k}']:>10.4f}" for k in METRICS))
    print(f"{'ratio':<12}" + "".join(f"{m[f'test_{k}'] / m[f'pop_test_{k}']:>10.2f}" for k in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
