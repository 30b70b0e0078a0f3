"""Quality per data set, side by side: lakerec's model over seeds (mean ± sd), its baselines, the peers.

    .venv/bin/python benchmarks/quality.py --dataset ml100k|toys [--seeds 42,43,44] [--epochs N]
        [--config conf/x.yaml ...] [--lake DIR] [--set key=value ...] [--no-peer] [--fresh-peer]

One protocol for every row: each user's history in time order (ML-100K: ties by u.data line order; Toys: the
file's order), last item test, second-last validation, full ranking over the catalog with the history
excluded. lakerec runs `lakerec run --config conf/sources/<source>.yaml [--config ...]` into one lake (the first
seed runs the whole pipeline, each further seed `--from train` with train.seed and evaluate.als.seed set), and
its metrics and per-user test ranks (evaluation/test_ranks.csv) are read back from MLflow. Model settings are
whatever the configs say (chosen on validation); the best baseline is the one with the highest mean test
NDCG@10 (the hardest comparison), and the paired test compares per-user NDCG@10 averaged over seeds.
ML-100K: RecBole SASRec runs in its own venv (benchmarks/peers/setup_recbole.sh), its JSON cached in
~/.cache/lakerec/peers. Toys: the published rows (../shared/data/amazon-toys/README.md) stand beside ours.
Prints the split check, the table, the paired test, and as its last line
`dataset=... ndcg10=... ndcg10_sd=... best_baseline_ndcg10=... ratio_vs_best_baseline=... published_best_ndcg10=...
ratio_vs_published=... time_ratio_vs_recbole=...` (nan where not applicable).
Reads ../shared/data, or $LAKEREC_SHARED_DATA (licensed, never copied here); exits with a clear message where it
is absent.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import protocol as P  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LAKEREC_SHARED_DATA", REPO.parent / "shared" / "data"))  # a worktree elsewhere: set it
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "recbole_sasrec.py"
PEER_PYTHON = Path.home() / ".cache" / "lakerec" / "recbole-venv" / "bin" / "python"
PEER_CACHE = Path.home() / ".cache" / "lakerec" / "peers"
COLUMNS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@10", "coverage@10", "seconds_to_best",
           "seconds_per_epoch")
SECONDS = ("seconds_to_best", "seconds_per_epoch")
BASELINES = {"pop": "most popular", "cooc": "co-occurrence", "als": "ALS (tuned on valid)"}
NOT_MODELS = {*BASELINES, "champion"}  # evaluate-stage rows that are not a freshly trained lakerec model
RECBOLE = "RecBole SASRec"
RANKS_ARTIFACT = "evaluation/test_ranks.csv"


@dataclass(frozen=True)
class Dataset:
    name: str
    config: str                  # the source config, relative to the repository root
    data: Path                   # the shared file the benchmark needs
    published: dict[str, dict[str, float]] = field(default_factory=dict)  # test rows of the literature
    expected_interactions: int | None = None  # every line entry must reach silver.sequences


TOYS_PUBLISHED = {  # ../shared/data/amazon-toys/README.md: full ranking, history excluded, this exact file
    "published SASRec sampled softmax": {"hr@10": 0.0970, "ndcg@10": 0.0580},
    "published eSASRec": {"hr@10": 0.0939, "ndcg@10": 0.0538},
    "published TIGER": {"hr@10": 0.0712, "ndcg@10": 0.0432},
    "published ICLRec": {"ndcg@10": 0.0480},
    "published ICSRec": {"hr@10": 0.1055, "ndcg@10": 0.0657},
}
DATASETS = {
    "ml100k": Dataset("ml100k", "conf/sources/movielens.yaml", SHARED / "ml-100k" / "u.data"),
    "toys": Dataset("toys", "conf/sources/toys.yaml", SHARED / "amazon-toys" / "Toys_and_Games.txt",
                    TOYS_PUBLISHED, 167_597),
}


def lakerec_rows(evaluate: dict[str, float], train: dict[str, float]) -> dict[str, dict[str, float]]:
    """MLflow metrics of the evaluate and train stage runs -> row name -> protocol metric -> value.

    The one place that knows lakerec's metric names: `test.<model>.<metric>` (e.g. test.sasrec.ndcg_10,
    test.als.mrr_10), or the older `test_<metric>` (SASRec) / `pop_test_<metric>`. lakerec's metric `ndcg_10` is the
    protocol's `ndcg@10`; a plain `mrr` (not cut at 10) is not `mrr@10` and is left out. The train run gives
    `seconds_to_best`, else `train_seconds` (every epoch: a lakerec without early stopping), and
    `seconds_per_epoch` (train_seconds / epochs_run).
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
    per_epoch = train["train_seconds"] / train["epochs_run"] if train.get("epochs_run") and "train_seconds" in train \
        else None
    for name in rows:
        if name not in NOT_MODELS and seconds is not None:
            rows[name]["seconds_to_best"] = seconds
            if per_epoch is not None:
                rows[name]["seconds_per_epoch"] = per_epoch
    return rows


