"""What one Horovod rank runs: read its shards, train in lockstep with the other ranks, validate, checkpoint.

The same function runs with one rank or many (horovod.spark.run starts it on every rank). Every rank builds
the model from the same seed and rank 0's parameters are broadcast, so the ranks start identical;
DistributedOptimizer averages gradients, so they stay identical (the checksum each rank returns lets the driver
verify it). Each epoch: AdamW steps under a warm-up + decay schedule (on the main loss, plus train.contrastive's
term when its weight is > 0), then validation NDCG@10 / HR@10 where every rank ranks its share of the validation
users and the sums are allreduced, so every rank takes the same early-stopping decision. Rank 0 writes a
checkpoint after every epoch (model, optimizer, scheduler, history, best epoch and its weights). The torch RNG
(dropout, BERT4Rec masks, sampled negatives, contrastive partners) is reseeded from (seed, epoch, rank) at the
start of every epoch and the batch order is a function of the same triple (a fresh stream of the rank's row
groups each epoch: lakerec.data.feed), so a run resumed from the checkpoint of epoch k replays epochs k+1.. exactly
as the uninterrupted run would.
An optional `on_epoch(epoch, valid_ndcg_10) -> stop?` runs on rank 0 after each validation (a tuning trial's
pruner, lakerec.train.tune); its answer is broadcast, so every rank stops at the same epoch.
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from lakerec.config import ContrastiveConf, TrainConf
from lakerec.data.feed import FeedPlan, StreamingFeed, ValidShard, read_valid_shard
from lakerec.evaluate.metrics import model_scores, rank_users, ranking_metrics
from lakerec.logs import bar
from lakerec.models import build_model
from lakerec.models.base import PAD, ModelConfig, SequenceEncoder
from lakerec.train.losses import contrastive_loss, make_loss

CHECKPOINT = "last.pt"
VALID_K = 10


class RankFailure(RuntimeError):
    """Raised on purpose in the rank named by drill.fail_rank (the failing-rank drill: training must fail fast)."""


def train_rank(train_urls: list[str], valid_urls: list[str], plan: FeedPlan, model_config: dict, conf: TrainConf,
               checkpoint_dir: str, text_path: str | None = None, progress: bool = False,
               exclude_types: list[str] | None = None, on_epoch: Callable[[int, float], bool] | None = None,
               init_state: dict | None = None, fail_rank: int | None = None) -> dict:
    """Train on this rank's shard; returns its report (rank 0's also carries the best weights).

    plan: the ranks' shares of train_urls, read from the Parquet footers once, on the driver (lakerec.data.feed).

    text_path: an .npy of [n_items + 1, text_dim] item text embeddings for a text-aware model (None: ID-only), a
    file rather than an argument so a large catalog's matrix is not pickled to every rank. `progress`: rank 0
    draws a bar over the epochs on stderr (the driver decides: a rank's stderr is never a terminal).
    exclude_types: score.exclude_event_types, so validation ranks under the serving rule as evaluation does.
    on_epoch: called on rank 0 with (epoch, validation NDCG@10); True stops training on every rank.
    init_state: a warm start's initial weights (lakerec.train.warm.grown_state); None: seeded random ones.
    fail_rank: drill.fail_rank, the rank that raises RankFailure right after it starts."""
    import horovod.torch as hvd  # imported on the rank, where Horovod initialises

    hvd.init()
    try:
        if fail_rank == hvd.rank():
            raise RankFailure(f"rank {hvd.rank()} fails on purpose (drill.fail_rank)")
        text = None if text_path is None else np.load(text_path)
        return _train(hvd, train_urls, valid_urls, plan, ModelConfig.from_dict(model_config), conf,
                      Path(checkpoint_dir), text, progress, exclude_types, on_epoch, init_state)
    finally:
        hvd.shutdown()


def _train(hvd, train_urls: list[str], valid_urls: list[str], plan: FeedPlan, config: ModelConfig, conf: TrainConf,
           checkpoint_dir: Path, text: np.ndarray | None = None, progress: bool = False,
           exclude_types: list[str] | None = None, on_epoch: Callable[[int, float], bool] | None = None,
           init_state: dict | None = None) -> dict:
    """One rank's run as named steps. Every collective (allreduce, broadcast) runs in the same order on every
    rank, named, so the ranks stay in lockstep."""
    rank, size = hvd.rank(), hvd.size()
    device = _device(hvd)
    torch.set_num_threads(conf.threads or max(1, (os.cpu_count() or 1) // hvd.local_size()))
    start = time.perf_counter()

    feed = StreamingFeed(train_urls, rank, size, config.max_len, plan.buffer(rank, conf.shuffle_buffer))
    valid = read_valid_shard(valid_urls, rank, size, config.max_len, exclude_types)
    steps = plan.steps(conf.batch_size)  # the driver's plan, the same on every rank: no rank waits at an allreduce
    targets, seen = feed.item_counts(config.n_items) if conf.loss == "sampled" or config.text_dim else (None, None)
    # the sampled loss draws negatives by training popularity over every rank's rows
    popularity = (hvd.allreduce(torch.from_numpy(targets), op=hvd.Sum, name="item_counts")
                  if conf.loss == "sampled" else None)
    loss_fn = make_loss(conf.loss, conf.negatives, popularity)
    model = _initial_model(hvd, config, conf.seed, seen, text, init_state).to(device)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    init_checksum = parameter_checksum(model)
    optimizer = hvd.DistributedOptimizer(torch.optim.AdamW(model.parameters(), lr=conf.lr,
                                                           weight_decay=conf.weight_decay),
                                         named_parameters=model.named_parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(conf, steps))
    state = _resume(hvd, checkpoint_dir, model, optimizer, scheduler) if conf.resume else None
    resumed_from = state["epoch"] if state else 0
    state = state or {"epoch": 0, "history": [], "best": None, "best_state": None, "bad_epochs": 0, "seconds": 0.0}
    stopped = False

    epochs = bar(range(state["epoch"], conf.epochs), progress and rank == 0, desc="train", unit="epoch",
                 initial=state["epoch"], total=conf.epochs)
    for epoch in epochs:
        if state["bad_epochs"] >= conf.patience or stopped:
            break
        epoch_start = time.perf_counter()
        batches = feed.epoch_batches(steps, conf.batch_size, conf.seed, epoch, conf.length_buckets)
        train_loss = _train_epoch(hvd, model, batches, steps, conf, epoch, loss_fn, optimizer, scheduler, device)
        ndcg, hr = validate(hvd, model, valid, config.n_items, name=f"valid.{epoch}")
        _record_epoch(state, model, epoch, train_loss, ndcg, hr, time.perf_counter() - epoch_start, rank == 0)
        if on_epoch is not None:  # rank 0 asks, every rank obeys
            stopped = bool(hvd.broadcast_object(on_epoch(epoch + 1, ndcg) if rank == 0 else None, root_rank=0,
                                                name=f"on_epoch.{epoch}"))
        if rank == 0:
            _save_checkpoint(checkpoint_dir, model, optimizer, scheduler, state)
            _log_epoch(epochs, conf, state["history"][-1])
    epochs.close()

    return {
        "rank": rank, "size": size, "device": str(device), "rows": plan.rows[rank], "row_groups": plan.row_groups[rank],
        "shuffle_buffer": feed.buffer, "feed_peak_rows": feed.peak_rows,
        "valid_users": len(valid), "steps_per_epoch": steps, "history": state["history"], "best": state["best"],
        "resumed_from": resumed_from, "stopped": stopped, "checksum": parameter_checksum(model),
        "init_checksum": init_checksum, "seconds": time.perf_counter() - start,
        "state_dict": state["best_state"] if rank == 0 else None,
    }


def _initial_model(hvd, config: ModelConfig, seed: int, seen: np.ndarray | None, text: np.ndarray | None,
                   init_state: dict | None) -> SequenceEncoder:
    """The same initial weights on every rank (seeded; rank 0's are broadcast anyway), or the warm start's. A
    text-aware model gets the item text; items seen in any rank's training windows (`seen`: this rank's counts)
    keep their ID embedding, the rest are text only."""
    torch.manual_seed(seed)
    model = build_model(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    if config.text_dim:
        seen = hvd.allreduce(torch.from_numpy(seen), op=hvd.Sum, name="items_seen")
        if init_state is not None:  # warm: the items the parent knew by ID stay known
            seen = seen + init_state["id_known"][: config.n_items + 1].to(seen.dtype)
        if text is None:
            raise ValueError("a text-aware model needs the item text embeddings")
        model.set_item_text(torch.as_tensor(text, dtype=torch.float32), seen > 0)
    return model


def _resume(hvd, checkpoint_dir: Path, model, optimizer, scheduler) -> dict | None:
    """Rank 0 reads the checkpoint, every rank loads the same one; its training state, or None without one."""
    saved = hvd.broadcast_object(_load_checkpoint(checkpoint_dir) if hvd.rank() == 0 else None, root_rank=0,
                                 name="checkpoint")  # the default name is the object's type: None != dict
    if saved is None:
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return saved["state"]


def _train_epoch(hvd, model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int, conf: TrainConf,
                 epoch: int, loss_fn, optimizer, scheduler, device: torch.device) -> float:
    """One epoch of optimizer steps over `batches` (`steps` of them); the mean training loss over every rank. The
    RNG and the batch order are functions of (seed, epoch, rank), so a resumed run replays this epoch exactly."""
    rank = hvd.rank()
    torch.manual_seed(_epoch_seed(conf.seed, epoch, rank))
    model.train()
    total = 0.0
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        if conf.loss_positions == "last":
            targets = newest_target_only(targets)
        if conf.contrastive.weight == 0:
            hidden, y = model.training_pairs(inputs, targets)
            loss = loss_fn(hidden, model.item_vectors(), y, model.excluded_from_training())
        else:
            hidden, y, users = model.training_pairs_and_users(inputs, targets)
            loss = loss_fn(hidden, model.item_vectors(), y, model.excluded_from_training()) \
                + conf.contrastive.weight * contrastive_term(model, inputs, targets, users, conf.contrastive)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
    return float(hvd.allreduce(torch.tensor(total / steps), op=hvd.Average, name=f"loss.{epoch}"))


def newest_target_only(targets: torch.Tensor) -> torch.Tensor:
    """train.loss_positions=last: [B, L] targets with every position but the last made padding, so a causal model's
    loss reads the position inference reads. With sequences.prefixes each prefix is then one sample: CoSeRec's,
    ICLRec's and ICSRec's objective, which weighs every target once rather than once per window holding it."""
    newest = torch.zeros_like(targets)
    newest[:, -1] = targets[:, -1]
    return newest


def contrastive_term(model: SequenceEncoder, inputs: torch.Tensor, targets: torch.Tensor, users: torch.Tensor,
                     conf: ContrastiveConf) -> torch.Tensor:
    """train.contrastive's InfoNCE over the batch's windows with a history and a next item: `users` (the first
    view, from the main loss's pass) against a second pass of the same windows (other dropout noise). Each rank
    contrasts its own batch; the gradients are allreduced with the main loss's."""
    keep = (inputs[:, -1] != PAD) & (targets[:, -1] != PAD)
    if int(keep.sum()) < 2:
        return users.sum() * 0.0
    second = model.user_vectors(inputs[keep])
    return contrastive_loss(users[keep], second, targets[keep, -1], conf.temperature, conf.similarity,
                            conf.positives)


def _record_epoch(state: dict, model, epoch: int, train_loss: float, ndcg: float, hr: float, seconds: float,
                  keep_best: bool) -> None:
    """The epoch into the history; a better validation NDCG@10 becomes the best (its weights kept where
    keep_best: rank 0), otherwise one more epoch without improvement (early stopping's count)."""
    state["seconds"] += seconds
    state["epoch"] = epoch + 1
    state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "valid_ndcg_10": ndcg,
                             "valid_hr_10": hr, "seconds": state["seconds"]})
    if state["best"] is None or ndcg > state["best"]["valid_ndcg_10"]:
        state["best"], state["bad_epochs"] = dict(state["history"][-1]), 0
        if keep_best:
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        state["bad_epochs"] += 1


