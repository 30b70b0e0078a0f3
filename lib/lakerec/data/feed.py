"""The training feed: each Horovod rank streams its row groups of a Delta snapshot's files through Petastorm.

Training rows come from silver.train_windows, validation users from silver.sequences (the same lineage). Row
group i of the snapshot (files sorted by path, each file's groups in order: Petastorm's sharding rule) belongs to
rank i % size, and the Parquet footers say how many rows each rank has before any data is read. A rank never
holds its whole shard: every epoch it reads its row groups through Petastorm in an order seeded by (seed, epoch,
rank) and draws its batches from a shuffle buffer of train.shuffle_buffer rows, so it holds at most the buffer and
the row group in hand. Every rank takes the largest shard's number of steps: a smaller shard's stream wraps
around into another (reshuffled) pass, so no rank waits at an allreduce for a peer that has run out of data.

Determinism: the batches are a function of (seed, epoch, rank), the sorted file paths and the rows of each row
group (sorted by content when read). The same rows written in another file order, or in another order within their
row groups, give the same batches; another split of the rows into files or row groups gives other, equally
shuffled, batches (the whole-shard feed before this one sorted the shard by content; a stream cannot).
"""
from __future__ import annotations

import itertools
import math
import warnings
from contextlib import closing
from dataclasses import dataclass
from typing import Iterable, Iterator
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
Rows = tuple[np.ndarray, np.ndarray]  # (inputs, targets): [rows, max_len] left-padded item_idx, next item per position


class FeedError(RuntimeError):
    """The table cannot feed these ranks (too few row groups, no training rows, a buffer larger than a shard)."""


def petastorm_urls(files: list[str]) -> list[str]:
    """Petastorm wants URLs with a scheme: bare local paths become file:// URLs; sorted for a stable shard order."""
    return sorted(f if urlparse(f).scheme else "file://" + f for f in files)


@dataclass(frozen=True)
class FeedPlan:
    """Every rank's share of the training rows, from the Parquet footers alone."""

    rows: list[int]  # per rank
    row_groups: list[int]  # per rank
    largest_row_group: int  # rows

    def steps(self, batch_size: int) -> int:
        """Steps per epoch on every rank: the largest shard's batches (the others wrap around)."""
        return steps_for(max(self.rows), batch_size)

    def buffer(self, rank: int, shuffle_buffer: int) -> int:
        """This rank's shuffle buffer in rows: train.shuffle_buffer, or its whole shard where that is 0."""
        return shuffle_buffer or self.rows[rank]


def plan_feed(urls: list[str], size: int, shuffle_buffer: int = 0) -> FeedPlan:
    """The ranks' row groups and rows; a FeedError, before any rank starts, where a rank would get no row group
    or train.shuffle_buffer exceeds the smallest shard (a buffer that never fills would hold the shard)."""
    groups = [rows for url in sorted(urls) for rows in _row_group_rows(url)]
    shares = [groups[rank::size] for rank in range(size)]
    if not all(shares):
        raise FeedError(f"{len(groups)} row group(s) cannot feed {size} ranks (each reads whole row groups): "
                        "write the training table with more row groups or train on fewer ranks")
    plan = FeedPlan([sum(s) for s in shares], [len(s) for s in shares], max(groups))
    if shuffle_buffer > min(plan.rows):
        raise FeedError(f"train.shuffle_buffer={shuffle_buffer} rows is larger than the smallest rank's shard "
                        f"({min(plan.rows)} of {sum(plan.rows)} rows on {size} ranks): set it to at most "
                        f"{min(plan.rows)}, or 0 for the whole shard")
    return plan


def _row_group_rows(url: str) -> list[int]:
    filesystem, path = pafs.FileSystem.from_uri(url)
    with filesystem.open_input_file(path) as f:
        metadata = pq.ParquetFile(f).metadata
        return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


