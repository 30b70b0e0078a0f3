"""Quality on MovieLens 100K, side by side: lakerec's best model, its baselines, and RecBole 1.2.1 SASRec.

    .venv/bin/python benchmarks/quality_ml100k.py [--lake DIR] [--set key=value ...] [--no-peer] [--fresh-peer]

One protocol for every row (benchmarks/peers/protocol.py): all ratings as interactions, each user's history
ordered by time with ties by u.data line order, last item test, second-last validation, full ranking over the
catalog with the history excluded. lakerec runs `lakerec run --config conf/sources/movielens.yaml` into a fresh
lake and its metrics are read back from MLflow; RecBole runs in its own venv (benchmarks/peers/setup_recbole.sh)
and its JSON is cached in ~/.cache/lakerec/peers, keyed by its scripts, the data and the parameters.
Prints the split check (users whose valid/test item differs from the protocol's), one table, and as its last
line the ratios lakerec / peer of NDCG@10 and of the wall time to the best epoch.
Reads ../shared/data/ml-100k (licensed, never copied here); exits with a clear message where it is absent.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import protocol as P  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-100k" / "u.data"
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "recbole_sasrec.py"
PEER_PYTHON = Path.home() / ".cache" / "lakerec" / "recbole-venv" / "bin" / "python"
PEER_CACHE = Path.home() / ".cache" / "lakerec" / "peers"
COLUMNS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@10", "coverage@10", "seconds_to_best")
BASELINES = {"pop": "most popular", "als": "ALS (tuned on valid)", "cooc": "co-occurrence"}
NOT_MODELS = {*BASELINES, "champion"}  # evaluate-stage rows that are not a freshly trained lakerec model
RECBOLE = "RecBole SASRec"


def lakerec_rows(evaluate: dict[str, float], train: dict[str, float]) -> dict[str, dict[str, float]]:
    """MLflow metrics of the evaluate and train stage runs -> row name -> protocol metric -> value.

    The one place that knows lakerec's metric names: `test.<model>.<metric>` (e.g. test.sasrec.ndcg_10,
    test.als.mrr_10), or the older `test_<metric>` (SASRec) / `pop_test_<metric>`. lakerec's metric `ndcg_10` is the
    protocol's `ndcg@10`; a plain `mrr` (not cut at 10) is not `mrr@10` and is left out. The train run gives
    `seconds_to_best`, else `train_seconds` (every epoch: a lakerec without early stopping).
    """
    models: dict[str, dict[str, float]] = {}
    for key, value in evaluate.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "test":
            models.setdefault(parts[1], {})[parts[2]] = value
        elif key.startswith(("test_", "pop_test_")) and key != "test_users":
            name, metric = ("pop", key[9:]) if key.startswith("pop_") else ("sasrec", key[5:])
            models.setdefault(name, {})[metric] = value
    rows = {name: {m.replace("_", "@", 1): v for m, v in metrics.items() if "_" in m} for name, metrics in models.items()}
    seconds = train.get("seconds_to_best", train.get("train_seconds"))
    for name in rows:
        if name not in NOT_MODELS and seconds is not None:
            rows[name]["seconds_to_best"] = seconds
    return rows


def best_lakerec(rows: dict[str, dict[str, float]]) -> tuple[str, dict[str, float]] | None:
    """The trained lakerec model with the highest test NDCG@10 (baselines and the old champion left aside)."""
    models = {n: r for n, r in rows.items() if n not in NOT_MODELS and "ndcg@10" in r}
    if not models:
        return None
    name = max(models, key=lambda n: models[n]["ndcg@10"])
    return name, models[name]


def format_table(rows: dict[str, dict[str, float] | None]) -> str:
    """Fixed-width table: one line per row, `-` where a row lacks a metric, `n/a` for a row that is missing."""
    width = max([len(n) for n in rows] + [5]) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{c:>{max(len(c), 8) + 2}}" for c in COLUMNS)]
    for name, row in rows.items():
        cells = []
        for c in COLUMNS:
            w = max(len(c), 8) + 2
            value = None if row is None else row.get(c)
            text = "n/a" if row is None else "-" if value is None else (
                f"{value:.0f}" if c == "seconds_to_best" else f"{value:.4f}")
            cells.append(f"{text:>{w}}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def ratio_line(lakerec: dict | None, recbole: dict | None, als: dict | None) -> str:
    """`ndcg10_ratio_vs_recbole=<x> ndcg10_ratio_vs_als=<z> time_ratio_vs_recbole=<y>` (lakerec / peer; nan
    where either side is missing)."""
    def ratio(key: str, peer: dict | None) -> str:
        a, b = (lakerec or {}).get(key), (peer or {}).get(key)
        return f"{a / b:.3f}" if a is not None and b else "nan"

    return (f"ndcg10_ratio_vs_recbole={ratio('ndcg@10', recbole)} ndcg10_ratio_vs_als={ratio('ndcg@10', als)} "
            f"time_ratio_vs_recbole={ratio('seconds_to_best', recbole)}")


def peer_cache_path(data: Path, overrides: list[str]) -> Path:
    """Where RecBole's JSON for these scripts, data and parameter overrides is cached."""
    key = P.cache_key([PEER_SCRIPT, Path(P.__file__), data], {"overrides": overrides})
    return PEER_CACHE / f"recbole_sasrec-{key}.json"