def best_lakerec(rows: dict[str, dict[str, float]]) -> tuple[str, dict[str, float]] | None:
    """The trained lakerec model with the highest test NDCG@10 (baselines and the old champion left aside)."""
    models = {n: r for n, r in rows.items() if n not in NOT_MODELS and "ndcg@10" in r}
    if not models:
        return None
    name = max(models, key=lambda n: models[n]["ndcg@10"])
    return name, models[name]


def over_seeds(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Rows of several seeds -> row -> metric -> (mean, sd) (sd nan for one seed)."""
    from lakerec.evaluate.stats import mean_sd

    names = dict.fromkeys(n for rows in runs for n in rows)
    return {n: {m: mean_sd([rows[n][m] for rows in runs if m in rows.get(n, {})])
                for m in dict.fromkeys(m for rows in runs for m in rows.get(n, {}))} for n in names}


def _cell(column: str, value) -> str:
    if value is None:
        return "-"
    mean, sd = value if isinstance(value, tuple) else (value, math.nan)
    text = f"{mean:.0f}" if column in SECONDS else f"{mean:.4f}"
    if not math.isnan(sd):
        text += f"±{sd:.0f}" if column in SECONDS else f"±{sd:.4f}"
    return text


def format_table(rows: dict[str, dict | None]) -> str:
    """Fixed-width table: one line per row, a value or (mean, sd) as mean±sd, `-` where a row lacks a metric,
    `n/a` for a row that is missing."""
    width = max([len(n) for n in rows] + [5]) + 2
    widths = {c: max(len(c), 13) + 2 for c in COLUMNS}
    lines = [f"{'model':<{width}}" + "".join(f"{c:>{widths[c]}}" for c in COLUMNS)]
    for name, row in rows.items():
        cells = ["n/a" if row is None else _cell(c, row.get(c)) for c in COLUMNS]
        lines.append(f"{name:<{width}}" + "".join(f"{t:>{widths[c]}}" for c, t in zip(COLUMNS, cells)))
    return "\n".join(lines)


def last_line(dataset: str, model: tuple[float, float] | None, best_baseline: float | None,
              published: float | None, seconds: float | None, peer_seconds: float | None) -> str:
    """The benchmark's summary line; nan where a side is missing or the comparison does not apply."""
    def num(x):
        return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    def ratio(a, b, digits=3):
        return f"{a / b:.{digits}f}" if a is not None and b and not math.isnan(a) else "nan"

    mean, sd = model if model else (None, None)
    return (f"dataset={dataset} ndcg10={num(mean)} ndcg10_sd={num(sd)} best_baseline_ndcg10={num(best_baseline)} "
            f"ratio_vs_best_baseline={ratio(mean, best_baseline)} published_best_ndcg10={num(published)} "
            f"ratio_vs_published={ratio(mean, published)} time_ratio_vs_recbole={ratio(seconds, peer_seconds)}")


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


def pseudonymised(split: dict[str, tuple[str, str]], lake: Path, config: str) -> dict[str, tuple[str, str]]:
    """The protocol's split keyed by the user ids silver holds: HMAC pseudonyms under the lake's key."""
    from lakerec.config import load_config
    from lakerec.etl.pseudonym import load_key, pseudonym

    cfg = load_config("local", [f"lake.root={lake}"], [config], conf_dir=REPO / "conf")
    key = load_key(cfg.etl.pseudonymise, cfg.lake.root)
    return {pseudonym(user, key): items for user, items in split.items()}


def sequence_file_split(path: Path) -> dict[str, tuple[str, str]]:
    """The published protocol on a `user item item ...` file: user -> (second-last item, last item)."""
    out = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:  # at least one training item besides valid and test
            out[fields[0]] = (fields[-2], fields[-1])
    return out


def run_lakerec(lake: Path, configs: list[str], overrides: list[str], from_stage: str | None = None
                ) -> tuple[float, str]:
    """`lakerec run` into `lake`: wall seconds and the command."""
    cmd = [str(Path(sys.executable).with_name("lakerec")), "run", *(x for c in configs for x in ("--config", c)),
           "--set", f"lake.root={lake}", *(x for o in overrides for x in ("--set", o)),
           *(("--from", from_stage) if from_stage else ())]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, " ".join(cmd[1:])


def stage_runs(tracking_uri: str, experiment: str = "lakerec") -> dict[str, tuple[str, dict[str, float]]]:
    """Stage name -> (run id, metrics) of its latest run in the MLflow store (pipeline parent runs left aside)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              order_by=["attributes.start_time ASC"])
    return {r.info.run_name: (r.info.run_id, r.data.metrics) for r in runs
            if not r.info.run_name.startswith("pipeline:")}


def stage_metrics(tracking_uri: str, experiment: str = "lakerec") -> dict[str, dict[str, float]]:
    """Stage name -> metrics of its latest run in the MLflow store (pipeline parent runs left aside)."""
    return {name: metrics for name, (_, metrics) in stage_runs(tracking_uri, experiment).items()}


def user_ranks(tracking_uri: str, run_id: str):
    """The evaluate run's per-user test ranks (user_id, one column per model), or None for an older lakerec."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{RANKS_ARTIFACT}")
    except Exception:  # noqa: BLE001 - an evaluate stage from before the artifact existed
        return None
    return pd.read_csv(io.StringIO(text), dtype={"user_id": str})


def paired_over_seeds(frames: list, model: str, baseline: str):
    """Per-user NDCG@10 of model and baseline, each averaged over the seeds' frames (users joined by id), and the
    paired test (lakerec.evaluate.stats)."""
    from lakerec.evaluate.stats import paired_test, per_user_ndcg

    joined = None
    for i, frame in enumerate(frames):
        part = frame[["user_id"]].assign(**{f"a{i}": per_user_ndcg(frame[model]),
                                            f"b{i}": per_user_ndcg(frame[baseline])})
        joined = part if joined is None else joined.merge(part, on="user_id")
    a = joined[[c for c in joined if c.startswith("a")]].mean(axis=1)
    b = joined[[c for c in joined if c.startswith("b")]].mean(axis=1)
    return paired_test(a.to_numpy(), b.to_numpy())


def parse_seeds(text: str) -> list[int]:
    seeds = [int(x) for x in text.split(",") if x.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give distinct integers, e.g. 42,43,44")
    return seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ml100k")
    parser.add_argument("--seeds", type=parse_seeds, default=[42, 43, 44], help="train/ALS seeds, comma-separated")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--config", dest="configs", action="append", default=[],
                        help="model config file(s) applied after the source config (e.g. a tuned conf)")
    parser.add_argument("--lake", default=None, help="lake folder (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    parser.add_argument("--no-peer", action="store_true", help="skip RecBole (ML-100K)")
    parser.add_argument("--fresh-peer", action="store_true", help="retrain RecBole even when its result is cached")
    args = parser.parse_args()
    ds = DATASETS[args.dataset]
    if not ds.data.is_file():
        print(f"skipped: {ds.name} not found at {ds.data} (licensed data, never in the repository)")
        return 0

    recbole, note = None, None
    if ds.name == "ml100k":
        recbole, note = (None, "RecBole: skipped (--no-peer)") if args.no_peer else recbole_result(ds.data,
                                                                                                   args.fresh_peer)
    lake = Path(args.lake or tempfile.mkdtemp(prefix=f"lakerec-quality-{ds.name}-")) / "lake"
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    if ds.name == "toys":
        from lakerec.etl.seqfile import convert

        raw = lake / "raw" / "toys"
        stats = convert(ds.data, raw / "events" / "events.csv", raw / "items" / "items.csv")
        print(f"converted: {stats}")
        overrides = [f"input.events.path={raw / 'events'}", f"input.items.path={raw / 'items'}", *overrides]
    if ds.name == "ml100k":  # the shipped ../shared paths only resolve from a checkout beside shared/
        overrides = [f"input.events.path={ds.data}", f"input.items.path={ds.data.with_name('u.item')}", *overrides]
    configs = [ds.config, *args.configs]
    uri = f"sqlite:///{lake}/mlflow.db"

    seeds_rows, frames = [], []
    for i, seed in enumerate(args.seeds):
        wall, cmd = run_lakerec(lake, configs, [*overrides, f"train.seed={seed}", f"evaluate.als.seed={seed}"],
                                None if i == 0 else "train")
        stages = stage_runs(uri)
        rows = lakerec_rows(stages["evaluate"][1], stages.get("train", ("", {}))[1])
        best = best_lakerec(rows)
        print(f"seed {seed}: {wall:.0f} s wall, test NDCG@10 "
              f"{best[1]['ndcg@10'] if best else float('nan'):.4f} ({cmd})", flush=True)
        if i == 0:
            reached = stages["sequences"][1].get("interactions")
            print(f"interactions in silver.sequences: {reached:.0f}")
            if ds.expected_interactions is not None:
                assert reached == ds.expected_interactions, f"ETL lost interactions: {reached} != " \
                                                            f"{ds.expected_interactions}"
            expected = sequence_file_split(ds.data) if ds.name == "toys" else P.leave_one_out(
                P.user_histories(P.read_udata(ds.data)))
            print(f"split check: {P.split_mismatches(pseudonymised(expected, lake, ds.config), lakerec_split(lake))} "
                  f"of {len(expected)} users with a different valid/test item in lakerec than in the protocol")
        seeds_rows.append(rows)
        frames.append(user_ranks(uri, stages["evaluate"][0]))

    agg = over_seeds(seeds_rows)
    model = max((n for n in agg if n not in NOT_MODELS and "ndcg@10" in agg[n]), key=lambda n: agg[n]["ndcg@10"][0],
                default=None)
    baselines = {n: agg[n] for n in BASELINES if n in agg}
    best_base = max(baselines, key=lambda n: baselines[n]["ndcg@10"][0], default=None)
    if recbole is not None:
        peer_split = {u: tuple(v) for u, v in recbole["split"].items()}
        expected = P.leave_one_out(P.user_histories(P.read_udata(ds.data)))
        print(f"split check: {P.split_mismatches(expected, peer_split)} users differ in RecBole's split")
    if note:
        print(note)

    table = {f"lakerec {model} ({len(args.seeds)} seeds)" if model else "lakerec": agg.get(model),
             **{label: agg.get(name) for name, label in BASELINES.items()},
             **({RECBOLE: recbole_row(recbole) if recbole else None} if ds.name == "ml100k" else {}),
             **ds.published}
    print()
    print(format_table(table))
    if model and best_base and all(f is not None for f in frames):
        test = paired_over_seeds(frames, model, best_base)
        print(f"paired test, {model} vs best baseline {best_base}: {test.describe(model, best_base)}")
    else:
        print("paired test: not available (no model, no baseline or no per-user ranks)")
    published = max((r["ndcg@10"] for r in ds.published.values()), default=None)
    seconds = agg[model]["seconds_to_best"][0] if model and "seconds_to_best" in agg[model] else None
    print(last_line(ds.name, agg[model]["ndcg@10"] if model else None,
                    baselines[best_base]["ndcg@10"][0] if best_base else None, published, seconds,
                    recbole["seconds_to_best"] if recbole else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
