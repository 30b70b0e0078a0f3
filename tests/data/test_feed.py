"""The Petastorm feed without Horovod: the plan from the footers, the bounded shuffle buffer, equal steps on every
rank with wrap-around, determinism per seed."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lakerec import tables as T
from lakerec.data.feed import (FeedError, StreamingFeed, petastorm_urls, plan_feed, read_valid_shard, steps_for,
                               stream_batches)


def write_file(path, inputs, targets, row_group_size=None):
    table = pa.table({T.USER_ID: [f"u{i}" for i in range(len(inputs))],
                      T.TRAIN_INPUT: pa.array(inputs, pa.list_(pa.int32())),
                      T.TRAIN_TARGET: pa.array(targets, pa.list_(pa.int32()))})
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)
@pytest.fixture
def two_files(tmp_path):
    a = write_file(tmp_path / "a.parquet", [[0, 1, 2], [0, 0, 0], [3, 4, 5]], [[0, 2, 3], [0, 0, 0], [4, 5, 6]])
    b = write_file(tmp_path / "b.parquet", [[0, 0, 0]], [[0, 0, 0]])  # only a user without a training target
    return petastorm_urls([b, a])


def test_urls_get_a_scheme_and_a_stable_order(two_files):
    assert all(u.startswith("file:///") for u in two_files) and two_files == sorted(two_files)


def feed(urls, rank, size, max_len=3, shuffle_buffer=0):
    return StreamingFeed(urls, rank, size, max_len, plan_feed(urls, size, shuffle_buffer).buffer(rank, shuffle_buffer))


def ids(batches, column=1):
    """The column that identifies a row in these tests' windows, over all batches, in order."""
    return [int(v) for x, _ in batches for v in x[:, column]]


def windows(first, n):
    """n windows whose input holds a distinct id at position 1 (first, first + 1, ...)."""
    rows = [[0, first + i, first + i + 1] for i in range(n)]
    return rows, [r[1:] + [r[2] + 1] for r in rows]


def write_shards(folder, sizes, row_group_size):
    """One file per size, ids numbered across the files from 1."""
    urls, start = [], 1
    for f, n in enumerate(sizes):
        urls.append(write_file(folder / f"part-{f}.parquet", *windows(start, n), row_group_size=row_group_size))
        start += n
    return petastorm_urls(urls)


def test_a_row_group_keeps_its_rows_with_a_target_in_content_order(two_files):
    rows = list(feed(two_files, 0, 2).row_groups())  # a.parquet: one row group
    assert len(rows) == 1 and rows[0][0].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_rank_without_training_rows_or_with_another_length_is_refused(two_files):
    with pytest.raises(FeedError, match="none has a training target"):
        next(feed(two_files, 1, 2).epoch_batches(1, 1, seed=0, epoch=0))  # b.parquet: no target
    with pytest.raises(FeedError, match="same sequences.max_len"):
        next(feed(two_files, 0, 2, max_len=5).row_groups())


def test_the_plan_reads_the_footers_and_refuses_a_rank_without_a_row_group(tmp_path):
    urls = write_shards(tmp_path, [25, 10], row_group_size=10)  # row groups 10, 10, 5 | 10: i % 2 to rank i
    plan = plan_feed(urls, 2)
    assert plan.rows == [15, 20] and plan.row_groups == [2, 2] and plan.largest_row_group == 10
    assert plan.steps(4) == steps_for(20, 4) and plan.buffer(0, 0) == 15 and plan.buffer(0, 8) == 8
    with pytest.raises(FeedError, match="4 row group\\(s\\) cannot feed 5 ranks"):
        plan_feed(urls, 5)


def test_a_shuffle_buffer_larger_than_a_shard_is_refused_before_training(tmp_path):
    urls = write_shards(tmp_path, [25, 10], row_group_size=10)
    assert plan_feed(urls, 2, shuffle_buffer=15).rows == [15, 20]  # the smallest shard: still fits
    with pytest.raises(FeedError, match="train.shuffle_buffer=16 rows is larger than the smallest rank's shard "
                                        "\\(15 of 35 rows"):
        plan_feed(urls, 2, shuffle_buffer=16)


