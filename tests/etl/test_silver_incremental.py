"""Incremental silver on one small real lake, batch after batch: late data, retries and re-deliveries across
batches, midnight sessions, reruns, a rebuild, a run killed before it recorded its batches, a failing gate,
and pseudonymous user ids. The module builds the lake once (`history`); the tests read what each step left."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import mlflow
import pytest
from pyspark.sql import functions as F

import jobs.silver
from lakerec import tables as T
from lakerec.config import load_config
from lakerec.context import run_stage
from lakerec.etl.pseudonym import generated_key_path, load_key, pseudonym
from lakerec.etl.quality import QualityGateError
from lakerec.etl.silver import PUBLISHED_TABLES, published_versions
from lakerec.lake import Lake
from tests.conftest import CONF_DIR
from tests.etl.conftest import run_job
from tests.etl.test_silver import BRONZE_EVENT_COLUMNS, COLUMN_TYPES

pytestmark = pytest.mark.slow  # eight silver runs on one lake

D1, D2, D3, D8 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 8)


def ts(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=timezone.utc)


def write_batch(lake: Lake, spark, batch: str, ingested: datetime, events: list[tuple]) -> None:
    """Append one bronze batch: events are (event_id, user, item, type, ts), plus an optional user agent."""
    rows = []
    for line, (event_id, user, item, kind, at, *agent) in enumerate(events):
        row = {"event_id": event_id, "user_id": user, "item_id": item, "event_type": kind, "ts": at, "value": None,
               "session_id": None, "user_agent": agent[0] if agent else "Mozilla/5.0", "batch_id": batch,
               "source_file": f"{batch}.jsonl", "source_line": line, "ingested_at": ingested}
        rows.append(tuple(row[c] for c in BRONZE_EVENT_COLUMNS))
    schema = ", ".join(f"{c} {COLUMN_TYPES[c]}" for c in BRONZE_EVENT_COLUMNS)
    lake.write(T.BRONZE_EVENTS, spark.createDataFrame(rows, schema), mode="append")


B1 = [  # ingested on 2026-11-10
    ("u1-a", "u1", "i1", "view", ts(D1, 23, 50)),
    ("u1-r", "u1", "i1", "view", ts(D1, 23, 50, 4)),        # a client retry within the batch
    ("u1-b", "u1", "i2", "view", ts(D2, 0, 10)),             # 20 minutes later, after midnight: same session
    ("u2-a", "u2", "i1", "view", ts(D1, 10, 0)),
    ("u2-a", "u2", "i1", "view", ts(D1, 10, 0)),             # delivered twice in the batch
    ("u2-b", "u2", "i3", "view", ts(D2, 10, 0)),
    ("u3-a", "u3", "i4", "click", ts(D3, 12, 0)),
    ("u3-b", "u3", "i5", "view", ts(D3, 12, 5)),
    ("u6-a", "u6", "i1", "view", ts(D8, 9, 0)),
    ("u7-b", "u7", "i2", "view", ts(D2, 0, 20)),
    ("old", "u1", "i1", "view", datetime(1990, 1, 1, tzinfo=timezone.utc)),  # outside the valid window
]
B2 = [  # ingested on 2026-11-11: late data and repeats of b1
    ("u3-a", "u3", "i4", "click", ts(D3, 12, 0)),            # a late re-delivery of a published event
    ("u3-r", "u3", "i5", "view", ts(D3, 12, 5, 3)),          # a retry of a published event, in the next batch
    ("u4-a", "u4", "i6", "view", ts(D1, 8, 0)),              # late data for D1
    ("u7-a", "u7", "i1", "view", ts(D1, 23, 55)),            # late: merges with u7's session after midnight
]
B3 = [("u8-a", "u8", "i1", "view", ts(D8, 11, 0))]
B4 = [(f"bot{n}", "u9", "i1", "view", ts(D8, 12, 0, n), "Mozilla/5.0") for n in range(40)]  # a fast bot


class Killed(BaseException):
    """Not an Exception: nothing in the job may catch it, as nothing survives a kill."""


class KilledBeforeBatches(Lake):
    """A lake whose process dies just before silver.batches is committed (what a kill there leaves)."""

    def write(self, table, df, *args, **kwargs):
        if table == T.SILVER_BATCHES:
            raise Killed(table)
        return super().write(table, df, *args, **kwargs)


@dataclass
class History:
    cfg: object
    lake: Lake
    key: bytes
    results: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)   # step -> sorted silver.events rows
    files: dict = field(default_factory=dict)    # step -> {dt: data files}
    versions: dict = field(default_factory=dict)  # step -> {table: version}
    quality: dict = field(default_factory=dict)   # step -> {metric: value} of the step's silver run
    sessions: dict = field(default_factory=dict)  # step -> {session_id: (n_events, dt)}
    batches: dict = field(default_factory=dict)   # step -> silver.batches' batch ids
    published: dict = field(default_factory=dict)  # step -> the versions the last complete run published
    gate_error: Exception | None = None


def snapshot(h: History, step: str) -> None:
    events = h.lake.read(T.SILVER_EVENTS)
    h.events[step] = sorted(tuple(r) for r in events.orderBy(T.EVENT_ID).collect())
    h.files[step] = {}
    for f in h.lake.files(T.SILVER_EVENTS):
        h.files[step].setdefault(f.split("/dt=")[1].split("/")[0], set()).add(f)
    h.versions[step] = {t: h.lake.version(t) for t in (T.SILVER_EVENTS, T.SILVER_SESSIONS, T.SILVER_BATCHES)}
    h.batches[step] = sorted(r[T.BATCH_ID] for r in h.lake.read(T.SILVER_BATCHES).collect())
    h.published[step] = published_versions(h.lake)
    h.sessions[step] = {r[T.SESSION_ID]: (r["n_events"], r[T.DT]) for r in h.lake.read(T.SILVER_SESSIONS).collect()}
    report = h.lake.read(T.SILVER_QUALITY)
    latest = report.where(F.col(T.PROCESSED_AT) == report.agg(F.max(T.PROCESSED_AT)).first()[0])
    h.quality[step] = {r[T.METRIC]: r[T.VALUE] for r in latest.collect()}


@pytest.fixture(scope="module")
def history(spark, tmp_path_factory) -> History:
    root = tmp_path_factory.mktemp("incremental")
    cfg = load_config("test", [f"lake.root={root / 'lake'}", f"etl.pseudonymise.key_dir={root / 'keys'}"],
                      conf_dir=CONF_DIR)
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    h = History(cfg, lake, load_key(cfg.etl.pseudonymise, lake.root))
    write_batch(lake, spark, "b1", ts(date(2026, 11, 10), 0, 0), B1)
    h.results["first"] = run_job(jobs.silver, cfg, spark, lake)
    snapshot(h, "first")
    h.results["again"] = run_job(jobs.silver, cfg, spark, lake)
    snapshot(h, "again")
    write_batch(lake, spark, "b2", ts(date(2026, 11, 11), 0, 0), B2)
    h.results["late"] = run_job(jobs.silver, cfg, spark, lake)
    snapshot(h, "late")
    rebuild = load_config("test", [f"lake.root={root / 'lake'}", f"etl.pseudonymise.key_dir={root / 'keys'}",
                                   f"silver.rebuild={D1}:{D3}"], conf_dir=CONF_DIR)
    for k in (1, 2):
        h.results[f"rebuild{k}"] = run_job(jobs.silver, rebuild, spark, lake)
        snapshot(h, f"rebuild{k}")
    write_batch(lake, spark, "b3", ts(date(2026, 11, 12), 0, 0), B3)
    with pytest.raises(Killed):
        run_job(jobs.silver, cfg, spark, KilledBeforeBatches(cfg.lake.root, spark, cfg.lake.engine))
    snapshot(h, "killed")
    h.results["recovered"] = run_job(jobs.silver, cfg, spark, lake)
    snapshot(h, "recovered")
    write_batch(lake, spark, "b4", ts(date(2026, 11, 12), 1, 0), B4)
    strict = load_config("test", [f"lake.root={root / 'lake'}", f"etl.pseudonymise.key_dir={root / 'keys'}",
                                  "etl.gates.max_drop_share=0.5"], conf_dir=CONF_DIR)
    with pytest.raises(QualityGateError) as e:
        run_stage("silver", jobs.silver.run, strict, spark)
    h.gate_error = e.value
    snapshot(h, "gate")
    return h


def by_id(rows) -> dict:
    return {r[0]: r for r in rows}


def session_of(h: History, step: str) -> dict[str, str]:
    return {r[0]: r[6] for r in h.events[step]}


def test_first_run_keeps_the_clean_events_and_counts_each_drop(history):
    got = history.results["first"].metrics
    assert sorted(by_id(history.events["first"])) == ["u1-a", "u1-b", "u2-a", "u2-b", "u3-a", "u3-b", "u6-a", "u7-b"]
    assert (got["rows_in"], got["rows_out"]) == (len(B1), 8)
    assert (got["dropped.client_retry"], got["dropped.duplicate_event_id"], got["dropped.out_of_window"]) == (1, 1, 1)
    sessions = session_of(history, "first")
    assert sessions["u1-a"] == sessions["u1-b"]  # crosses midnight, one session
    assert history.files["first"].keys() == {str(D1), str(D2), str(D3), str(D8)}


def test_sessions_match_the_events_after_every_step(history):
    for step, events in history.events.items():
        per_session = {}
        for row in events:
            per_session[row[6]] = per_session.get(row[6], 0) + 1
        assert {s: n for s, (n, _) in history.sessions[step].items()} == per_session, step
    u7 = session_of(history, "late")["u7-b"]
    assert history.sessions["late"][u7] == (2, D1)  # started before midnight: filed under D1


def test_a_rerun_without_new_batches_changes_nothing(history):
    assert history.results["again"].skipped == "no new bronze batches"
    assert history.events["again"] == history.events["first"]
    assert history.versions["again"] == history.versions["first"]


def test_late_data_and_repeats_across_batches(history):
    got = history.results["late"].metrics
    assert (got["dropped.duplicate_across_batches"], got["dropped.client_retry"]) == (1, 2)  # u1-r again, u3-r
    assert got["days_rewritten"] == 3  # D1 and D3 touched, D2 follows D1; D8 stays as it was
    assert history.files["late"][str(D8)] == history.files["first"][str(D8)]
    events = by_id(history.events["late"])
    assert "u3-r" not in events and "u4-a" in events and len(events) == 10
    before, after = session_of(history, "first"), session_of(history, "late")
    assert after["u7-a"] == after["u7-b"] != before["u7-b"]  # the late event re-sessionized u7's next day
    assert all(after[e] == before[e] for e in before if not e.startswith("u7"))  # other users keep their ids
    assert (history.quality["first"]["share.late"], history.quality["late"]["share.late"]) == (0.0, 1.0)  # u4, u7
    assert history.quality["late"]["late.events"] == 2
    assert history.quality["late"]["rows.in"] == got["rows_in"] == 13  # D1-D3 of b1 and b2
    assert history.quality["late"]["null_rate.value"] == 1.0 and history.quality["late"]["null_rate.ts"] == 0.0
    assert history.quality["first"]["session_events.max"] == 2 and history.quality["late"]["gate.max_drop_share"] == 0


def test_rebuild_recomputes_exactly_the_range_and_gives_the_same_rows(history):
    for k in (1, 2):
        assert history.events[f"rebuild{k}"] == history.events["late"]
        assert history.results[f"rebuild{k}"].metrics["days_rewritten"] == 3
        assert history.files[f"rebuild{k}"][str(D8)] == history.files["late"][str(D8)]
        assert history.files[f"rebuild{k}"][str(D1)] != history.files["late"][str(D1)]  # really rewritten
    # each rebuild records no batch but ends with its commit to silver.batches naming what it published
    assert history.versions["rebuild2"][T.SILVER_BATCHES] == history.versions["late"][T.SILVER_BATCHES] + 2
    assert history.batches["rebuild2"] == history.batches["late"]
    assert history.published["rebuild2"] == {t: history.versions["rebuild2"][t] for t in PUBLISHED_TABLES}


def test_a_run_killed_before_recording_its_batches_is_redone_to_the_same_silver(history):
    assert history.versions["killed"][T.SILVER_BATCHES] == history.versions["rebuild2"][T.SILVER_BATCHES]
    assert history.published["killed"] == history.published["rebuild2"]  # readers keep the last complete set
    assert history.published["recovered"] == {t: history.versions["recovered"][t] for t in PUBLISHED_TABLES}
    assert "u8-a" in by_id(history.events["killed"])
    assert history.results["recovered"].metrics["batches_new"] == 1
    assert history.events["recovered"] == history.events["killed"]
    assert len(history.events["recovered"]) == len(history.events["late"]) + 1


def test_a_failing_gate_publishes_nothing_and_says_why(history):
    assert "max_drop_share FAILED: share.dropped" in str(history.gate_error)
    assert history.versions["gate"] == history.versions["recovered"]
    assert history.events["gate"] == history.events["recovered"]
    report = history.lake.read(T.SILVER_QUALITY).where(F.col(T.METRIC) == "gate.max_drop_share")
    failed = [r for r in report.collect() if r[T.VALUE] == 1.0]
    assert len(failed) == 1 and "limit 0.5000" in failed[0][T.DETAIL]
    client = mlflow.MlflowClient(tracking_uri=history.cfg.tracking_uri)
    run = client.get_run(failed[0][T.RUN_ID])
    assert run.info.status == "FAILED"
    assert run.data.metrics["quality.gate.max_drop_share"] == 1.0
    assert run.data.metrics["quality.dropped.bot"] == len(B4)
    assert "max_drop_share FAILED" in run.data.tags["lakerec.quality.gates"]
    artifacts = client.list_artifacts(run.info.run_id, "quality")
    assert [a.path for a in artifacts] == ["quality/silver_quality.png"]


def test_user_ids_are_keyed_pseudonyms(history):
    users = {r[1] for r in history.events["recovered"]}
    assert users == {pseudonym(f"u{n}", history.key) for n in (1, 2, 3, 4, 6, 7, 8)}
    assert history.key == load_key(history.cfg.etl.pseudonymise, history.lake.root)  # one key per lake, kept
    path = generated_key_path(history.cfg.etl.pseudonymise, history.lake.root)
    assert path.stat().st_mode & 0o777 == 0o600 and str(path).startswith(str(history.cfg.etl.pseudonymise.key_dir))
