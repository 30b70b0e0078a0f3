"""bronze.events -> silver.events + silver.sessions, incrementally: a run recomputes only the UTC days its new
bronze batches touch (and the day after each, when silver already has it: a late event can merge sessions
across midnight), from every bronze row of those days, with the day before as context for sessions, retries
and bot rates. Silver is thus a function of bronze per day: reruns and rebuilds give the same rows, and a run
killed before it recorded its batches is simply redone.

Every bronze row the run counts ends in silver or in `dropped` with a reason: rows_in == rows_out + dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import EtlConf
from lakerec.etl.clean import BOT, OUT_OF_WINDOW, in_window, mark_clean
from lakerec.etl.dedupe import (CLIENT_RETRY, DUPLICATE_ACROSS_BATCHES, DUPLICATE_EVENT_ID, mark_dedupe,
                                mark_published_elsewhere)
from lakerec.etl.sessionize import START_TS, sessionize, sessions, utc_date
from lakerec.lake import Lake

PUBLISHED_TABLES = (T.SILVER_EVENTS, T.SILVER_SESSIONS)  # what a silver run publishes together
DROP_REASONS = (OUT_OF_WINDOW, BOT, DUPLICATE_EVENT_ID, DUPLICATE_ACROSS_BATCHES, CLIENT_RETRY)
SILVER_EVENT_COLUMNS = (T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS, T.VALUE, T.SESSION_ID,
                        T.BATCH_ID, T.SOURCE_FILE, T.SOURCE_LINE, T.DT)


@dataclass(frozen=True)
class Plan:
    """What one silver run recomputes."""

    batches: tuple[str, ...]      # bronze batches whose rows count: already published + new
    published: tuple[str, ...]    # batches silver had already processed before this run
    new_batches: tuple[str, ...]  # recorded in silver.batches once published (none for a rebuild)
    days: tuple[date, ...]        # silver.events partitions replaced

    @property
    def input_days(self) -> tuple[date, ...]:
        """The days read from bronze: each replaced day and the one before (context, not written)."""
        return tuple(sorted({*self.days, *(d - timedelta(days=1) for d in self.days)}))

    @property
    def session_days(self) -> tuple[date, ...]:
        """silver.sessions partitions replaced: sessions starting the day before a replaced day may reach into it."""
        return self.input_days


def plan_run(all_batches: set[str], published: set[str], touched: set[date], published_days: set[date],
             rebuild: tuple[date, date] | None) -> Plan:
    """A normal run: the new batches, the days they touch plus the next day where silver has it. A rebuild:
    exactly the days of the range, from the batches already published (new ones wait for a normal run)."""
    if rebuild is not None:
        lo, hi = rebuild
        days = [lo + timedelta(days=n) for n in range((hi - lo).days + 1)]
        return Plan(tuple(sorted(published)), tuple(sorted(published)), (), tuple(days))
    new = all_batches - published
    following = {d + timedelta(days=1) for d in touched} & published_days
    return Plan(tuple(sorted(all_batches)), tuple(sorted(published)), tuple(sorted(new)),
                tuple(sorted(touched | following)))


def touched_days(bronze: DataFrame, new_batches: tuple[str, ...], etl: EtlConf) -> set[date]:
    """UTC days of the new batches' events that lie in the valid window (others are only counted)."""
    rows = bronze.where(F.col(T.BATCH_ID).isin(list(new_batches)) & in_window(etl))
    return {r[0] for r in rows.select(utc_date(F.col(T.TS))).distinct().collect()}


def in_days(c: Column, days: tuple[date, ...]) -> Column:
    return c.isin([d.isoformat() for d in days]) if days else F.lit(False)


def replace_where(days: tuple[date, ...]) -> str:
    """The partition predicate of a rewrite of `days`."""
    return f"{T.DT} IN ({', '.join(repr(d.isoformat()) for d in days)})"


def with_source_line(bronze: DataFrame) -> DataFrame:
    """Bronze written before ingest recorded line numbers has no source_line: null there."""
    if T.SOURCE_LINE in bronze.columns:
        return bronze.withColumn(T.SOURCE_LINE, F.col(T.SOURCE_LINE).cast("long"))
    return bronze.withColumn(T.SOURCE_LINE, F.lit(None).cast("long"))


def counted(rows: DataFrame, plan: Plan, etl: EtlConf) -> DataFrame:
    """The input rows this run accounts for: those of the replaced days, and the new batches' out-of-window rows."""
    return rows.where(~in_window(etl) | in_days(utc_date(F.col(T.TS)).cast("string"), plan.days))


def published_ids(silver: DataFrame, plan: Plan, window_days: int | None) -> DataFrame:
    """event_ids silver holds outside the input days (inside them, bronze has the same rows and dedupe decides),
    within window_days of them (etl.redelivery_window_days; None: every day). The window is a partition filter,
    so a daily run reads the ids of a bounded number of days however long the history."""
    day = F.col(T.DT).cast("string")
    if window_days is None:
        outside = ~in_days(day, plan.input_days)
    else:
        near = {d + timedelta(days=k) for d in plan.input_days for k in range(-window_days, window_days + 1)}
        outside = in_days(day, tuple(sorted(near - set(plan.input_days))))
    return silver.where(outside).select(T.EVENT_ID)