def test_unequal_shards_take_the_same_full_batches_and_each_rank_sees_its_rows(tmp_path):
    urls = write_shards(tmp_path, [5, 4, 5, 4, 3], row_group_size=None)  # five row groups: 13 rows and 8 rows
    plan = plan_feed(urls, 2, shuffle_buffer=4)
    steps = plan.steps(4)
    feeds = [feed(urls, rank, 2, shuffle_buffer=4) for rank in range(2)]
    per_rank = [list(f.epoch_batches(steps, 4, seed=0, epoch=0)) for f in feeds]
    assert [len(b) for b in per_rank] == [steps, steps] == [4, 4]  # the smaller shard does not stop early
    assert all(x.shape == (4, 3) and x.dtype == torch.int64 for batches in per_rank for x, _ in batches)
    shards = [{int(v) for x, _ in f.row_groups() for v in x[:, 1]} for f in feeds]
    assert shards[0] | shards[1] == set(range(1, 22)) and not shards[0] & shards[1]  # every row on one rank
    for shard, batches in zip(shards, per_rank):
        seen = ids(batches)
        assert set(seen) == shard  # each rank sees each of its rows, and only its own
    assert sorted(ids(per_rank[0])[:13]) == sorted(shards[0])  # the largest shard: each row once, then the wrap


def test_the_buffer_bounds_what_a_rank_holds(tmp_path):
    urls = write_shards(tmp_path, [400, 400], row_group_size=50)  # one rank: 800 rows in 16 row groups of 50
    stream = feed(urls, 0, 1, shuffle_buffer=100)
    batches = list(stream.epoch_batches(steps_for(800, 16), 16, seed=1, epoch=0, length_buckets=2))
    assert sorted(ids(batches)) == list(range(1, 801))  # the whole shard, each row once ...
    assert 100 < stream.peak_rows <= 100 + 50  # ... never more than the buffer and one row group held
    whole = feed(urls, 0, 1)  # shuffle_buffer 0: the whole shard
    list(whole.epoch_batches(1, 16, seed=1, epoch=0))
    assert whole.peak_rows > 750


def test_the_same_seed_gives_the_same_batches_and_another_epoch_other_ones(tmp_path):
    urls = write_shards(tmp_path, [60, 50, 40], row_group_size=20)
    first = [list(feed(urls, r, 2, shuffle_buffer=30).epoch_batches(5, 8, seed=7, epoch=2, length_buckets=2))
             for r in range(2)]
    again = [list(feed(urls, r, 2, shuffle_buffer=30).epoch_batches(5, 8, seed=7, epoch=2, length_buckets=2))
             for r in range(2)]
    other = list(feed(urls, 0, 2, shuffle_buffer=30).epoch_batches(5, 8, seed=7, epoch=3, length_buckets=2))
    assert [[(x.tolist(), y.tolist()) for x, y in b] for b in first] == \
        [[(x.tolist(), y.tolist()) for x, y in b] for b in again]
    assert ids(other) != ids(first[0])


def test_files_rewritten_in_another_order_give_the_same_batches(tmp_path):
    """The same files (names, row groups, rows per row group) written in reverse order, each row group's rows
    shuffled, listed in another order: the same batches on every rank."""
    rng, contents, start = np.random.default_rng(3), [], 1
    for n in [30, 25, 20]:
        contents.append(windows(start, n))
        start += n

    def lake(folder, order, shuffle):
        folder.mkdir()
        urls = []
        for f in order:
            x, y = contents[f]
            rows = [i + g for g in range(0, len(x), 10)
                    for i in (rng.permutation(min(10, len(x) - g)) if shuffle else range(min(10, len(x) - g)))]
            urls.append(write_file(folder / f"part-{f}.parquet", [x[i] for i in rows], [y[i] for i in rows],
                                   row_group_size=10))
        return petastorm_urls(urls)

    def batches(urls):
        return [[(x.tolist(), y.tolist()) for x, y in feed(urls, r, 2, shuffle_buffer=12).epoch_batches(
            6, 5, seed=42, epoch=1, length_buckets=2)] for r in (0, 1)]

    written = batches(lake(tmp_path / "a", [0, 1, 2], shuffle=False))
    assert batches(lake(tmp_path / "b", [2, 0, 1], shuffle=True)) == written


