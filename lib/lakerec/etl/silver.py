"""bronze.events -> silver.events + silver.sessions: clean, dedupe, sessionize, with every dropped row kept
(and its reason) for the accounting rows_in == rows_out + sum(dropped)."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import EtlConf
from lakerec.etl.clean import BOT, OUT_OF_WINDOW, clean
from lakerec.etl.dedupe import CLIENT_RETRY, DUPLICATE_EVENT_ID, dedupe
from lakerec.etl.sessionize import sessionize, sessions, utc_date

DROP_REASONS = (OUT_OF_WINDOW, BOT, DUPLICATE_EVENT_ID, CLIENT_RETRY)
SILVER_EVENT_COLUMNS = (T.EVENT_ID, T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, T.TS, T.VALUE, T.SESSION_ID, T.DT)


@dataclass
class SilverOut:
    events: DataFrame    # silver.events (session_id is the computed one; the source's stays in bronze)
    sessions: DataFrame  # silver.sessions
    dropped: DataFrame   # event_id and reason of each dropped bronze row


def build_silver(bronze: DataFrame, etl: EtlConf) -> SilverOut:
    cleaned = clean(bronze, etl)
    deduped = dedupe(cleaned.kept, etl.retry_window_seconds)
    events = (sessionize(deduped.kept, etl.session_gap_minutes)
              .withColumn(T.DT, utc_date(F.col(T.TS))).select(*SILVER_EVENT_COLUMNS))
    dropped = cleaned.dropped.select(T.EVENT_ID, T.REASON).unionByName(deduped.dropped.select(T.EVENT_ID, T.REASON))
    # sessions derive from `events`: once the caller persists events, they come from that cache
    return SilverOut(events=events, sessions=sessions(events), dropped=dropped)


def dropped_counts(dropped: DataFrame) -> dict[str, int]:
    """reason -> rows dropped, every reason present (0 when none)."""
    counts = {r[T.REASON]: r["count"] for r in dropped.groupBy(T.REASON).count().collect()}
    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}
