"""Sessions: a user's events split by inactivity, with ids that do not change between recomputes."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.etl.dedupe import file_order

START_TS = "start_ts"
END_TS = "end_ts"
N_EVENTS = "n_events"
SESSION_COLUMNS = (T.SESSION_ID, T.USER_ID, START_TS, END_TS, N_EVENTS, T.DT)


def sessionize(events: DataFrame, gap_minutes: int, alive: Column | None = None) -> DataFrame:
    """Sets session_id: a user's next session starts after more than `gap_minutes` without events. Calendar days
    do not split sessions (one that crosses midnight stays one). The id hashes the user and the session's start
    time, so recomputing silver from the same events gives the same ids.

    `alive` (a boolean column; None: every row) sessionizes only those rows: the others get a null session_id and
    sort after them, so they neither split nor extend a session. Silver sessionizes its marked rows this way,
    in the partitioning and plan of the rules that marked them, instead of shuffling the kept rows again."""
    dead = [] if alive is None else [~alive]
    by_time = Window.partitionBy(T.USER_ID).orderBy(*dead, T.TS, *file_order(), T.EVENT_ID)
    micros = F.unix_micros(T.TS)
    starts = F.coalesce(micros - F.lag(micros).over(by_time) > gap_minutes * 60_000_000, F.lit(True))
    # the session's start is the latest start so far: the same window order, so no second sort of the rows
    start = F.last(F.when(F.col("_starts"), F.col(T.TS)), ignorenulls=True).over(
        by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    sid = session_id(F.col(T.USER_ID), start)
    return (events.withColumn("_starts", starts)
            .withColumn(T.SESSION_ID, sid if alive is None else F.when(alive, sid)).drop("_starts"))


def session_id(user_id: Column, start_ts: Column) -> Column:
    """32 hex characters of sha-256 over the user and the session's start (epoch microseconds)."""
    return F.substring(F.sha2(F.concat_ws("|", user_id, F.unix_micros(start_ts).cast("string")), 256), 1, 32)


def sessions(events: DataFrame) -> DataFrame:
    """silver.sessions from sessionized events: one row per session, dt = the UTC date it started."""
    return (
        events.groupBy(T.SESSION_ID, T.USER_ID)
        .agg(F.min(T.TS).alias(START_TS), F.max(T.TS).alias(END_TS), F.count(F.lit(1)).alias(N_EVENTS))
        .withColumn(T.DT, utc_date(F.col(START_TS)))
        .select(*SESSION_COLUMNS)
    )


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of a timestamp, whatever spark.sql.session.timeZone says."""
    return F.date_from_unix_date(F.floor(F.unix_micros(ts) / 86_400_000_000).cast("int"))
