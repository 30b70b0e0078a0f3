"""The serving rule in one place: for the same user at the same time, evaluation excludes from the ranking exactly
the items the scoring stage would not recommend (real Spark: silver.sequences built by the sequences stage's code,
user_states from the same events cut before the target)."""
from datetime import datetime, timedelta

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import SequencesConf
from lakerec.data.sequences import build_item_index, build_sequences, item_ids_in_order
from lakerec.evaluate.metrics import split_data
from lakerec.score.batch import EXCLUDE, user_states

T0 = datetime(2026, 11, 1)
EVENTS = f"{T.EVENT_ID} string, {T.USER_ID} string, {T.ITEM_ID} string, {T.EVENT_TYPE} string, {T.TS} timestamp"
KINDS = ["view", "click", "purchase"]


def _events(spark, seed: int = 5):
    """40 users, 3-15 events each over 12 items and three types, with repeats (the targets repeat often)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(40):
        for i in range(int(rng.integers(3, 16))):
            item, kind = f"i{int(rng.integers(1, 13)):02d}", KINDS[int(rng.integers(0, 3))]
            rows.append((f"u{u}-{i:03d}", f"u{u}", item, kind, T0 + timedelta(minutes=i)))
    return spark.createDataFrame(rows, EVENTS)


@pytest.mark.parametrize("exclude_types", [None, ["purchase"], ["view", "click"], []])
def test_evaluation_excludes_what_scoring_excludes_at_the_targets_time(spark, exclude_types):
    events = _events(spark)
    index = build_item_index(events, events.select(T.ITEM_ID).limit(0))
    item_ids = item_ids_in_order(index)
    sequences = build_sequences(events, index, SequencesConf(max_len=20, min_events=3)).toPandas()
    data = split_data(sequences, "test", exclude_types)
    assert data.repeat_targets.any() if exclude_types != [] else not data.repeat_targets.any()

    # scoring at the test target's time: every event but each user's newest one
    newest = events.groupBy(T.USER_ID).agg(F.max(T.TS).alias("_newest"))
    before = events.join(newest, T.USER_ID).where(F.col(T.TS) < F.col("_newest")).drop("_newest")
    scoring = {r[T.USER_ID]: sorted(r[EXCLUDE]) for r in user_states(before, item_ids, 20, exclude_types).collect()}
    evaluation = {u: sorted(e.tolist()) for u, e in zip(data.users, data.excluded)}
    assert evaluation == {u: scoring.get(u, []) for u in evaluation}
