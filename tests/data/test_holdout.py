"""Cold-start holdout: held-out items never reach training, validation or any input, only test targets."""
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import HoldoutConf, SequencesConf
from lakerec.data.holdout import drop_holdout_events, holdout_items
from lakerec.data.sequences import build_item_index, build_sequences, build_train_windows

N_USERS, N_ITEMS = 30, 40


def events_and_items(spark):
    rng = np.random.default_rng(3)
    start = datetime(2026, 1, 1)
    rows = [(f"u{u}", f"i{int(i):02d}", start + timedelta(minutes=int(t)), f"e{u}-{t}", "view")
            for u in range(N_USERS) for t, i in enumerate(rng.integers(0, N_ITEMS, rng.integers(4, 25)))]
    events = spark.createDataFrame(rows, f"{T.USER_ID} string, {T.ITEM_ID} string, {T.TS} timestamp, "
                                         f"{T.EVENT_ID} string, {T.EVENT_TYPE} string")
    items = spark.createDataFrame([(f"i{i:02d}", date(1990 + i // 2, 1, 1) if i % 7 else None)
                                   for i in range(N_ITEMS)], f"{T.ITEM_ID} string, {T.PUBLISHED} date")
    return events, items


@pytest.mark.slow
def test_random_holdout_leaks_no_cold_item_into_training(spark):
    events, items = events_and_items(spark)
    index = build_item_index(events, items)
    conf = HoldoutConf(protocol="random", share=0.25, seed=1)
    held = {r[0] for r in holdout_items(index, items, conf).collect()}
    assert len(held) == 10
    assert held == {r[0] for r in holdout_items(index, items, conf).collect()}  # seeded: the same items
    assert held != {r[0] for r in holdout_items(index, items, HoldoutConf(protocol="random", seed=2)).collect()}

    kept = drop_holdout_events(events, spark.createDataFrame([(i,) for i in held], f"{T.ITEM_ID} string"))
    idx_of = {r[T.ITEM_ID]: r[T.ITEM_IDX] for r in index.collect()}
    cold = {idx_of[i] for i in held}
    conf_seq = SequencesConf(max_len=8, window_stride=3)
    sequences = build_sequences(kept, index, conf_seq).toPandas()
    windows = build_train_windows(spark.createDataFrame(sequences), conf_seq).toPandas()
    seen_in_training = {int(i) for col in (T.TRAIN_INPUT, T.TRAIN_TARGET) for row in windows[col] for i in row}
    assert not seen_in_training & cold
    split = sequences[sequences[T.TEST_TARGET] > 0]
    assert not set(split[T.VALID_TARGET]) & cold
    for col in (T.VALID_INPUT, T.TEST_INPUT):
        assert not {int(i) for row in split[col] for i in row} & cold
    assert set(split[T.TEST_TARGET]) & cold  # the test does ask for held-out items
    last = events.groupBy(T.USER_ID).agg(F.max_by(T.ITEM_ID, T.TS).alias("last")).toPandas()
    merged = split.merge(last, on=T.USER_ID)
    assert len(merged) == len(split) and (merged[T.TEST_TARGET] == merged["last"].map(idx_of)).all()


def test_newest_holdout_takes_the_latest_dated_items(spark):
    events, items = events_and_items(spark)
    held = holdout_items(build_item_index(events, items), items, HoldoutConf(protocol="newest", share=0.1))
    dated = items.where(F.col(T.PUBLISHED).isNotNull()).orderBy(F.col(T.PUBLISHED).desc(), T.ITEM_ID).toPandas()
    assert sorted(r[0] for r in held.collect()) == sorted(dated[T.ITEM_ID][:4])  # ceil(0.1 * 34 dated items)
