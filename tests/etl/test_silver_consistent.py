"""Readers of silver see one silver run's output, never a mix: a run killed between its commits leaves
silver.events new and silver.sessions old, and sequences must go on reading the last complete run's set.
"""
from __future__ import annotations

from datetime import date

import pytest

import jobs.sequences
import jobs.silver
from lakerec import tables as T
from lakerec.config import load_config
from lakerec.etl.silver import published_versions
from lakerec.lake import Lake
from tests.conftest import CONF_DIR
from tests.data.helpers import ITEMS_SCHEMA
from tests.etl.conftest import run_job
from tests.etl.test_silver_incremental import B1, B3, Killed, ts, write_batch

pytestmark = pytest.mark.slow  # three silver runs and three sequences runs


class KilledBeforeSessions(Lake):
    """A lake whose process dies once silver.events is committed, before silver.sessions (what a kill there leaves)."""

    def write(self, table, df, *args, **kwargs):
        if table == T.SILVER_SESSIONS:
            raise Killed(table)
        return super().write(table, df, *args, **kwargs)


def test_a_run_killed_between_its_commits_leaves_readers_on_the_previous_set(spark, tmp_path):
    cfg = load_config("test", [f"lake.root={tmp_path / 'lake'}", f"etl.pseudonymise.key_dir={tmp_path / 'keys'}"],
                      conf_dir=CONF_DIR)
    lake = Lake(cfg.lake.root, spark)
    items = [(f"i{n}", f"title {n}", f"about {n}", ["cat"]) for n in range(1, 7)]
    lake.write(T.SILVER_ITEMS, spark.createDataFrame(items, ITEMS_SCHEMA), mode="overwrite")
    write_batch(lake, spark, "b1", ts(date(2026, 11, 10), 0, 0), B1)
    run_job(jobs.silver, cfg, spark, lake)
    first = published_versions(lake)
    assert first == {T.SILVER_EVENTS: lake.version(T.SILVER_EVENTS), T.SILVER_SESSIONS: lake.version(T.SILVER_SESSIONS)}
    before = run_job(jobs.sequences, cfg, spark, lake).metrics

    write_batch(lake, spark, "b3", ts(date(2026, 11, 12), 0, 0), B3)  # a new user on a new day
    with pytest.raises(Killed):
        run_job(jobs.silver, cfg, spark, KilledBeforeSessions(cfg.lake.root, spark))
    assert lake.version(T.SILVER_EVENTS) == first[T.SILVER_EVENTS] + 1  # the killed run's events are the latest
    assert lake.version(T.SILVER_SESSIONS) == first[T.SILVER_SESSIONS]
    assert published_versions(lake) == first

    reader = Lake(cfg.lake.root, spark)
    during = run_job(jobs.sequences, cfg, spark, reader).metrics
    assert reader.reads[T.SILVER_EVENTS] == first[T.SILVER_EVENTS]
    assert (during["users"], during["interactions"]) == (before["users"], before["interactions"])

    run_job(jobs.silver, cfg, spark, lake)  # the rerun completes the killed run
    after = published_versions(lake)
    assert after == {T.SILVER_EVENTS: lake.version(T.SILVER_EVENTS), T.SILVER_SESSIONS: lake.version(T.SILVER_SESSIONS)}
    assert after[T.SILVER_EVENTS] > first[T.SILVER_EVENTS] + 1
    reader = Lake(cfg.lake.root, spark)
    recovered = run_job(jobs.sequences, cfg, spark, reader).metrics
    assert reader.reads[T.SILVER_EVENTS] == after[T.SILVER_EVENTS]
    assert (recovered["users"], recovered["interactions"]) == (before["users"] + 1, before["interactions"] + 1)
