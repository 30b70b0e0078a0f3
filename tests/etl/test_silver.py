"""Silver: clean, dedupe and sessionize on tiny hand-made frames, and the accounting on the demo lake."""
import hashlib
from datetime import datetime, timedelta, timezone

from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.etl.clean import clean, content_hash, normalise
from lakerec.etl.dedupe import dedupe
from lakerec.etl.ingest import BRONZE_EVENT_COLUMNS
from lakerec.etl.sessionize import sessionize, sessions
from lakerec.etl.silver import SILVER_EVENT_COLUMNS
from tests.etl.conftest import etl_cfg

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
BRONZE_SCHEMA = ("event_id string, user_id string, item_id string, event_type string, ts timestamp, value double, "
                 "session_id string, user_agent string, batch_id string, source_file string, source_line long, "
                 "ingested_at timestamp")


def bronze(spark, *events):
    """bronze.events rows from dicts: user u1, item i1, a view at T0 by a browser, unless said otherwise."""
    defaults = {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": T0, "value": None,
                "session_id": None, "user_agent": "Mozilla/5.0", "batch_id": "b1", "source_file": "f1",
                "source_line": 1, "ingested_at": NOW}
    rows = [tuple({**defaults, "event_id": f"e{n}", **e}[c] for c in BRONZE_EVENT_COLUMNS)
            for n, e in enumerate(events)]
    return spark.createDataFrame(rows, BRONZE_SCHEMA)


def ids(df):
    return sorted(r[T.EVENT_ID] for r in df.select(T.EVENT_ID).collect())


def reasons(split):
    return sorted((r[T.EVENT_ID], r[T.REASON]) for r in split.dropped.select(T.EVENT_ID, T.REASON).collect())


def at(minutes=0, seconds=0):
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def test_clean_normalises_and_drops_impossible_times_and_bots(spark, tmp_path):
    etl = etl_cfg(tmp_path).etl  # valid_from 1995, 60 future minutes, 30 events a minute at most
    df = bronze(
        spark,
        {"event_id": " ok ", "user_id": " u1 ", "event_type": " VIEW "},
        {"event_id": "old", "ts": datetime(1994, 12, 31, tzinfo=timezone.utc)},
        {"event_id": "soon", "ts": NOW + timedelta(minutes=59)},
        {"event_id": "late", "ts": NOW + timedelta(minutes=61)},
        {"event_id": "crawler", "user_id": "u2", "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"},
        *({"event_id": f"fast{n}", "user_id": "u3", "ts": at(seconds=n)} for n in range(31)),
        {"event_id": "fast-later", "user_id": "u3", "ts": at(minutes=120)},  # a calm minute of a bot user
        *({"event_id": f"busy{n}", "user_id": "u4", "ts": at(seconds=2 * n)} for n in range(30)),  # 30: allowed
    )
    split = clean(df, etl)
    assert ids(split.kept) == sorted(["ok", "soon", *(f"busy{n}" for n in range(30))])
    assert reasons(split) == sorted([("old", "out_of_window"), ("late", "out_of_window"), ("crawler", "bot"),
                                     ("fast-later", "bot"), *((f"fast{n}", "bot") for n in range(31))])
    ok = split.kept.where(F.col(T.EVENT_ID) == "ok").first()
    assert (ok.user_id, ok.event_type) == ("u1", "view")
    assert split.kept.count() + split.dropped.count() == df.count()


def test_events_without_id_get_the_same_content_hash(spark):
    df = normalise(bronze(spark, {"event_id": ""}, {"event_id": None}, {"event_id": None, "item_id": "i2"}))
    got = [r[0] for r in df.select(T.EVENT_ID).collect()]
    assert got[0] == got[1] != got[2] and len(got[0]) == 32
    again = normalise(bronze(spark, {"event_id": None})).select(content_hash()).first()[0]
    assert again == got[0]


