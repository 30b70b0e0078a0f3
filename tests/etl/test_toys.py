"""Amazon-style sequence files (`user item item ...`) through the real ETL with conf/sources/toys.yaml: every
line entry reaches silver.sequences (no bot, retry or window rule drops one) and the leave-last-out split is
the published protocol's (last item test, second-last valid)."""
import csv
import os

import jobs.ingest
import jobs.items
import jobs.sequences
import jobs.silver
import pytest

from lakerec import tables as T
from lakerec.etl.seqfile import convert
from lakerec.lake import Lake
from tests.conftest import CONF_DIR, REPO
from tests.etl.conftest import etl_cfg, run_job

TOYS = str(CONF_DIR / "sources" / "toys.yaml")
# user 7 buys item 3 twice in a row (a retry rule would drop it), user 9 repeats 1 later, user 8 is long
LINES = ["7 1 2 3 3 4", "8 " + " ".join(str(i) for i in range(1, 61)), "9 5 1 6 1", ""]


def test_converter_writes_one_event_per_entry_in_order(tmp_path):
    src = tmp_path / "seq.txt"
    src.write_text("1 10 11 10\n\n2 12 13\n")
    stats = convert(src, tmp_path / "ev" / "events.csv", tmp_path / "it" / "items.csv", step_minutes=60)
    assert stats == {"users": 2, "items": 4, "interactions": 5, "longest": 3}
    rows = list(csv.DictReader(open(tmp_path / "ev" / "events.csv")))
    assert [(r["event_id"], r["item_id"], r["ts"]) for r in rows[:3]] == [
        ("1-0", "10", "2000-01-01T00:00:00Z"), ("1-1", "11", "2000-01-01T01:00:00Z"),
        ("1-2", "10", "2000-01-01T02:00:00Z")]
    items = list(csv.DictReader(open(tmp_path / "it" / "items.csv")))
    assert [r["item_id"] for r in items] == ["10", "11", "12", "13"]
    src.write_text("3\n")
    with pytest.raises(ValueError, match="has no item"):
        convert(src, tmp_path / "x.csv")


@pytest.mark.slow
def test_every_entry_reaches_sequences_with_the_published_split(tmp_path, spark):
    src = tmp_path / "toys.txt"
    src.write_text("\n".join(LINES))
    raw = tmp_path / "raw"
    expected = convert(src, raw / "events" / "events.csv", raw / "items" / "items.csv")["interactions"]
    assert expected == 5 + 60 + 4
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={raw / 'events'}", f"input.items.path={raw / 'items'}",
                  config_files=(TOYS,))
    lake = Lake(cfg.lake.root, spark, cfg.lake.engine)
    ingest = run_job(jobs.ingest, cfg, spark, lake).metrics
    assert (ingest["rows_bronze"], ingest["rows_quarantined"]) == (expected, 0)
    run_job(jobs.items, cfg, spark, lake)
    silver = run_job(jobs.silver, cfg, spark, lake).metrics
    assert (silver["rows_in"], silver["rows_out"]) == (expected, expected)
    seq = run_job(jobs.sequences, cfg, spark, lake).metrics
    assert seq["interactions"] == expected and seq["users"] == 3

    item_of = {r[T.ITEM_IDX]: r[T.ITEM_ID] for r in lake.read(T.SILVER_ITEM_INDEX).collect()}
    key = lake.read(T.SILVER_SEQUENCES).collect()
    got = sorted(([item_of[i] for i in r[T.HISTORY]], item_of[r[T.VALID_TARGET]], item_of[r[T.TEST_TARGET]])
                 for r in key)
    want = sorted((line.split()[1:], line.split()[-2], line.split()[-1]) for line in LINES if line)
    assert got == want


def test_shipped_config_points_inside_the_default_lake():
    cfg = etl_cfg(REPO / "lake", config_files=(TOYS,))
    assert cfg.input.events.path == "lake/raw/toys/events" and cfg.etl.retry_window_seconds == 0
    assert os.path.basename(cfg.input.items.path) == "items"
