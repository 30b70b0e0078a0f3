"""The Petastorm feed without Horovod: shard reading, filtering, equal batch counts with wrap-around."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakerec import tables as T
from lakerec.data.feed import FeedError, Shard, epoch_batches, petastorm_urls, read_shard, steps_for


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
