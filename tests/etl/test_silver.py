"""Silver: clean, dedupe and sessionize on tiny hand-made frames, and the accounting on the demo lake."""
import hashlib
import hmac
import unicodedata
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import jobs.silver

from lakerec import tables as T
from lakerec.etl.clean import content_hash, mark_clean, nfc, normalise
from lakerec.etl.dedupe import mark_dedupe
from lakerec.etl.ingest import BRONZE_EVENT_COLUMNS as INGEST_COLUMNS
from lakerec.config import ConfigError, load_config
from lakerec.etl.pseudonym import PseudonymKeyError, hmac_sha256, load_key, pseudonym
from lakerec.etl.sessionize import sessionize, sessions
from lakerec.etl.silver import SILVER_EVENT_COLUMNS, Plan, published_ids
from tests.conftest import CONF_DIR
from tests.etl.conftest import etl_cfg

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
COLUMN_TYPES = {"event_id": "string", "user_id": "string", "item_id": "string", "event_type": "string",
                "ts": "timestamp", "value": "double", "session_id": "string", "user_agent": "string",
                "batch_id": "string", "source_file": "string", "source_line": "long", "ingested_at": "timestamp"}
# bronze's columns, with source_line wherever ingest does not record it yet
BRONZE_EVENT_COLUMNS = (*INGEST_COLUMNS, *((T.SOURCE_LINE,) if T.SOURCE_LINE not in INGEST_COLUMNS else ()))


def bronze(spark, *events):
    """bronze.events rows from dicts: user u1, item i1, a view at T0 by a browser, unless said otherwise."""
    defaults = {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": T0, "value": None,
                "session_id": None, "user_agent": "Mozilla/5.0", "batch_id": "b1", "source_file": "f1",
                "source_line": None, "ingested_at": NOW}
    rows = [tuple({**defaults, "event_id": f"e{n}", "source_line": n, **e}[c] for c in BRONZE_EVENT_COLUMNS)
            for n, e in enumerate(events)]
    schema = ", ".join(f"{c} {COLUMN_TYPES[c]}" for c in BRONZE_EVENT_COLUMNS)
    return spark.createDataFrame(rows, schema)


class Split(NamedTuple):
    kept: DataFrame
    dropped: DataFrame  # with its `reason`


def split_marked(marked):
    """A marked frame -> the rows kept (reason column dropped) and the rows dropped."""
    return Split(marked.where(F.col(T.REASON).isNull()).drop(T.REASON), marked.where(F.col(T.REASON).isNotNull()))


def dedupe(events, retry_window_seconds, published_batches=()):
    unmarked = events.withColumn(T.REASON, F.lit(None).cast("string"))
    return split_marked(mark_dedupe(unmarked, retry_window_seconds, published_batches))


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
        {"event_id": "nfc", "user_id": "jose\u0301", "item_id": "I-9", "event_type": "PageView", "ts": at(150)},
        # 31 events within 45 s across a minute boundary: 7 in one calendar minute, 24 in the next: a bot
        *({"event_id": f"edge{n}", "user_id": "u5", "ts": at(1, 50 + 1.5 * n)} for n in range(31)),
        {"event_id": "old", "ts": datetime(1994, 12, 31, tzinfo=timezone.utc)},
        {"event_id": "soon", "ts": NOW + timedelta(minutes=59)},
        {"event_id": "late", "ts": NOW + timedelta(minutes=61)},
        {"event_id": "crawler", "user_id": "u2", "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"},
        *({"event_id": f"fast{n}", "user_id": "u3", "ts": at(seconds=n)} for n in range(31)),
        {"event_id": "fast-later", "user_id": "u3", "ts": at(minutes=120)},  # a calm minute of a bot user
        *({"event_id": f"busy{n}", "user_id": "u4", "ts": at(seconds=2 * n)} for n in range(30)),  # 30: allowed
    )
    etl = etl.model_copy(update={"event_type_map": {" pageview ": "view"}, "lowercase_ids": ["item_id"]})
    split = split_marked(mark_clean(df, etl))
    assert ids(split.kept) == sorted(["ok", "nfc", "soon", *(f"busy{n}" for n in range(30))])
    assert reasons(split) == sorted([("old", "out_of_window"), ("late", "out_of_window"), ("crawler", "bot"),
                                     ("fast-later", "bot"), *((f"fast{n}", "bot") for n in range(31)),
                                     *((f"edge{n}", "bot") for n in range(31))])
    ok = split.kept.where(F.col(T.EVENT_ID) == "ok").first()
    assert (ok.user_id, ok.event_type) == ("u1", "view")
    nfc = split.kept.where(F.col(T.EVENT_ID) == "nfc").first()
    assert (nfc.user_id, nfc.item_id, nfc.event_type) == ("jos\u00e9", "i-9", "view")
    assert split.kept.count() + split.dropped.count() == df.count()


def test_nfc_in_the_jvm_equals_pythons_unicodedata(spark):
    texts = ["jose\u0301", "abc", "", "\u212b", "e\u0301\u0327", "\U0001f600x", "\ufb01", "\u1100\u1161",
             "A\u030a\u0301 mixed \u00e9 and e\u0301", "\u0958"]  # \u0958: excluded from composition
    df = spark.createDataFrame([(t,) for t in texts] + [(None,)], "s string")
    got = [r[0] for r in df.select(nfc(F.col("s"))).collect()]
    assert got == [unicodedata.normalize("NFC", t) for t in texts] + [None]


