"""Cold-start protocol (`sequences.holdout`): items removed from training entirely, then asked for by the test.

- `random`: a `share` of the item index chosen by a seeded hash of the item id (the same items on every engine
  and every run, whatever the partitioning);
- `newest`: the `share` of the dated catalog items (silver.items.published) with the latest dates, what new
  releases look like to a recommender (undated items are never held out).
Every event of a held-out item is dropped except where it is its user's newest event: there it stays as the
test target, the one place the protocol asks for it. So no held-out item reaches a training window, a
validation target or any user's input, and the evaluator's `cold` slice (targets never seen before the split)
holds the held-out items.
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import HoldoutConf
from lakerec.data.sequences import order_keys


def holdout_items(item_index: DataFrame, items: DataFrame, conf: HoldoutConf) -> DataFrame:
    """(item_id) of the held-out items; empty for protocol `none`."""
    ids = item_index.select(F.col(T.ITEM_ID).cast("string"))
    if conf.protocol == "none":
        return ids.limit(0)
    if conf.protocol == "random":
        n = math.ceil(conf.share * ids.count())
        key = F.sha2(F.concat(F.lit(f"{conf.seed}:"), F.col(T.ITEM_ID)), 256)
        return ids.orderBy(key, T.ITEM_ID).limit(n)
    dated = items.where(F.col(T.PUBLISHED).isNotNull()).select(T.ITEM_ID, T.PUBLISHED)
    n = math.ceil(conf.share * dated.count())
    return dated.orderBy(F.col(T.PUBLISHED).desc(), F.col(T.ITEM_ID)).limit(n).select(T.ITEM_ID)


def drop_holdout_events(events: DataFrame, held_out: DataFrame) -> DataFrame:
    """events without the held-out items' events, except each user's newest event (the test target)."""
    newest_first = Window.partitionBy(T.USER_ID).orderBy(*(F.col(k).desc() for k in order_keys(events)))
    flagged = (events.join(F.broadcast(held_out.withColumn("_held", F.lit(True))), T.ITEM_ID, "left")
               .withColumn("_newest", F.row_number().over(newest_first) == 1))
    return flagged.where(F.col("_held").isNull() | F.col("_newest")).drop("_held", "_newest")