def test_length_buckets_batch_similar_lengths_and_keep_the_rows():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=64)
    inputs = np.zeros((64, 8), dtype=np.int32)
    for row, n in enumerate(lengths):
        inputs[row, 8 - n:] = row + 1  # the row's id, repeated over its real positions
    chunks = [(inputs[i:i + 32], inputs[i:i + 32].copy()) for i in (0, 32)]  # two row groups, larger than the buffer

    def run(length_buckets):
        passes = iter([chunks, chunks])
        return list(stream_batches(passes, 8, 8, 20, np.random.default_rng(3), length_buckets))  # buffer < group

    plain, bucketed, again = run(1), run(4), run(4)

    def rows(batches):
        return sorted(int(x.max()) for b, _ in batches for x in b)

    def spread(batches):  # mean range of real lengths within a batch
        return np.mean([np.ptp((b != 0).sum(1).numpy()) for b, _ in batches])

    assert rows(bucketed) == rows(plain) == list(range(1, 65))  # the same rows, each once
    assert all(b.shape == (8, 8) for b, _ in bucketed)
    assert spread(bucketed) < spread(plain) / 2
    assert all((a == b).all() for (a, _), (b, _) in zip(bucketed, again))


def test_item_counts_read_the_shard_once(tmp_path):
    urls = write_shards(tmp_path, [12, 9], row_group_size=5)
    targets, seen = feed(urls, 0, 1).item_counts(n_items=30)
    x = np.array([r for f in [windows(1, 21)[0]] for r in f])
    y = np.array(windows(1, 21)[1])
    assert targets.tolist() == np.bincount(y.ravel(), minlength=31).tolist()
    assert seen.tolist() == np.bincount(np.concatenate([x.ravel(), y.ravel()]), minlength=31).tolist()


def test_validation_shard_keeps_users_with_a_validation_item(tmp_path):
    table = pa.table({T.USER_ID: ["a", "b", "c"],
                      T.HISTORY: pa.array([[1, 2, 3, 4], [5, 6], [2, 3, 4, 5, 6]], pa.list_(pa.int32())),
                      T.VALID_INPUT: pa.array([[0, 1, 2], [0, 0, 0], [2, 3, 4]], pa.list_(pa.int32())),
                      T.VALID_TARGET: pa.array([3, 0, 5], pa.int32())})
    pq.write_table(table, tmp_path / "seq.parquet")
    valid = read_valid_shard(petastorm_urls([str(tmp_path / "seq.parquet")]), 0, 1, max_len=3)
    assert len(valid) == 2 and valid.targets.tolist() == [3, 5]
    assert valid.inputs.tolist() == [[0, 1, 2], [2, 3, 4]]
    assert [h.tolist() for h in valid.excluded] == [[1, 2], [2, 3, 4]]  # everything before the validation item


def test_validation_shard_excludes_what_scoring_would(tmp_path):
    """The serving rule with a type filter: only the purchased item is excluded, a repeat target is kept so."""
    table = pa.table({T.USER_ID: ["a"], T.HISTORY: pa.array([[1, 2, 1, 4]], pa.list_(pa.int32())),
                      T.HISTORY_TYPES: pa.array([["view", "purchase", "view", "view"]], pa.list_(pa.string())),
                      T.VALID_INPUT: pa.array([[0, 1, 2]], pa.list_(pa.int32())),
                      T.VALID_TARGET: pa.array([1], pa.int32())})
    pq.write_table(table, tmp_path / "seq.parquet")
    urls = petastorm_urls([str(tmp_path / "seq.parquet")])
    assert [h.tolist() for h in read_valid_shard(urls, 0, 1, 3, ["purchase"]).excluded] == [[2]]
    assert [h.tolist() for h in read_valid_shard(urls, 0, 1, 3).excluded] == [[1, 2]]