class StreamingFeed:
    """One rank's training windows as a stream of its row groups. `peak_rows`: the most rows it held at once
    (shuffle buffer + the row group in hand), the bound the tests check."""

    def __init__(self, urls: list[str], rank: int, size: int, max_len: int, buffer: int):
        self.urls, self.rank, self.size, self.max_len, self.buffer = urls, rank, size, max_len, buffer
        self.peak_rows = 0

    def row_groups(self, seed: int | None = None) -> Iterator[Rows]:
        """One pass over this rank's row groups (in an order seeded by `seed`; None: the files'), each with its
        rows in content order and only the rows that have a training target."""
        for batch in _batches(self.urls, FEED_FIELDS, self.rank, self.size, seed):
            x, y = _as_matrix(batch.train_input, self.max_len), _as_matrix(batch.train_target, self.max_len)
            keep = (y != 0).any(axis=1)
            yield canonical_order(x[keep], y[keep])

    def item_counts(self, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """(training targets, occurrences in inputs or targets) per item_idx over this rank's rows, read once."""
        targets, seen = np.zeros(n_items + 1, np.int64), np.zeros(n_items + 1, np.int64)
        for x, y in self.row_groups():
            targets += np.bincount(y.ravel(), minlength=n_items + 1)[: n_items + 1]
            seen += np.bincount(np.concatenate([x.ravel(), y.ravel()]), minlength=n_items + 1)[: n_items + 1]
        return targets, seen

    def epoch_batches(self, steps: int, batch_size: int, seed: int, epoch: int,
                      length_buckets: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's `steps` batches: passes over the row groups, each in its own seeded order, through the
        shuffle buffer; the RNG of the buffer and the batch order is seeded by (seed, epoch, rank)."""
        passes = (self.row_groups(_pass_seed(seed, epoch, self.rank, p)) for p in itertools.count())
        rng = np.random.default_rng([seed, epoch, self.rank])
        yield from stream_batches(passes, steps, batch_size, self.buffer, rng, length_buckets, self)

    def held(self, rows: int) -> None:
        self.peak_rows = max(self.peak_rows, rows)


def _pass_seed(seed: int, epoch: int, rank: int, pass_: int) -> int:
    """Petastorm's seed (Python's and numpy's RNGs: below 2**32) for one pass's row-group order."""
    return int(np.random.SeedSequence([seed, epoch, rank, pass_]).generate_state(1)[0])


def _batches(urls: list[str], fields: list[str], rank: int, size: int, seed: int | None = None) -> Iterator:
    """Petastorm batches, one per row group of this rank's shard (row group i % size == rank whatever the seed;
    the seed only orders them). The dummy pool reads a row group when asked: none is read ahead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # petastorm 0.12 on pyarrow 14's legacy API
        with make_batch_reader(urls, schema_fields=fields, cur_shard=rank, shard_count=size, num_epochs=1,
                               reader_pool_type="dummy", shuffle_row_groups=seed is not None, seed=seed) as reader:
            yield from reader


def canonical_order(x: np.ndarray, y: np.ndarray) -> Rows:
    """A row group's rows sorted by content (their bytes), so the seeded draws do not depend on the order Spark
    wrote the rows in (its partitioning, the lake's pseudonym key)."""
    if len(x) < 2:
        return x, y
    keys = np.ascontiguousarray(np.hstack([x, y])).view(np.dtype((np.void, 2 * x.shape[1] * x.itemsize))).ravel()
    order = np.argsort(keys, kind="stable")
    return x[order], y[order]


def stream_batches(passes: Iterable[Iterable[Rows]], steps: int, batch_size: int, buffer: int,
                   rng: np.random.Generator, length_buckets: int = 1,
                   feed: StreamingFeed | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches of exactly batch_size rows drawn through a shuffle buffer of `buffer` rows.

    length_buckets > 1: the shuffled stream is cut into groups of that many batches, each group sorted by window
    length before it is cut into batches, and the group's batches are shuffled. A batch then holds windows of
    similar length, so the model cuts most of the left padding (short histories: most of a sparse data set's
    windows)."""
    group = length_buckets * batch_size
    with closing(shuffled_rows(passes, buffer, rng, group, feed)) as rows:
        groups = regroup(rows, group)
        made = 0
        while made < steps:
            x, y = next(groups)
            if length_buckets > 1:
                order = np.argsort((x != 0).sum(axis=1), kind="stable")
                x, y = x[order], y[order]
            for b in rng.permutation(length_buckets)[: steps - made]:
                part = slice(b * batch_size, (b + 1) * batch_size)
                yield torch.from_numpy(x[part].astype(np.int64)), torch.from_numpy(y[part].astype(np.int64))
                made += 1


def shuffled_rows(passes: Iterable[Iterable[Rows]], buffer: int, rng: np.random.Generator, block: int,
                  feed: StreamingFeed | None = None) -> Iterator[Rows]:
    """The rows of every pass, in blocks of at most `block`, through a bounded shuffle buffer.

    Once the buffer is full each incoming row takes the place of a row drawn at random from it; at the end of a
    pass the buffer drains in random order, so each row of a pass comes out once before the next pass starts.
    A pass without a row (no row with a training target) is a FeedError: the stream would never yield."""
    bx = by = None
    for rows in passes:
        n = read = 0
        for x, y in rows:
            read += len(x)
            if bx is None:
                bx, by = np.empty((buffer, x.shape[1]), x.dtype), np.empty((buffer, y.shape[1]), y.dtype)
            if feed is not None:
                feed.held(n + len(x))
            i = 0
            while i < len(x):
                fill = min(buffer - n, len(x) - i)
                if fill:
                    bx[n:n + fill], by[n:n + fill] = x[i:i + fill], y[i:i + fill]
                    n, i = n + fill, i + fill
                    continue
                slots = rng.choice(n, min(block, n, len(x) - i), replace=False)
                yield bx[slots], by[slots]
                bx[slots], by[slots] = x[i:i + len(slots)], y[i:i + len(slots)]
                i += len(slots)
        if n == 0:
            raise FeedError(f"a pass over this rank's row groups found {read} rows and none has a training target: "
                            "write the training table with more row groups or train on fewer ranks")
        order = rng.permutation(n)
        for start in range(0, n, block):
            yield bx[order[start:start + block]], by[order[start:start + block]]


def regroup(blocks: Iterator[Rows], size: int) -> Iterator[Rows]:
    """The rows of `blocks`, in order, re-cut into arrays of exactly `size` rows."""
    xs, ys, held = [], [], 0
    for x, y in blocks:
        xs.append(x)
        ys.append(y)
        held += len(x)
        while held >= size:
            x_all, y_all = np.concatenate(xs), np.concatenate(ys)
            yield x_all[:size], y_all[:size]
            xs, ys, held = [x_all[size:]], [y_all[size:]], held - size


@dataclass
class ValidShard:
    inputs: np.ndarray  # [users, max_len] int64, left-padded history before the validation item
    targets: np.ndarray  # [users] int64, the validation item
    excluded: list[np.ndarray]  # items not ranked: the serving rule over the history before the validation item

    def __len__(self) -> int:
        return len(self.targets)


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
    matrix = _as_matrix(np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1 if inputs else max_len), max_len,
                        np.int64)
    return ValidShard(matrix, np.asarray(targets, dtype=np.int64), excluded)


def _as_matrix(column: np.ndarray, max_len: int, dtype=np.int32) -> np.ndarray:
    """A column of sequence arrays as a [rows, max_len] matrix (int32 as stored: half the bytes in a buffer)."""
    matrix = np.asarray(column, dtype=dtype)
    if matrix.ndim != 2 or matrix.shape[1] != max_len:
        raise FeedError(f"sequence arrays have shape {matrix.shape}, expected [rows, {max_len}]: "
                        "rebuild the sequences tables with the same sequences.max_len")
    return matrix


def steps_for(rows: int, batch_size: int) -> int:
    """Batches a rank needs to see each of its rows once per epoch."""
    return math.ceil(rows / batch_size)