def test_dedupe_duplicates_and_retries(spark):
    df = bronze(
        spark,
        {"event_id": "a", "ingested_at": NOW},
        {"event_id": "a", "ingested_at": NOW + timedelta(hours=1), "source_file": "f2"},  # delivered again
        {"event_id": "b", "ts": at(seconds=10)},   # same user/item/type 10 s after a: a retry
        {"event_id": "c", "ts": at(seconds=18)},   # 8 s after the retry b: still the same burst
        {"event_id": "d", "ts": at(seconds=29)},   # 11 s after c: a new action
        {"event_id": "e", "ts": at(seconds=1), "event_type": "click"},  # another type: not a retry
        {"event_id": "f", "ts": at(seconds=1), "user_id": "u2"},        # another user
    )
    split = dedupe(df, retry_window_seconds=10)
    assert ids(split.kept) == ["a", "d", "e", "f"]
    assert reasons(split) == [("a", "duplicate_event_id"), ("b", "client_retry"), ("c", "client_retry")]
    assert split.kept.where(F.col(T.EVENT_ID) == "a").first().source_file == "f1"  # the first delivery stays
    assert ids(dedupe(df, retry_window_seconds=0).kept) == ["a", "b", "c", "d", "e", "f"]


def test_sessions_split_on_inactivity_not_on_midnight(spark):
    late = datetime(2026, 11, 20, 23, 50, tzinfo=timezone.utc)
    df = bronze(
        spark,
        {"event_id": "s1a", "ts": at(0)},
        {"event_id": "s1b", "ts": at(30)},          # a 30-minute gap: same session
        {"event_id": "s2a", "ts": at(61)},          # 31 minutes later: a new one
        {"event_id": "m1", "ts": late},
        {"event_id": "m2", "ts": late + timedelta(minutes=20)},  # after midnight, same session
        {"event_id": "other", "user_id": "u2", "ts": at(0)},
    )
    events = sessionize(df, gap_minutes=30).withColumn(T.DT, F.to_date(T.TS))
    by_id = {r[T.EVENT_ID]: r[T.SESSION_ID] for r in events.collect()}
    assert by_id["s1a"] == by_id["s1b"] != by_id["s2a"]
    assert by_id["m1"] == by_id["m2"] and len(set(by_id.values())) == 4
    expected = hashlib.sha256(f"u1|{int(late.timestamp() * 1_000_000)}".encode()).hexdigest()[:32]
    assert by_id["m1"] == expected  # hash of the user and the session's start: stable across recomputes
    shuffled = sessionize(df.orderBy(F.rand(3)).repartition(3), gap_minutes=30)
    assert {r[T.EVENT_ID]: r[T.SESSION_ID] for r in shuffled.collect()} == by_id
    midnight = sessions(events).where(F.col(T.SESSION_ID) == expected).first()
    assert (midnight.n_events, str(midnight.dt), midnight.end_ts - midnight.start_ts) == (
        2, "2026-11-20", timedelta(minutes=20))


def test_demo_silver_keeps_exactly_the_clean_events(demo_lake):
    made, got = demo_lake.results["generate"].metrics, demo_lake.results["silver"].metrics
    assert got["rows_in"] == demo_lake.results["ingest"].metrics["rows_bronze"]
    assert got["rows_in"] == got["rows_out"] + sum(v for k, v in got.items() if k.startswith("dropped."))
    assert got["rows_out"] == made["clean_events"]
    assert got["sessions"] == made["sessions"] == made["users"] * demo_lake.cfg.demo.sessions_per_user
    assert got["dropped.out_of_window"] == 0  # the demo's impossible times are quarantined at ingest
    assert got["dropped.bot"] == made["dirt.bot"]
    assert got["dropped.duplicate_event_id"] == made["dirt.duplicate"]
    assert got["dropped.client_retry"] == made["dirt.retry"]

    events = demo_lake.lake.read(T.SILVER_EVENTS)
    assert tuple(events.columns) == SILVER_EVENT_COLUMNS
    assert all("/dt=" in f for f in demo_lake.lake.files(T.SILVER_EVENTS))
    assert events.select(T.EVENT_ID).distinct().count() == made["clean_events"]
    assert events.where(F.col(T.USER_ID).startswith(" ") | (F.col(T.EVENT_TYPE) != F.lower(T.EVENT_TYPE))).count() == 0
    assert events.where(F.col(T.DT) != F.to_date(T.TS)).count() == 0  # the session is UTC here
    sess = demo_lake.lake.read(T.SILVER_SESSIONS)
    assert sess.agg(F.sum("n_events")).first()[0] == made["clean_events"]
    assert events.select(T.SESSION_ID).distinct().join(sess, T.SESSION_ID, "left_anti").count() == 0