def test_events_without_id_get_the_same_content_hash(spark, tmp_path):
    etl = etl_cfg(tmp_path).etl
    df = normalise(bronze(spark, {"event_id": ""}, {"event_id": None}, {"event_id": None, "item_id": "i2"}), etl)
    got = [r[0] for r in df.select(T.EVENT_ID).collect()]
    assert got[0] == got[1] != got[2] and len(got[0]) == 32
    again = normalise(bronze(spark, {"event_id": None}), etl).select(content_hash()).first()[0]
    assert again == got[0]
    keyed = normalise(bronze(spark, {"event_id": None}), etl, key=b"k").first()
    assert keyed.user_id == pseudonym("u1", b"k") and keyed.event_id != got[0]  # the hash never sees the raw id


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


def test_a_late_redelivery_of_a_published_event_is_a_duplicate_across_batches(spark):
    df = bronze(
        spark,
        {"event_id": "a", "batch_id": "b1"},
        {"event_id": "a", "batch_id": "b2", "ingested_at": NOW + timedelta(days=1)},  # b1 is in silver already
        {"event_id": "x", "batch_id": "b2", "ts": at(5), "ingested_at": NOW + timedelta(days=1)},
        {"event_id": "x", "batch_id": "b2", "ts": at(5), "ingested_at": NOW + timedelta(days=1), "source_line": 9},
        {"event_id": "r", "batch_id": "b2", "ts": at(seconds=4), "ingested_at": NOW + timedelta(days=1)},
    )
    split = dedupe(df, retry_window_seconds=10, published_batches=["b1"])
    assert ids(split.kept) == ["a", "x"]
    assert reasons(split) == [("a", "duplicate_across_batches"), ("r", "client_retry"), ("x", "duplicate_event_id")]
    assert split.kept.where(F.col(T.EVENT_ID) == "x").first().source_line == 2  # file order picks the survivor


@pytest.mark.parametrize("window, expected", [(7, ["d-8", "d-7", "d+3"]), (None, ["d-30", "d-9", "d-8", "d-7", "d+3"])])
def test_published_ids_are_looked_for_within_the_redelivery_window(spark, window, expected):
    """A daily run's cross-batch check reads silver's ids of the days within etl.redelivery_window_days of its
    input days (the day before a replaced day is an input day too), not the whole history; None reads it all."""
    day = date(2026, 11, 20)
    silver = spark.createDataFrame(
        [(f"d{k:+d}", day + timedelta(days=k)) for k in (-30, -9, -8, -7, -1, 0, 3)],
        f"{T.EVENT_ID} string, {T.DT} date")
    plan = Plan(batches=("b1", "b2"), published=("b1",), new_batches=("b2",), days=(day,))
    got = sorted(r[T.EVENT_ID] for r in published_ids(silver, plan, window).collect())
    assert got == sorted(expected)  # d-8 is 7 days before the input day d-1, d-9 is 8; d-1 and d+0 are input days


def test_hmac_in_spark_sql_equals_pythons_hmac(spark):
    users = ["u1", "", "jos\u00e9", "\U0001f600 emoji", "x" * 300]
    df = spark.createDataFrame([(u,) for u in users] + [(None,)], "u string")
    for key in (b"secret", b"k" * 64, b"long" * 40):  # shorter than, equal to and longer than the 64-byte block
        got = [r[0] for r in df.select(hmac_sha256(F.col("u"), key)).collect()]
        assert got == [hmac.new(key, u.encode(), hashlib.sha256).hexdigest() for u in users] + [None]


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


def test_a_missing_key_stops_the_cluster_profile(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKEREC_PSEUDO_KEY", raising=False)
    cfg = load_config("cluster", [f"lake.root={tmp_path}", f"etl.pseudonymise.key_dir={tmp_path / 'keys'}"],
                      conf_dir=CONF_DIR)
    with pytest.raises(PseudonymKeyError, match="LAKEREC_PSEUDO_KEY or etl.pseudonymise.key_file"):
        load_key(cfg.etl.pseudonymise, str(tmp_path))
    monkeypatch.setenv("LAKEREC_PSEUDO_KEY", "from-env")
    assert load_key(cfg.etl.pseudonymise, str(tmp_path)) == b"from-env"
    monkeypatch.delenv("LAKEREC_PSEUDO_KEY")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    on_file = cfg.etl.pseudonymise.model_copy(update={"key_file": str(secret)})
    assert load_key(on_file, str(tmp_path)) == b"from-file"
    assert not (tmp_path / "keys").exists()  # nothing generated


def test_rebuild_option_validates_the_range(tmp_path):
    cfg = load_config("test", [f"lake.root={tmp_path}", "silver.rebuild=2026-11-01:2026-11-03"], conf_dir=CONF_DIR)
    assert cfg.silver.rebuild_range == (date(2026, 11, 1), date(2026, 11, 3))
    assert load_config("test", [f"lake.root={tmp_path}", "silver.rebuild=2026-11-02"],
                       conf_dir=CONF_DIR).silver.rebuild_range == (date(2026, 11, 2), date(2026, 11, 2))
    with pytest.raises(ConfigError, match="FROM is after TO"):
        load_config("test", [f"lake.root={tmp_path}", "silver.rebuild=2026-11-03:2026-11-01"], conf_dir=CONF_DIR)
    assert jobs.silver.OPTIONS[0].override("2026-11-01:2026-11-03") == "silver.rebuild=2026-11-01:2026-11-03"


def test_event_type_map_targets_the_vocabulary_and_widens_what_ingest_accepts(tmp_path):
    cfg = load_config("test", [f"lake.root={tmp_path}", "etl.event_type_map={pageview: view}"], conf_dir=CONF_DIR)
    assert cfg.etl.accepted_event_types == [*cfg.etl.event_types, "pageview"]
    with pytest.raises(ConfigError, match="not in event_types"):
        load_config("test", [f"lake.root={tmp_path}", "etl.event_type_map={pageview: glance}"], conf_dir=CONF_DIR)
