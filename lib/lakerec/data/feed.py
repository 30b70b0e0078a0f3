"""The training feed: each Horovod rank reads its own shard of a Delta snapshot's files with Petastorm.

Training rows come from silver.train_windows, validation users from silver.sequences (the same lineage). A
rank holds its shard in memory as int arrays (8 * max_len bytes per row and array), then serves the same
number of fixed-size batches every epoch on every rank: the rank with fewer rows wraps around its shard, so no
rank waits at an allreduce for a peer that has run out of data. A shard's rows are put in content order before
the per-epoch permutation, so a fixed seed trains on the same window order whatever the files' physical order;
with several ranks, which rows a rank holds still follows the row groups (layout_for_feed's range partitioning
by user id, so a lake with another pseudonym key splits the users differently).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from petastorm import make_batch_reader

from lakerec import tables as T
from lakerec.data.exclusion import excluded_items

FEED_FIELDS = [T.TRAIN_INPUT, T.TRAIN_TARGET]
VALID_FIELDS = [T.HISTORY, T.HISTORY_TYPES, T.VALID_INPUT, T.VALID_TARGET]


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


@dataclass
class ValidShard:
    inputs: np.ndarray  # [users, max_len] int64, left-padded history before the validation item
    targets: np.ndarray  # [users] int64, the validation item
    excluded: list[np.ndarray]  # items not ranked: the serving rule over the history before the validation item

    def __len__(self) -> int:
        return len(self.targets)


def _batches(urls: list[str], fields: list[str], rank: int, size: int) -> Iterator:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # petastorm 0.12 on pyarrow 14's legacy API
        with make_batch_reader(urls, schema_fields=fields, cur_shard=rank, shard_count=size, num_epochs=1,
                               reader_pool_type="dummy", shuffle_row_groups=False) as reader:
            yield from reader


def read_shard(urls: list[str], rank: int, size: int, max_len: int) -> Shard:
    """This rank's row groups of the training windows, keeping only rows with at least one target."""
    inputs, targets, rows = [], [], 0
    for batch in _batches(urls, FEED_FIELDS, rank, size):
        x, y = _as_matrix(batch.train_input, max_len), _as_matrix(batch.train_target, max_len)
        rows += len(x)
        keep = (y != 0).any(axis=1)
        inputs.append(x[keep])
        targets.append(y[keep])
    shard = canonical_order(Shard(np.concatenate(inputs) if inputs else np.zeros((0, max_len), np.int64),
                                  np.concatenate(targets) if targets else np.zeros((0, max_len), np.int64), rows))
    if len(shard) == 0:
        raise FeedError(f"rank {rank}/{size} read {rows} rows and none has a training target: "
                        "write the training table with more row groups or train on fewer ranks")
    return shard


def canonical_order(shard: Shard) -> Shard:
    """The shard's rows sorted by content (input, then target, lexicographically), so the seeded permutation of
    epoch_batches draws the same windows whatever order the files, row groups and rows were written in (Delta
    file names, Spark's partitioning, the lake's pseudonym key all change that order between ETL runs)."""
    if len(shard) < 2:
        return shard
    keys = np.hstack([shard.inputs, shard.targets])
    order = np.lexsort(keys.T[::-1])  # lexsort's last key is the primary one
    return Shard(shard.inputs[order], shard.targets[order], shard.rows_read)


def read_valid_shard(urls: list[str], rank: int, size: int, max_len: int,
                     exclude_types: list[str] | None = None) -> ValidShard:
    """This rank's share of the validation users of a silver.sequences snapshot (valid_target > 0), with the
    items the serving rule excludes (score.exclude_event_types: None, every type) as evaluation does.

    Read with pyarrow, row group i of the snapshot to rank i % size (Petastorm's own sharding rule), because
    the full histories that validation must exclude have varying lengths, which Petastorm cannot batch. A rank
    may get no user (few row groups): it then adds zeros to the metric sums.
    """
    inputs, targets, excluded = [], [], []
    group = 0
    for url in urls:
        filesystem, path = pafs.FileSystem.from_uri(url)
        with filesystem.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            for i in range(parquet.num_row_groups):
                group += 1
                if (group - 1) % size != rank:
                    continue
                columns = [c for c in VALID_FIELDS if c in parquet.schema_arrow.names]  # older snapshots: no types
                batch = parquet.read_row_group(i, columns=columns).to_pydict()
                types = batch.get(T.HISTORY_TYPES, [None] * len(batch[T.HISTORY]))
                for h, kinds, x, y in zip(batch[T.HISTORY], types, batch[T.VALID_INPUT], batch[T.VALID_TARGET]):
                    if y and y > 0:
                        excluded.append(excluded_items(h[:-2], None if kinds is None else kinds[:-2], exclude_types))
                        inputs.append(x)
                        targets.append(y)
    matrix = _as_matrix(np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1 if inputs else max_len), max_len)
    return ValidShard(matrix, np.asarray(targets, dtype=np.int64), excluded)


def _as_matrix(column: np.ndarray, max_len: int) -> np.ndarray:
    matrix = np.asarray(column, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[1] != max_len:
        raise FeedError(f"sequence arrays have shape {matrix.shape}, expected [rows, {max_len}]: "
                        "rebuild the sequences tables with the same sequences.max_len")
    return matrix


def steps_for(rows: int, batch_size: int) -> int:
    """Batches this rank needs to see each of its rows once per epoch."""
    return math.ceil(rows / batch_size)


def epoch_batches(shard: Shard, steps: int, batch_size: int, seed: int, epoch: int, rank: int,
                  length_buckets: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches of exactly batch_size rows: a fresh permutation per (seed, epoch, rank), wrapped around.

    Wrapping lets the ranks agree on one step count (the largest shard's); smaller shards repeat a few rows.
    length_buckets > 1: the permutation is cut into groups of that many batches, each group sorted by window
    length before it is cut into batches, and the batches are shuffled. A batch then holds windows of similar
    length, so the model cuts most of the left padding (short histories: most of a sparse data set's windows).
    """
    rng = np.random.default_rng([seed, epoch, rank])
    order = np.resize(rng.permutation(len(shard)), steps * batch_size)  # np.resize repeats it to fill
    if length_buckets > 1:
        lengths = (shard.inputs[order] != 0).sum(axis=1)
        group = length_buckets * batch_size
        for start in range(0, len(order), group):
            part = slice(start, start + group)
            order[part] = order[part][np.argsort(lengths[part], kind="stable")]
        order = order.reshape(steps, batch_size)[rng.permutation(steps)].ravel()
    for step in range(steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        yield torch.from_numpy(shard.inputs[idx]), torch.from_numpy(shard.targets[idx])
