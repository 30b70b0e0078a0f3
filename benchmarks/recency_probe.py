"""Probe: does a recent-popularity prior lift a trained model's full-ranking NDCG@10 on the leave-one-out split?

    .venv/bin/python benchmarks/recency_probe.py --lake DIR [--versions 1 2 3] [--windows 1 7 30 90]
        [--weights 0 0.5 1 2] [--count-own]

Reads a lake that `lakerec run` (or benchmarks/quality.py --lake) left: silver.events, silver.sequences, the item
index and the registered model versions in its MLflow store. Each user's scores become
logit + weight x log(1 + n), n = events on the item by other users in the `window` days up to the user's "now"
(the time of their newest input event): a product of the model's softmax and a recent-popularity prior. The
(window, weight) pair is chosen per version on the validation split; test is read at that pair only. Prints per
version the grid on validation, the chosen pair's test NDCG@10 against the plain model's, then over versions the
mean ± sd and a paired test over users.

--count-own also counts the user's own events in the window, which the evaluation must not: a target at the same
second as the newest input (frequent in MovieLens) is then counted, and the prior finds it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from movielens import REPO  # noqa: F401  (benchmarks/: puts lib/ on the path)


def read(lake: Path, table: str, columns: list[str]) -> pd.DataFrame:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    layer, name = table.split(".")
    uris = DeltaTable(str(lake / layer / name)).file_uris()
    return ds.dataset(uris, format="parquet").to_table(columns=columns).to_pandas()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--versions", nargs="+", default=["1"])
    parser.add_argument("--windows", nargs="+", type=float, default=[1, 7, 30, 90], help="days")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.5, 1, 2])
    parser.add_argument("--count-own", action="store_true", help="count the user's own events too (the leak)")
    args = parser.parse_args()

    import mlflow
    import torch

    from lakerec import tables as T
    from lakerec.evaluate.metrics import model_scores, rank_users, ranking_metrics, split_data, user_aware
    from lakerec.evaluate.stats import paired_test, per_user_ndcg
    from lakerec.models.registry import load_model
    from lakerec.score.batch import recent_prior

    lake = args.lake.resolve()
    mlflow.set_tracking_uri(f"sqlite:///{lake}/mlflow.db")
    sequences = read(lake, T.SILVER_SEQUENCES, None)
    index = read(lake, T.SILVER_ITEM_INDEX, [T.ITEM_ID, T.ITEM_IDX])
    events = read(lake, T.SILVER_EVENTS, [T.USER_ID, T.ITEM_ID, T.TS, T.SOURCE_FILE, T.SOURCE_LINE])
    events[T.ITEM_IDX] = events[T.ITEM_ID].map(dict(zip(index[T.ITEM_ID], index[T.ITEM_IDX]))).astype(np.int64)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    events["day"] = (pd.to_datetime(events[T.TS], utc=True) - epoch).dt.total_seconds() / 86400.0
    events = events.sort_values([T.USER_ID, T.TS, T.SOURCE_FILE, T.SOURCE_LINE])  # silver.sequences' order
    by_time = events.sort_values("day", kind="stable")
    days, items = by_time["day"].to_numpy(), by_time[T.ITEM_IDX].to_numpy()
    own = {u: (g["day"].to_numpy(), g[T.ITEM_IDX].to_numpy()) for u, g in events.groupby(T.USER_ID)}

    def prior_scorer(base, now: dict, window: float, weight: float, n: int):
        def score(inputs, users):
            scores = base(inputs)
            counts = np.zeros((len(users), n + 1))
            for row, user in enumerate(users):
                t = now[user]
                lo, hi = np.searchsorted(days, [t - window, t], side="right")
                counts[row] = np.bincount(items[lo:hi], minlength=n + 1)
                if not args.count_own:
                    mine_days, mine_items = own[user]
                    mine = (mine_days > t - window) & (mine_days <= t)
                    counts[row] -= np.bincount(mine_items[mine], minlength=n + 1)
            prior = torch.as_tensor(recent_prior(counts, weight))  # the score stage's formula
            return lambda asked: scores(asked).float() + prior[:, asked]
        return user_aware(score)

    plain_test, prior_test, pooled_plain, pooled_prior = [], [], [], []
    for version in args.versions:
        model, _ = load_model(("lakerec-model", version))
        n, base = model.config.n_items, model_scores(model)
        results = {}
        for split, cut in (("valid", 3), ("test", 2)):  # the newest input: history[-3] (valid), history[-2] (test)
            data = split_data(sequences, split)
            now = {u: own[u][0][-cut] for u in data.users}
            grid = [(0.0, 0.0)] + [(w, x) for w in args.windows for x in args.weights]
            if split == "test":
                grid = [(0.0, 0.0), results["chosen"]]
            for window, weight in grid:
                ranks = rank_users(prior_scorer(base, now, window, weight, n), data.inputs, data.targets,
                                   data.excluded, n, users=data.users)
                results[(split, window, weight)] = ranks
                if split == "valid":
                    print(f"v{version} valid window={window:g}d weight={weight:g}: "
                          f"ndcg@10 {ranking_metrics(ranks, [10])['ndcg_10']:.4f}")
            if split == "valid":
                results["chosen"] = max(grid, key=lambda g: ranking_metrics(results[("valid", *g)], [10])["ndcg_10"])
        chosen = results["chosen"]
        plain, prior = results[("test", 0.0, 0.0)], results[("test", *chosen)]
        a, b = ranking_metrics(prior, [10])["ndcg_10"], ranking_metrics(plain, [10])["ndcg_10"]
        print(f"v{version} chosen on valid: window={chosen[0]:g}d weight={chosen[1]:g}; "
              f"test ndcg@10 {a:.4f} with the prior, {b:.4f} without ({a / b:.3f}x)")
        prior_test.append(a)
        plain_test.append(b)
        pooled_prior.append(per_user_ndcg(prior.numpy()))
        pooled_plain.append(per_user_ndcg(plain.numpy()))
    test = paired_test(np.mean(pooled_prior, axis=0), np.mean(pooled_plain, axis=0))
    sd = (lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0)  # noqa: E731
    print(f"over {len(args.versions)} version(s): with the prior {np.mean(prior_test):.4f} ± {sd(prior_test):.4f}, "
          f"without {np.mean(plain_test):.4f} ± {sd(plain_test):.4f}; paired test: {test.describe('prior', 'plain')}")
    print(f"recency_prior_ndcg10={np.mean(prior_test):.4f} plain_ndcg10={np.mean(plain_test):.4f} "
          f"ratio={np.mean(prior_test) / np.mean(plain_test):.3f} count_own={int(args.count_own)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