def recbole_result(data: Path, fresh: bool, overrides: list[str] = ()) -> tuple[dict | None, str]:
    """RecBole's result (cached unless fresh) and a note saying where it came from or why it is missing."""
    path = peer_cache_path(data, list(overrides))
    if path.is_file() and not fresh:
        return json.loads(path.read_text()), f"RecBole: cached {path}"
    if not PEER_PYTHON.is_file():
        return None, f"RecBole: skipped, no venv at {PEER_PYTHON} (bash benchmarks/peers/setup_recbole.sh)"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), "--data", str(data), "--out", str(tmp),
           *(x for o in overrides for x in ("--set", o))]
    print(f"RecBole: training ({' '.join(cmd)}); 10-60 min on 2 cores", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    tmp.replace(path)  # only a finished run is cached
    return json.loads(path.read_text()), f"RecBole: fresh run, cached {path}"


def recbole_row(result: dict) -> dict[str, float]:
    """RecBole's protocol test metrics (history excluded) and its wall time to the best epoch."""
    return {**result["test"], "seconds_to_best": result["seconds_to_best"]}


def lakerec_split(lake: Path) -> dict[str, tuple[str, str]]:
    """user -> (valid item, test item) as lakerec's silver.sequences holds them (read with delta-rs)."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    from lakerec import tables as T

    def table(name: str, columns: list[str]):
        layer, table_name = name.split(".")
        return ds.dataset(DeltaTable(str(lake / layer / table_name)).file_uris(), format="parquet").to_table(
            columns=columns).to_pylist()

    item_of = {r[T.ITEM_IDX]: r[T.ITEM_ID] for r in table(T.SILVER_ITEM_INDEX, [T.ITEM_IDX, T.ITEM_ID])}
    rows = table(T.SILVER_SEQUENCES, [T.USER_ID, T.VALID_TARGET, T.TEST_TARGET])
    return {str(r[T.USER_ID]): (item_of[r[T.VALID_TARGET]], item_of[r[T.TEST_TARGET]])
            for r in rows if r[T.TEST_TARGET] > 0}


def pseudonymised(split: dict[str, tuple[str, str]], lake: Path) -> dict[str, tuple[str, str]]:
    """The protocol's split keyed by the user ids silver holds: HMAC pseudonyms under the lake's key."""
    from lakerec.config import load_config
    from lakerec.etl.pseudonym import load_key, pseudonym

    cfg = load_config("local", [f"lake.root={lake}"], ["conf/sources/movielens.yaml"], conf_dir=REPO / "conf")
    key = load_key(cfg.etl.pseudonymise, cfg.lake.root)
    return {pseudonym(user, key): items for user, items in split.items()}


def run_lakerec(lake: Path, overrides: list[str]) -> tuple[float, str]:
    """`lakerec run` on MovieLens into `lake`: wall seconds and the command."""
    cmd = [str(Path(sys.executable).with_name("lakerec")), "run", "--config", "conf/sources/movielens.yaml",
           "--set", f"lake.root={lake}", *(x for o in overrides for x in ("--set", o))]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, " ".join(cmd[1:])


def stage_metrics(tracking_uri: str, experiment: str = "lakerec") -> dict[str, dict[str, float]]:
    """Stage name -> metrics of its latest run in the MLflow store (pipeline parent runs left aside)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              order_by=["attributes.start_time ASC"])
    return {r.info.run_name: r.data.metrics for r in runs if not r.info.run_name.startswith("pipeline:")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    parser.add_argument("--no-peer", action="store_true", help="skip RecBole")
    parser.add_argument("--fresh-peer", action="store_true", help="retrain RecBole even when its result is cached")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: MovieLens 100K not found at {DATA} (licensed data, never in the repository)")
        return 0

    recbole, note = (None, "RecBole: skipped (--no-peer)") if args.no_peer else recbole_result(DATA, args.fresh_peer)
    lake = Path(args.lake or tempfile.mkdtemp(prefix="lakerec-quality-")) / "lake"
    wall, cmd = run_lakerec(lake, args.overrides)
    stages = stage_metrics(f"sqlite:///{lake}/mlflow.db")
    rows = lakerec_rows(stages["evaluate"], stages.get("train", {}))
    best = best_lakerec(rows)

    expected = P.leave_one_out(P.user_histories(P.read_udata(DATA)))
    print(f"lakerec: {wall:.0f} s wall ({cmd})")
    print(f"split check: {P.split_mismatches(pseudonymised(expected, lake), lakerec_split(lake))} of "
          f"{len(expected)} users with a "
          "different valid/test item in lakerec than in the protocol (time, then u.data line order)")
    if recbole is not None:
        peer_split = {u: tuple(v) for u, v in recbole["split"].items()}
        print(f"split check: {P.split_mismatches(expected, peer_split)} users differ in RecBole's split")
    print(note)
    if "als" not in rows:
        print("ALS: not logged by this lakerec's evaluate stage (test.als.* missing), row left empty")

    table = {f"lakerec {best[0]}" if best else "lakerec": best[1] if best else None,
             **{label: rows.get(name) for name, label in BASELINES.items() if name in rows or name == "als"},
             RECBOLE: recbole_row(recbole) if recbole else None}
    print()
    print(format_table(table))
    print(ratio_line(best[1] if best else None, table[RECBOLE], rows.get("als")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