def around(silver: DataFrame, plan: Plan) -> DataFrame:
    """silver's events of the days next to the replaced ones that sessions starting on plan.session_days reach."""
    days = {*plan.session_days, *(d + timedelta(days=1) for d in plan.session_days)} - set(plan.days)
    return silver.where(in_days(F.col(T.DT).cast("string"), tuple(sorted(days))))


def run_input(bronze: DataFrame, plan: Plan, etl: EtlConf) -> DataFrame:
    """The bronze rows the run reads: its batches' valid-window rows on the input days, plus the new batches'
    rows outside the window (dropped and counted once, by the run that first sees them)."""
    day = utc_date(F.col(T.TS)).cast("string")
    valid = in_window(etl)
    keep = ((valid & in_days(day, plan.input_days)) |
            (~valid & F.col(T.BATCH_ID).isin(list(plan.new_batches))))
    return with_source_line(bronze).where(F.col(T.BATCH_ID).isin(list(plan.batches)) & keep)


@dataclass
class SilverOut:
    marked: DataFrame    # every input row after clean, dedupe and sessionize, `reason` null where it is kept
    plan: Plan

    @property
    def events(self) -> DataFrame:
        """silver.events rows of the replaced days (the context day serves sessions, retries and bots)."""
        kept = self.marked.where(F.col(T.REASON).isNull()).drop(T.REASON)
        return (kept.withColumn(T.DT, utc_date(F.col(T.TS)))
                .where(in_days(F.col(T.DT).cast("string"), self.plan.days)).select(*SILVER_EVENT_COLUMNS))

    @property
    def dropped(self) -> DataFrame:
        """The counted dropped rows: event_id, batch_id, reason."""
        counted = (F.col(T.REASON) == OUT_OF_WINDOW) | in_days(utc_date(F.col(T.TS)).cast("string"), self.plan.days)
        return self.marked.where(F.col(T.REASON).isNotNull() & counted).select(T.EVENT_ID, T.BATCH_ID, T.REASON)


def build_silver(rows: DataFrame, plan: Plan, etl: EtlConf, key: bytes | None,
                 published_ids: DataFrame | None) -> SilverOut:
    """clean -> dedupe (against the input days, then against silver's other days) -> sessionize the kept rows;
    only the replaced days' rows are returned (the context day serves sessions, retries and bots).

    The steps mark rows (a `reason`) instead of splitting them, so kept and dropped rows come out of one frame:
    persisted once, its windows and shuffles run once for the events, the drop counts and the checks."""
    # narrower rows through the shuffles and the cache: sessionize makes its own session ids, and only the bot
    # rules read the user agent
    cleaned = mark_clean(rows.drop(T.SESSION_ID), etl, key, drop_agent=True)
    marked = mark_dedupe(cleaned, etl.retry_window_seconds, plan.published)
    if published_ids is not None:
        marked = mark_published_elsewhere(marked, published_ids)
    return SilverOut(sessionize(marked, etl.session_gap_minutes, alive=F.col(T.REASON).isNull()), plan)


def session_rows(events: DataFrame, neighbours: DataFrame | None, plan: Plan) -> DataFrame:
    """silver.sessions rows for plan.session_days, from the new events and silver's events of the days around
    them that this run does not replace."""
    both = events if neighbours is None else events.unionByName(neighbours.select(*events.columns))
    out = sessions(both)
    return out.where(in_days(utc_date(F.col(START_TS)).cast("string"), plan.session_days))


def dropped_counts(dropped: DataFrame) -> dict[str, int]:
    """reason -> rows dropped, every reason present (0 when none)."""
    counts = {r[T.REASON]: r["count"] for r in dropped.groupBy(T.REASON).count().collect()}
    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}


def published_versions(lake: Lake) -> dict[str, int]:
    """The silver.events and silver.sessions versions the last complete silver run published.

    Silver commits its tables one by one; its last commit, to silver.batches, names the versions of the others in
    its metadata, so a reader that asks here never pairs a killed run's new events with the old sessions. Empty
    where no commit names them (no silver run yet, or the last one ran before runs recorded them).
    """
    if not lake.exists(T.SILVER_BATCHES):
        return {}
    meta = lake.history(T.SILVER_BATCHES, limit=1)[0]["metadata"]
    return {t: int(meta[t]) for t in PUBLISHED_TABLES if t in meta}


def read_published(lake: Lake, table: str, version: int | None = None) -> DataFrame:
    """`table` at `version` if given, else as the last complete silver run published it (the latest version where
    no run recorded one)."""
    return lake.read(table, published_versions(lake).get(table) if version is None else version)
