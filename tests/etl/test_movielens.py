"""MovieLens 100K loads through conf/sources/movielens.yaml, with no code (skipped where the data is absent)."""
import os

import jobs.ingest
import jobs.items
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.lake import Lake
from tests.conftest import CONF_DIR, REPO
from tests.etl.conftest import etl_cfg, run_job

MOVIELENS = str(CONF_DIR / "sources" / "movielens.yaml")


def test_shipped_paths_point_at_the_shared_copy(ml100k):
    cfg = etl_cfg(REPO / "lake", config_files=(MOVIELENS,))
    assert os.path.samefile(REPO / cfg.input.events.path, ml100k / "u.data")  # relative to the repository root
    assert os.path.samefile(REPO / cfg.input.items.path, ml100k / "u.item")


def test_ratings_and_movies(ml100k, tmp_path, spark):
    # the shipped mapping; only the location is made absolute, so the test runs from any directory
    cfg = etl_cfg(tmp_path / "lake", f"input.events.path={ml100k / 'u.data'}",
                  f"input.items.path={ml100k / 'u.item'}", config_files=(MOVIELENS,))
    m = run_job(jobs.ingest, cfg, spark).metrics
    assert (m["rows_read"], m["rows_bronze"], m["rows_quarantined"]) == (100_000, 100_000, 0)
    lake = Lake(cfg.lake.root, spark)
    bronze = lake.read(T.BRONZE_EVENTS)
    stats = bronze.agg(F.countDistinct(T.USER_ID), F.countDistinct(T.ITEM_ID), F.min(T.TS), F.max(T.TS),
                       F.sum(T.VALUE), F.countDistinct(T.EVENT_TYPE)).first()
    assert stats[:2] == (943, 1682)
    assert (stats[2].year, stats[3].year) == (1997, 1998) and stats[5] == 1
    assert 350_000 < stats[4] < 360_000  # ratings 1-5, mean about 3.53

    m = run_job(jobs.items, cfg, spark).metrics
    assert (m["rows_items"], m["rows_quarantined"], m["duplicates"]) == (1682, 0, 0)
    items = lake.read(T.SILVER_ITEMS)
    toy = items.where(F.col(T.ITEM_ID) == "1").first()
    assert (toy.title, toy.categories) == ("Toy Story (1995)", ["Animation", "Children's", "Comedy"])
    assert toy.published.isoformat() == "1995-01-01"  # release_date 01-Jan-1995
    assert items.where(F.col(T.PUBLISHED).isNull()).count() == 1  # item 267 has no release date
    assert items.where(F.col(T.TITLE).contains("é")).count() > 0  # latin-1 decoded
    assert items.where(F.size(T.CATEGORIES) == 0).count() == 0
