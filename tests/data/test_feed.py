"""The Petastorm feed without Horovod: shard reading, filtering, equal batch counts with wrap-around."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakerec import tables as T
from lakerec.data.feed import (FeedError, Shard, epoch_batches, petastorm_urls, read_shard, read_valid_shard,
                               steps_for)


def write_file(path, inputs, targets):
    table = pa.table({T.USER_ID: [f"u{i}" for i in range(len(inputs))],
                      T.TRAIN_INPUT: pa.array(inputs, pa.list_(pa.int32())),
                      T.TRAIN_TARGET: pa.array(targets, pa.list_(pa.int32()))})
    pq.write_table(table, path)
    return str(path)


@pytest.fixture
def two_files(tmp_path):
    a = write_file(tmp_path / "a.parquet", [[0, 1, 2], [0, 0, 0], [3, 4, 5]], [[0, 2, 3], [0, 0, 0], [4, 5, 6]])
    b = write_file(tmp_path / "b.parquet", [[0, 0, 0]], [[0, 0, 0]])  # only a user without a training target
    return petastorm_urls([b, a])


def test_urls_get_a_scheme_and_a_stable_order(two_files):
    assert all(u.startswith("file:///") for u in two_files) and two_files == sorted(two_files)


def test_shard_keeps_rows_with_a_target_and_counts_what_it_read(two_files):
    shard = read_shard(two_files, 0, 2, max_len=3)  # a.parquet
    assert shard.rows_read == 3 and len(shard) == 2
    assert shard.inputs.tolist() == [[0, 1, 2], [3, 4, 5]] and shard.inputs.dtype == np.int64


def test_a_shard_without_training_rows_or_with_another_length_is_refused(two_files):
    with pytest.raises(FeedError, match="none has a training target"):
        read_shard(two_files, 1, 2, max_len=3)  # b.parquet
    with pytest.raises(FeedError, match="same sequences.max_len"):
        read_shard(two_files, 0, 2, max_len=5)


def test_epoch_batches_are_full_wrapped_and_repeatable():
    shard = Shard(np.arange(10).reshape(5, 2), np.arange(10).reshape(5, 2) + 1, rows_read=5)
    steps = max(steps_for(5, 2), steps_for(9, 2))  # a peer with 9 rows needs 5 steps
    batches = list(epoch_batches(shard, steps, 2, seed=1, epoch=0, rank=0))
    assert len(batches) == 5 and all(x.shape == (2, 2) for x, _ in batches)
    seen = np.concatenate([x[:, 0].numpy() for x, _ in batches])
    assert set(seen) == {0, 2, 4, 6, 8}  # every row at least once; the rest wraps around
    again = [x for x, _ in epoch_batches(shard, steps, 2, seed=1, epoch=0, rank=0)]
    other = [x for x, _ in epoch_batches(shard, steps, 2, seed=1, epoch=1, rank=0)]
    assert all((a == b).all() for (a, _), b in zip(batches, again))
    assert any((a != b).any() for (a, _), b in zip(batches, other))


def test_length_buckets_batch_similar_lengths_and_keep_the_epoch_rows():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=64)
    inputs = np.zeros((64, 8), dtype=np.int64)
    for row, n in enumerate(lengths):
        inputs[row, 8 - n:] = row + 1  # the row's id, repeated over its real positions
    shard = Shard(inputs, inputs.copy(), rows_read=64)
    steps = steps_for(64, 8)
    plain = list(epoch_batches(shard, steps, 8, seed=3, epoch=0, rank=0))
    bucketed = list(epoch_batches(shard, steps, 8, seed=3, epoch=0, rank=0, length_buckets=4))
    again = list(epoch_batches(shard, steps, 8, seed=3, epoch=0, rank=0, length_buckets=4))

    def rows(batches):
        return sorted(int(x.max()) for b, _ in batches for x in b)

    def spread(batches):  # mean range of real lengths within a batch
        return np.mean([np.ptp((b != 0).sum(1).numpy()) for b, _ in batches])

    assert rows(bucketed) == rows(plain) == list(range(1, 65))  # the same rows, each once
    assert all(b.shape == (8, 8) for b, _ in bucketed)
    assert spread(bucketed) < spread(plain) / 2
    assert all((a == b).all() for (a, _), (b, _) in zip(bucketed, again))


def test_shards_cover_every_row_once_and_every_rank_runs_the_same_full_batches(tmp_path):
    sizes = [5, 4, 5, 4, 3]  # five row groups over two ranks: 13 rows and 8 rows
    urls, start = [], 1
    for f, n in enumerate(sizes):
        rows = [[0, start + i, start + i + 1] for i in range(n)]
        urls.append(write_file(tmp_path / f"part-{f}.parquet", rows, [r[1:] + [r[2] + 1] for r in rows]))
        start += n
    urls = petastorm_urls(urls)
    shards = [read_shard(urls, rank, 2, max_len=3) for rank in range(2)]
    ids = sorted(int(x) for s in shards for x in s.inputs[:, 1])
    assert ids == list(range(1, sum(sizes) + 1))  # every row on exactly one rank
    steps = max(steps_for(len(s), 4) for s in shards)  # what the allreduce Max agrees on
    per_rank = [list(epoch_batches(s, steps, 4, seed=0, epoch=0, rank=r)) for r, s in enumerate(shards)]
    assert [len(b) for b in per_rank] == [steps, steps] == [4, 4]  # the smaller shard does not stop early
    assert all(x.shape == (4, 3) for batches in per_rank for x, _ in batches)
    for shard, batches in zip(shards, per_rank):  # each rank sees each of its rows at least once
        assert set(np.concatenate([x[:, 1].numpy() for x, _ in batches])) == set(shard.inputs[:, 1])


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


def test_window_order_does_not_depend_on_the_files_physical_order(tmp_path):
    rows = [([0, i % 7, i], [i % 7, i, i + 1]) for i in range(1, 40)]  # repeated first items: ties to break
    one = write_file(tmp_path / "one.parquet", [x for x, _ in rows], [y for _, y in rows])
    shuffled = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]
    b = write_file(tmp_path / "b.parquet", [x for x, _ in shuffled[:15]], [y for _, y in shuffled[:15]])
    a = write_file(tmp_path / "a.parquet", [x for x, _ in shuffled[15:]], [y for _, y in shuffled[15:]])
    first, second = read_shard(petastorm_urls([one]), 0, 1, 3), read_shard(petastorm_urls([a, b]), 0, 1, 3)
    assert (first.inputs == second.inputs).all() and (first.targets == second.targets).all()
    steps = steps_for(len(first), 8)
    for (x1, y1), (x2, y2) in zip(epoch_batches(first, steps, 8, 42, 3, 0), epoch_batches(second, steps, 8, 42, 3, 0)):
        assert (x1 == x2).all() and (y1 == y2).all()
    assert first.inputs[:, 1].tolist() == sorted(first.inputs[:, 1].tolist())  # content order, not file order
