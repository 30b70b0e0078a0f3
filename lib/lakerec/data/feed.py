"""The training feed: each Horovod rank reads its own shard of a silver.sequences snapshot with Petastorm.

A rank holds its shard in memory as two int arrays (8 * max_len bytes per user and array), then serves the
same number of fixed-size batches every epoch on every rank: the rank with fewer rows wraps around its
shard, so no rank waits at an allreduce for a peer that has run out of data.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import torch
from petastorm import make_batch_reader

from lakerec import tables as T

FEED_FIELDS = [T.TRAIN_INPUT, T.TRAIN_TARGET]


class FeedError(RuntimeError):
    """The table cannot feed this rank (too few row groups, no training rows, wrong sequence length)."""


@dataclass
class Shard:
    inputs: np.ndarray  # [rows, max_len] int64, left-padded item_idx
    targets: np.ndarray  # [rows, max_len] int64, next item per position (0 = no target)
    rows_read: int  # rows in the shard before dropping users without a training target

    def __len__(self) -> int:
        return len(self.inputs)


def petastorm_urls(files: list[str]) -> list[str]:
    """Petastorm wants URLs with a scheme: bare local paths become file:// URLs; sorted for a stable shard order."""
    return sorted(f if urlparse(f).scheme else "file://" + f for f in files)


def read_shard(urls: list[str], rank: int, size: int, max_len: int) -> Shard:
    """This rank's row groups of the snapshot, keeping only users with at least one training target."""
    inputs, targets, rows = [], [], 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # petastorm 0.12 on pyarrow 14's legacy API
        with make_batch_reader(urls, schema_fields=FEED_FIELDS, cur_shard=rank, shard_count=size, num_epochs=1,
                               reader_pool_type="dummy", shuffle_row_groups=False) as reader:
            for batch in reader:
                x, y = _as_matrix(batch.train_input, max_len), _as_matrix(batch.train_target, max_len)
                rows += len(x)
                keep = (y != 0).any(axis=1)
                inputs.append(x[keep])
                targets.append(y[keep])
    shard = Shard(np.concatenate(inputs) if inputs else np.zeros((0, max_len), np.int64),
                  np.concatenate(targets) if targets else np.zeros((0, max_len), np.int64), rows)
    if len(shard) == 0:
        raise FeedError(f"rank {rank}/{size} read {rows} rows and none has a training target: "
                        "write silver.sequences with more row groups or train on fewer ranks")
    return shard


def _as_matrix(column: np.ndarray, max_len: int) -> np.ndarray:
    matrix = np.asarray(column, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[1] != max_len:
        raise FeedError(f"sequence arrays have shape {matrix.shape}, expected [rows, {max_len}]: "
                        "rebuild silver.sequences with the same sequences.max_len")
    return matrix


def steps_for(rows: int, batch_size: int) -> int:
    """Batches this rank needs to see each of its rows once per epoch."""
    return math.ceil(rows / batch_size)


def epoch_batches(shard: Shard, steps: int, batch_size: int, seed: int, epoch: int, rank: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches of exactly batch_size rows: a fresh permutation per (seed, epoch, rank), wrapped around.

    Wrapping lets the ranks agree on one step count (the largest shard's); smaller shards repeat a few rows.
    """
    order = np.random.default_rng([seed, epoch, rank]).permutation(len(shard))
    order = np.resize(order, steps * batch_size)  # np.resize repeats the permutation to fill
    for step in range(steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        yield torch.from_numpy(shard.inputs[idx]), torch.from_numpy(shard.targets[idx])
