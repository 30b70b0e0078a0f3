"""Items: the catalog into silver.items, bad rows quarantined, the last row of a repeated item_id wins."""
from datetime import date

import jobs.items
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.etl.items import ITEM_COLUMNS
from lakerec.lake import Lake
from tests.etl.conftest import etl_cfg, run_job


def test_demo_catalog(demo_lake):
    made, got = demo_lake.results["generate"].metrics, demo_lake.results["items"].metrics
    assert got["rows_items"] == made["items"]
    assert got["duplicates"] == made["items_dirt.duplicates"] >= 1
    for reason in ("malformed", "missing_title", "missing_item_id"):
        assert got[f"quarantined.{reason}"] == made[f"items_dirt.{reason}"] == 1
    assert got["rows_read"] == got["rows_items"] + got["duplicates"] + got["rows_quarantined"]
    items = demo_lake.lake.read(T.SILVER_ITEMS)
    assert tuple(items.columns) == ITEM_COLUMNS
    assert dict(items.dtypes)[T.CATEGORIES] == "array<string>"
    assert items.select(T.ITEM_ID).distinct().count() == made["items"]
    revised = items.where(F.col(T.DESCRIPTION).endswith("(revised)")).count()
    assert revised == made["items_dirt.duplicates"]  # the later row won
    assert items.where(F.size(T.CATEGORIES) == 0).count() == 0


def test_pipe_categories_latin1_and_rerun_replaces_item_quarantine(tmp_path, spark):
    path = tmp_path / "catalog.csv"
    path.write_bytes("id|name|tags\n"
                     "1|Café Noir|noir\n"
                     "2||comedy\n"                 # missing_title
                     "1|Café Noir (director's cut)|\"noir | drama\"\n".encode("latin-1"))
    cfg = etl_cfg(tmp_path / "lake", f"input.items.path={path}", "input.items.format=csv",
                  "input.items.delimiter='|'", "input.items.encoding=latin-1",
                  "input.items.mapping={item_id: id, title: name, categories: tags}")
    for _ in range(2):
        m = run_job(jobs.items, cfg, spark).metrics
        assert (m["rows_read"], m["rows_items"], m["duplicates"], m["quarantined.missing_title"]) == (3, 1, 1, 1)
    lake = Lake(cfg.lake.root, spark)
    row = lake.read(T.SILVER_ITEMS).first()
    assert (row.item_id, row.title, row.categories) == ("1", "Café Noir (director's cut)", ["noir", "drama"])
    assert lake.read(T.BRONZE_QUARANTINE).where(F.col(T.SOURCE) == "items").count() == 1  # replaced, not added


def test_category_flags(tmp_path, spark):
    path = tmp_path / "catalog.tsv"
    path.write_text("7\tThe Flag Film\t1\t0\t1\n")
    cfg = etl_cfg(tmp_path / "lake", f"input.items.path={path}", "input.items.format=tsv", "input.items.header=false",
                  "input.items.columns=[item_id, title, f0, f1, f2]",
                  "input.items.category_flags={f0: Action, f1: Drama, f2: Sci-Fi}")
    run_job(jobs.items, cfg, spark)
    assert Lake(cfg.lake.root, spark).read(T.SILVER_ITEMS).first().categories == ["Action", "Sci-Fi"]


def test_published_dates_in_the_configured_formats_bad_ones_quarantined(tmp_path, spark):
    path = tmp_path / "catalog.csv"
    path.write_text("id|name|released\n"
                    "1|Old Film|01-Jan-1995\n"
                    "2|Undated Film|\n"              # no date: fine
                    "3|New Film|2026-11-20\n"        # the second format
                    "4|Broken Date|someday\n")       # bad_published
    cfg = etl_cfg(tmp_path / "lake", f"input.items.path={path}", "input.items.format=csv",
                  "input.items.delimiter='|'", "input.items.mapping={item_id: id, title: name, published: released}",
                  "input.items.date_formats=[dd-MMM-yyyy, yyyy-MM-dd]")
    m = run_job(jobs.items, cfg, spark).metrics
    assert (m["rows_items"], m["quarantined.bad_published"]) == (3, 1)
    dates = {r.item_id: r.published for r in Lake(cfg.lake.root, spark).read(T.SILVER_ITEMS).collect()}
    assert dates == {"1": date(1995, 1, 1), "2": None, "3": date(2026, 11, 20)}