def _log_epoch(epochs, conf: TrainConf, row: dict) -> None:
    """Rank 0's epoch: on the bar's postfix where a bar is drawn (a terminal), else a line (a file's log)."""
    if not epochs.disable:
        epochs.set_postfix(loss=f"{row['train_loss']:.4f}", ndcg10=f"{row['valid_ndcg_10']:.4f}", refresh=False)
        return
    print(f"[train] epoch {row['epoch']}/{conf.epochs}: loss {row['train_loss']:.4f}, valid ndcg@10 "
          f"{row['valid_ndcg_10']:.4f} hr@10 {row['valid_hr_10']:.4f}, {row['seconds']:.0f}s; checkpoint "
          f"{row['epoch']} saved", flush=True)  # a rank's stdout is a pipe: the line reaches the log now


def validate(hvd, model: SequenceEncoder, valid: ValidShard, n_items: int, name: str) -> tuple[float, float]:
    """NDCG@10 and HR@10 over every rank's validation users: each ranks its own, the sums are allreduced."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    if len(valid):
        ranks = rank_users(model_scores(model), valid.inputs, valid.targets, valid.excluded, n_items)
        m = ranking_metrics(ranks, [VALID_K])
        sums = torch.tensor([m[f"ndcg_{VALID_K}"] * len(valid), m[f"hr_{VALID_K}"] * len(valid), len(valid)],
                            dtype=torch.float64)
    ndcg, hr, users = hvd.allreduce(sums, op=hvd.Sum, name=name).tolist()
    if users == 0:
        raise ValueError("no validation user on any rank: silver.sequences has no user with a validation item")
    return ndcg / users, hr / users


def lr_schedule(conf: TrainConf, steps_per_epoch: int):
    """Multiplier of train.lr per optimizer step: linear warm-up, then cosine/linear decay to 0 or constant."""
    total = max(1, steps_per_epoch * conf.epochs)

    def factor(step: int) -> float:
        if step < conf.warmup_steps:
            return (step + 1) / conf.warmup_steps
        progress = min(1.0, (step - conf.warmup_steps) / max(1, total - conf.warmup_steps))
        if conf.decay == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if conf.decay == "linear":
            return 1 - progress
        return 1.0

    return factor


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict) -> None:
    """Write atomically (temp file, then rename): a kill mid-write leaves the previous checkpoint intact."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": copy.deepcopy(state)}, tmp)
    os.replace(tmp, folder / CHECKPOINT)


def _load_checkpoint(folder: Path) -> dict | None:
    path = folder / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def _device(hvd) -> torch.device:
    """CUDA (one GPU per local rank, NCCL when Horovod was built with it) when present, else CPU with Gloo."""
    if torch.cuda.is_available():
        torch.cuda.set_device(hvd.local_rank())
        return torch.device("cuda", hvd.local_rank())
    return torch.device("cpu")


def parameter_checksum(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in name order: equal only when the weights are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
