"""RecBole 1.2.1 SASRec on MovieLens 100K under the benchmark's protocol (peers/protocol.py); prints one JSON.

    ~/.cache/lakerec/recbole-venv/bin/python benchmarks/peers/recbole_sasrec.py --data DIR/u.data --out X.json

Runs inside RecBole's own venv (benchmarks/peers/setup_recbole.sh). benchmarks/quality.py calls it and
caches the JSON; run by hand only to look at one run.

The atomic file RecBole reads carries the protocol's order (write_atomic says why not the raw timestamps);
RecBole splits leave-one-out itself, and this script checks that its split and its test inputs equal the
protocol's before training.
RecBole's own full-ranking evaluator does NOT exclude the history for sequential models (its
FullSortEvalDataLoader passes no history index when MODEL_TYPE is sequential), so the trainer below masks the
history itself: early stopping watches the masked validation NDCG@10, and the reported metrics are computed
from the full score matrix with protocol.target_ranks. RecBole's own unmasked test numbers are kept beside
them under "recbole_unmasked", for reference only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch >= 2.6 refuses RecBole's checkpoints
sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol as P  # noqa: E402  (beside this file, importable in either venv)

DATASET = "ml100k"
PARAMS = {  # the SASRec: d=64, inner 256, 2 layers, 2 heads, dropout .2, max len 50, CE, batch 256, lr 1e-3
    "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
    "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE",
    "train_neg_sample_args": None, "train_batch_size": 256, "learning_rate": 1e-3,
    "epochs": 30, "stopping_step": 5, "valid_metric": "NDCG@10", "eval_step": 1,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["Hit", "NDCG", "MRR"], "topk": [5, 10, 20], "eval_batch_size": 1024, "seed": 2020,
    "reproducibility": True,
}


def write_atomic(rows: list[tuple[str, str, int]], folder: Path) -> Path:
    """RecBole's atomic .inter file; its timestamp column holds each row's position in protocol order.

    RecBole loads `float` fields as float32, which has a 64 s resolution at ML-100K's timestamps (~8.8e8):
    real timestamps would create ties that the real times do not have (seen: 258 users with a different
    valid/test item). Positions 0..n-1 are exact in float32 and keep the (timestamp, file line) order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(rows)), key=lambda n: (rows[n][2], n))
    position = {n: p for p, n in enumerate(order)}
    path = folder / f"{DATASET}.inter"
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{position[n]}\n" for n, (u, i, _) in enumerate(rows))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MovieLens 100K u.data")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--workdir", default=str(Path.home() / ".cache/lakerec/peers/recbole-work"),
                        help="atomic files, RecBole logs and checkpoints (never inside the repository)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                        help="override a RecBole parameter (e.g. epochs=1 for a smoke run)")
    args = parser.parse_args()
    params = {**PARAMS, **{k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)}}
    result = run(Path(args.data), Path(args.workdir), params)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "split"}, indent=1))
    return 0


