"""benchmarks/train_scale.py's generator: a long tail, windows cut like silver.train_windows, bounded row groups."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from lakerec import tables as T


@pytest.fixture
def bench(bench_script):
    return bench_script("train_scale")


def test_sizes_read_like_the_command_line(bench):
    assert [bench.parse_size(s) for s in ("200k", "2M", "20M", "1500")] == [200_000, 2_000_000, 20_000_000, 1500]


def test_histories_have_a_long_tail_and_walk_in_sessions(bench):
    lengths, items = bench.histories(np.random.default_rng(0), 2000, 1000, bench.popularity(1000))
    counts = np.bincount(items, minlength=1001)[1:]
    assert len(items) == lengths.sum() and lengths.min() >= 3 and items.min() >= 1 and items.max() <= 1000
    assert counts.max() > 20 * np.median(counts)  # a head far above the typical item
    steps = (items[1:] - items[:-1]) % 1000
    assert np.isin(steps, [1, 2, 3]).mean() > 0.3  # many next items a short step from the previous one


def test_windows_pair_each_item_with_the_next_and_skip_the_held_out_two(bench):
    lengths = np.array([3, 5, 120])
    items = np.arange(1, lengths.sum() + 1, dtype=np.int32)
    users, x, y = bench.windows(lengths, items)
    assert x.shape[1] == bench.MAX_LEN and users.tolist() == [1, 2, 2, 2]  # 0, 2 and 117 pairs, by 50 from the end
    real = x != 0
    assert (real == (y != 0)).all() and (y[real] == x[real] + 1).all()  # the next item of the same history
    assert real.sum() == sum(n - 3 for n in lengths)  # each training pair once: the last two items held out
    assert (np.diff(real.astype(int), axis=1) >= 0).all()  # left-padded: once real, real to the end


def test_generate_writes_bounded_row_groups_and_a_validation_file(bench, tmp_path):
    info = bench.generate(tmp_path / "w", 30_000, 500, row_group=256)
    files = sorted((tmp_path / "w").glob("*.parquet"))
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows for f in files
              for i in range(pq.ParquetFile(f).metadata.num_row_groups)]
    assert info["interactions"] >= 30_000 and sum(groups) == info["windows"] and max(groups) <= 256
    valid = pq.read_table(tmp_path / "w-valid.parquet").to_pydict()
    assert len(valid[T.VALID_TARGET]) == bench.VALID_USERS
    assert all(h[-2] == t for h, t in zip(valid[T.HISTORY], valid[T.VALID_TARGET]))
