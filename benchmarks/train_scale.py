"""Training memory and throughput as the data grows: one pass over synthetic silver.train_windows on 1 and 2 ranks.

    .venv/bin/python benchmarks/train_scale.py [--sizes 2M,20M] [--shuffle-buffer 16384] [--row-group 8192]
        [--items 50000] [--work DIR] [--ranks 1,2] [--set train.key=value ...]

For each size (interactions), untimed: a generated log written as silver.train_windows-like Parquet (user_id,
window, train_input, train_target; int32 lists of max length 50, the windows cut from the end of each history
like the sequences stage, row groups of --row-group rows, 4 files) and a validation file of 1,000 users. The
log: history lengths log-normal around 15 (3 to 500), cut into sessions (a new one with probability 0.2 per
event); a session's first item and 40% of the rest drawn from a Zipf-like popularity (p ~ 1/rank^1.05 over
--items items), the others a short step from the previous item (sequential signal). Timed: one epoch of SASRec
(d 64, 2 layers, sampled softmax over 256 negatives, batch 128, length buckets 16) through horovod.spark.run on 1
rank, then on 2, each rank streaming its row groups through a shuffle buffer of --shuffle-buffer rows.
Prints per run: windows, steps per rank, seconds of the epoch, sequences/s per rank, peak RSS of the largest
rank process and the peak rows the feed held. The last line is
`train_peak_rss_ratio_20M_vs_2M=<m> seqs_per_s_per_rank=<s> two_rank_speedup=<u>`: 2-rank peak RSS per rank at
20M over 2M (nan unless both ran; the line above names the ratio of the sizes that did), the 2-rank sequences/s per
rank and 2-rank over 1-rank total throughput, both at the largest size (printed only when --ranks is 1,2). --set
passes lakerec config keys, e.g. train.malloc_mmap_threshold=131072 (the ranks' allocator setting).
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakerec import tables as T  # noqa: E402
from lakerec.config import load_config  # noqa: E402
from lakerec.data.feed import petastorm_urls  # noqa: E402
from lakerec.models.base import ModelConfig  # noqa: E402
from lakerec.spark import get_spark  # noqa: E402
from lakerec.train.runner import train_distributed  # noqa: E402
from measure import HOROVOD_RANK, PeakMemory  # noqa: E402

MAX_LEN, DIM, BATCH, FILES, VALID_USERS = 50, 64, 128, 4, 1000


def parse_size(text: str) -> int:
    """'200k', '2M', '20M' or a plain number of interactions."""
    scale = {"k": 10**3, "m": 10**6}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def popularity(n_items: int, exponent: float = 1.05) -> np.ndarray:
    """Zipf-like item probabilities over item_idx 1..n_items (a long tail: the head item ~10% of the draws)."""
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    return weights / weights.sum()


def histories(rng: np.random.Generator, n_users: int, n_items: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, items) of n_users histories: sessions that start at a popular item and walk near it."""
    lengths = np.clip(rng.lognormal(np.log(15), 0.8, n_users).astype(np.int64), 3, 500)
    total = int(lengths.sum())
    user_start = np.zeros(total, bool)
    user_start[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
    fresh = user_start | (rng.random(total) < 0.2) | (rng.random(total) < 0.4)  # new session, or a popular draw
    draws = rng.choice(n_items, total, p=p) + 1
    steps = rng.integers(1, 4, total)
    steps[fresh] = 0
    last_fresh = np.maximum.accumulate(np.where(fresh, np.arange(total), 0))
    walked = np.cumsum(steps)
    items = (draws[last_fresh] - 1 + walked - walked[last_fresh]) % n_items + 1
    return lengths, items.astype(np.int32)


def windows(lengths: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, input, target) windows of each history's training part (all but the last 2 items), cut from its end
    into runs of MAX_LEN (input item, next item) pairs, left-padded like silver.train_windows."""
    users, inputs, targets = [], [], []
    start = 0
    for user, n in enumerate(lengths):
        part = items[start:start + n - 2]
        start += n
        for end in range(len(part) - 1, 0, -MAX_LEN):
            lo = max(0, end - MAX_LEN)
            x, y = np.zeros(MAX_LEN, np.int32), np.zeros(MAX_LEN, np.int32)
            x[MAX_LEN - (end - lo):], y[MAX_LEN - (end - lo):] = part[lo:end], part[lo + 1:end + 1]
            users.append(user)
            inputs.append(x)
            targets.append(y)
    return np.asarray(users), np.stack(inputs), np.stack(targets)


def int_lists(matrix: np.ndarray) -> pa.Array:
    offsets = np.arange(0, (len(matrix) + 1) * matrix.shape[1], matrix.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel(), pa.int32()))


def generate(folder: Path, interactions: int, n_items: int, row_group: int, seed: int = 7) -> dict:
    """The windows (FILES Parquet files, chunks of users dealt round-robin) and a validation file; counts."""
    rng, p = np.random.default_rng(seed), popularity(n_items)
    folder.mkdir(parents=True)
    written, chunk, users, n_windows = 0, 0, 0, 0
    schema = pa.schema([(T.USER_ID, pa.string()), (T.WINDOW, pa.int32()), (T.TRAIN_INPUT, pa.list_(pa.int32())),
                        (T.TRAIN_TARGET, pa.list_(pa.int32()))])
    writers = [pq.ParquetWriter(folder / f"part-{f:05d}.parquet", schema) for f in range(FILES)]
    while written < interactions:
        lengths, items = histories(rng, min(20_000, max(1_000, (interactions - written) // 20)), n_items, p)
        if chunk == 0:
            write_valid(folder.parent / f"{folder.name}-valid.parquet", lengths[:VALID_USERS], items)
        user, x, y = windows(lengths, items)
        table = pa.table({T.USER_ID: pa.array([f"u{users + u}" for u in user]),
                          T.WINDOW: pa.array(np.zeros(len(user), np.int32)), T.TRAIN_INPUT: int_lists(x),
                          T.TRAIN_TARGET: int_lists(y)}, schema=schema)
        writers[chunk % FILES].write_table(table, row_group_size=row_group)
        written, chunk, users, n_windows = written + int(lengths.sum()), chunk + 1, users + len(lengths), \
            n_windows + len(user)
    for w in writers:
        w.close()
    return {"interactions": written, "users": users, "windows": n_windows}


def write_valid(path: Path, lengths: np.ndarray, items: np.ndarray) -> None:
    """silver.sequences-like validation users: the history and the window before its next-to-last item."""
    history, valid_input, valid_target, start = [], [], [], 0
    for n in lengths:
        h = items[start:start + n]
        start += n
        x = np.zeros(MAX_LEN, np.int32)
        before = h[:-2][-MAX_LEN:]
        x[MAX_LEN - len(before):] = before
        history.append(h.tolist())
        valid_input.append(x)
        valid_target.append(int(h[-2]))
    pq.write_table(pa.table({T.USER_ID: [f"v{i}" for i in range(len(lengths))],
                             T.HISTORY: pa.array(history, pa.list_(pa.int32())),
                             T.VALID_INPUT: int_lists(np.stack(valid_input)),
                             T.VALID_TARGET: pa.array(valid_target, pa.int32())}), path)


def train_once(spark, cfg, folder: Path, n_items: int, ranks: int, shuffle_buffer: int, work: Path) -> dict:
    """One epoch on `ranks` ranks: seconds, sequences/s per rank, peak RSS of a rank, peak rows the feed held."""
    conf = cfg.train.model_copy(update={"ranks": ranks, "epochs": 1, "batch_size": BATCH, "loss": "sampled",
                                        "negatives": 256, "length_buckets": 16, "shuffle_buffer": shuffle_buffer,
                                        "timeout_s": 600, "warmup_steps": 100})
    model = ModelConfig(n_items=n_items, max_len=MAX_LEN, dim=DIM, layers=2, heads=2, dropout=0.2, name="sasrec")
    train_urls = petastorm_urls([str(f) for f in sorted(folder.glob("*.parquet"))])
    valid_urls = petastorm_urls([str(folder.parent / f"{folder.name}-valid.parquet")])
    with PeakMemory(workers=(HOROVOD_RANK,)) as memory:
        result = train_distributed(spark, train_urls, valid_urls, model, conf, str(work / f"ckpt-{ranks}"))
    seconds = result.history[0]["seconds"]  # the epoch (and its validation of VALID_USERS), not the start-up
    steps = result.ranks[0]["steps_per_epoch"]
    return {"ranks": ranks, "steps": steps, "seconds": seconds, "seqs_per_s_per_rank": steps * BATCH / seconds,
            "rank_peak_mib": memory.peak_worker / 2**20,
            "feed_peak_rows": max(r["feed_peak_rows"] for r in result.ranks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2M,20M", help="interactions per size, comma-separated (k, M)")
    parser.add_argument("--shuffle-buffer", type=int, default=16384, help="train.shuffle_buffer (rows per rank)")
    parser.add_argument("--row-group", type=int, default=8192, help="rows per Parquet row group")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--work", default=None, help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--ranks", default="1,2", help="rank counts to run per size, comma-separated")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="lakerec config key=value")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    rank_counts = [int(r) for r in args.ranks.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="lakerec-train-scale-"))
    cfg = load_config("local", [f"lake.root={work}", "log.progress=never", *args.overrides])
    spark = get_spark(cfg)
    print(f"{spark.sparkContext.defaultParallelism} cores, SASRec d={DIM} L={MAX_LEN}, batch {BATCH}, sampled "
          f"softmax, {args.items} items, shuffle buffer {args.shuffle_buffer} rows, row groups of {args.row_group}; "
          f"malloc_mmap_threshold {cfg.train.malloc_mmap_threshold}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"{'size':>6} {'interactions':>12} {'windows':>9} {'ranks':>5} {'steps':>6} {'s':>7} {'seqs/s/rank':>11} "
          f"{'rank peak MiB':>13} {'feed peak rows':>14}")
    runs = {}
    for size in sizes:
        folder = work / f"windows-{size}"
        info = generate(folder, parse_size(size), args.items, args.row_group)
        for ranks in rank_counts:
            row = train_once(spark, cfg, folder, args.items, ranks, args.shuffle_buffer, work)
            runs[size, ranks] = row
            print(f"{size:>6} {info['interactions']:>12,} {info['windows']:>9,} {ranks:>5} {row['steps']:>6} "
                  f"{row['seconds']:>7.1f} {row['seqs_per_s_per_rank']:>11.0f} {row['rank_peak_mib']:>13.0f} "
                  f"{row['feed_peak_rows']:>14,}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if rank_counts != [1, 2]:
        return 0  # the last line compares 1 and 2 ranks
    first, last = sizes[0], sizes[-1]
    ratio = runs[last, 2]["rank_peak_mib"] / runs[first, 2]["rank_peak_mib"]
    print(f"train_peak_rss_ratio_{last}_vs_{first}={ratio:.2f}")
    wanted = ratio if (first, last) == ("2M", "20M") else math.nan
    speedup = 2 * runs[last, 2]["seqs_per_s_per_rank"] / runs[last, 1]["seqs_per_s_per_rank"]
    print(f"train_peak_rss_ratio_20M_vs_2M={wanted:.2f} seqs_per_s_per_rank={runs[last, 2]['seqs_per_s_per_rank']:.0f} "
          f"two_rank_speedup={speedup:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