def run(data: Path, workdir: Path, params: dict) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    rows = P.read_udata(data)
    histories = P.user_histories(rows)
    expected = P.leave_one_out(histories)
    write_atomic(rows, workdir / DATASET)
    os.chdir(workdir)  # RecBole writes ./log and ./log_tensorboard relative to the working directory
    config = Config(model="SASRec", dataset=DATASET, config_dict={
        **params, "data_path": str(workdir), "checkpoint_dir": str(workdir / "saved"), "device": "cpu",
        "use_gpu": False, "show_progress": False, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    })
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data.dataset).to(config["device"])

    item_token = dataset.field2id_token["item_id"]
    user_token = dataset.field2id_token["user_id"]
    n_items = dataset.item_num - 1  # RecBole's index 0 is padding

    def split_of(loader) -> dict:
        feat = loader.dataset.inter_feat
        return {user_token[u]: item_token[i] for u, i in zip(feat["user_id"].tolist(), feat["item_id"].tolist())}

    recbole_split = {u: (v, split_of(test_data)[u]) for u, v in split_of(valid_data).items()}
    mismatch = P.split_mismatches(expected, recbole_split)
    bad_inputs = _check_inputs(test_data, histories, user_token, item_token, params["MAX_ITEM_LIST_LENGTH"])
    if mismatch or bad_inputs:
        raise SystemExit(f"RecBole's split differs from the protocol's: {mismatch} users' valid/test items, "
                         f"{bad_inputs} users' test inputs")

    def excluded_of(loader, cut: int) -> dict[int, torch.Tensor]:
        """RecBole user index -> item indices seen before that split's target (history[:-cut])."""
        out = {}
        for u in loader.dataset.inter_feat["user_id"].tolist():
            out[u] = torch.as_tensor(dataset.token2id("item_id", histories[user_token[u]][:-cut]), dtype=torch.long)
        return out

    masks = {"valid": excluded_of(valid_data, 2), "test": excluded_of(test_data, 1)}

    class ProtocolTrainer(Trainer):
        """RecBole's trainer with the history masked in full-sort evaluation (when `mask` is set), epochs timed."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.mask: dict | None = None
            self.epochs_log: list[dict] = []

        def _full_sort_batch_eval(self, batched_data):
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            if self.mask is not None:
                kept = scores[positive_u, positive_i].clone()  # the target itself is never excluded
                for row, u in enumerate(interaction["user_id"].tolist()):
                    scores[row, self.mask[u]] = -float("inf")
                scores[positive_u, positive_i] = kept
            return interaction, scores, positive_u, positive_i

        def _train_epoch(self, *a, **k):
            start = time.perf_counter()
            loss = super()._train_epoch(*a, **k)
            self.epochs_log.append({"epoch": len(self.epochs_log) + 1, "train_s": time.perf_counter() - start,
                                    "train_loss_sum": float(loss)})  # RecBole sums over batches
            return loss

        def _valid_epoch(self, *a, **k):
            start = time.perf_counter()
            score, result = super()._valid_epoch(*a, **k)
            self.epochs_log[-1].update(valid_s=time.perf_counter() - start, valid_ndcg10=float(score))
            # progress that outlives a killed run: each epoch's test metrics (untimed) and the log so far
            self.epochs_log[-1]["test"] = _protocol_metrics(self.model, test_data, masks["test"], n_items, torch)
            (workdir / "progress.json").write_text(json.dumps(self.epochs_log, indent=1))
            return score, result

    trainer = ProtocolTrainer(config, model)
    trainer.mask = masks["valid"]
    fit_start = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds = time.perf_counter() - fit_start
    epochs = trainer.epochs_log
    best = max(range(len(epochs)), key=lambda e: (epochs[e]["valid_ndcg10"], -e))  # first best, as RecBole's

    trainer.mask = None  # RecBole's own evaluator as it ships (no history masking) on the best checkpoint
    unmasked = {k: float(v) for k, v in trainer.evaluate(test_data, load_best_model=True).items()}
    result = {split: _protocol_metrics(trainer.model, loader, masks[split], n_items, torch)
              for split, loader in (("valid", valid_data), ("test", test_data))}
    return {
        "model": "RecBole 1.2.1 SASRec", "params": params, "users": len(expected), "items": n_items,
        "test": result["test"], "valid": result["valid"], "recbole_unmasked": unmasked,
        "best_epoch": best + 1, "epochs_run": len(epochs),
        "seconds_to_best": sum(e["train_s"] + e["valid_s"] for e in epochs[: best + 1]),
        "fit_seconds": fit_seconds, "epochs": epochs, "torch_threads": torch.get_num_threads(),
        "load_avg_end": os.getloadavg(), "split": {u: list(v) for u, v in recbole_split.items()},
    }


def _check_inputs(loader, histories, user_token, item_token, max_len: int) -> int:
    """Users whose RecBole test input is not the last max_len items before their test item (protocol order)."""
    feat = loader.dataset.inter_feat
    bad = 0
    for u, seq, n in zip(feat["user_id"].tolist(), feat["item_id_list"].tolist(), feat["item_length"].tolist()):
        want = histories[user_token[u]][:-1][-max_len:]
        bad += [item_token[i] for i in seq[:n]] != want
    return bad


def _protocol_metrics(model, loader, excluded: dict, n_items: int, torch) -> dict:
    """Metrics from RecBole's full score matrix under the protocol (history masked, rank = 1 + higher + ties)."""
    model.eval()
    ranks, tops = [], []
    with torch.no_grad():
        for interaction, _, _, targets in loader:
            scores = model.full_sort_predict(interaction).view(len(targets), -1)[:, 1:]  # drop RecBole's padding
            users = interaction["user_id"].tolist()
            mask = torch.zeros_like(scores, dtype=torch.bool)
            for row, u in enumerate(users):
                mask[row, excluded[u] - 1] = True
            ranks.append(P.target_ranks(scores, targets - 1, mask))
            tops.append(scores.masked_fill(mask, float("-inf")).topk(10, dim=1).indices)
    ranks = torch.cat(ranks)
    return {**P.ranking_metrics(ranks), "coverage@10": P.coverage(torch.cat(tops).tolist(), n_items),
            "users": len(ranks)}


if __name__ == "__main__":
    sys.exit(main())
