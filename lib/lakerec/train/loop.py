"""What one Horovod rank runs: read its shard, train SASRec in lockstep with the other ranks, report back.

The same function runs with one rank or many (horovod.spark.run starts it on every rank). Every rank
builds the model from the same seed, then rank 0's parameters and optimizer state are broadcast, so the
ranks start identical; DistributedOptimizer averages gradients, so they stay identical (the checksum
each rank returns lets the driver verify it).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time

import torch

from lakerec.config import TrainConf
from lakerec.data.feed import epoch_batches, read_shard, steps_for
from lakerec.models.sasrec import SASRec, SASRecConfig

log = logging.getLogger("lakerec.train")


def train_rank(urls: list[str], model_config: dict, conf: TrainConf) -> dict:
    """Train on this rank's shard; returns its report (rank 0's also carries the weights and loss history)."""
    import horovod.torch as hvd  # imported on the rank, where Horovod initialises

    hvd.init()
    try:
        return _train(hvd, urls, SASRecConfig.from_dict(model_config), conf)
    finally:
        hvd.shutdown()


def _train(hvd, urls: list[str], config: SASRecConfig, conf: TrainConf) -> dict:
    rank, size = hvd.rank(), hvd.size()
    device = _device(hvd)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // hvd.local_size()))  # ranks share the machine's cores
    start = time.perf_counter()

    shard = read_shard(urls, rank, size, config.max_len)
    steps = int(hvd.allreduce(torch.tensor(steps_for(len(shard), conf.batch_size)), op=hvd.Max, name="steps"))

    torch.manual_seed(conf.seed)  # same initial weights everywhere (rank 0's are broadcast anyway)
    model = SASRec(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=conf.lr, weight_decay=conf.weight_decay)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    torch.manual_seed(conf.seed + rank)  # dropout differs per rank, repeatably

    history = []
    for epoch in range(conf.epochs):
        model.train()
        total = 0.0
        for inputs, targets in epoch_batches(shard, steps, conf.batch_size, conf.seed, epoch, rank):
            optimizer.zero_grad()
            loss = model.loss(inputs.to(device), targets.to(device))
            loss.backward()
            optimizer.step()
            total += loss.item()
        mean = hvd.allreduce(torch.tensor(total / steps), op=hvd.Average, name=f"loss.{epoch}")
        history.append(float(mean))
        if rank == 0:
            log.info("epoch %d/%d: train loss %.4f", epoch + 1, conf.epochs, history[-1])

    report = {
        "rank": rank, "size": size, "device": str(device), "rows": len(shard), "rows_read": shard.rows_read,
        "steps_per_epoch": steps, "history": history, "checksum": parameter_checksum(model),
        "seconds": time.perf_counter() - start, "state_dict": None,
    }
    if rank == 0:
        report["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return report


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
