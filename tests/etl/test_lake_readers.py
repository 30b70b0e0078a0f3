"""Every table the demo's ETL and sequences stages write reads with plain deltalake and with Spark.

Under pyarrow 14 deltalake 1.6 could not read a partitioned table at all (lakerec.arrow_compat says why), so
silver.events, silver.sessions and bronze.quarantine failed while the unpartitioned tables read.
"""
import shutil

import pytest

import jobs.sequences
from lakerec import tables as T
from lakerec.lake import Lake
from tests.etl.conftest import run_job
from tests.lake.readers import check_readable, lake_tables, plain_read


@pytest.mark.slow
def test_every_table_reads_with_deltalake_and_spark(demo_lake, spark, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(demo_lake.cfg.lake.root, root)  # the demo lake is shared read-only: sequences writes a copy
    cfg = demo_lake.cfg.model_copy(update={"lake": demo_lake.cfg.lake.model_copy(update={"root": str(root)})})
    lake = Lake(str(root), spark)
    run_job(jobs.sequences, cfg, spark, lake)

    tables = lake_tables(root)
    assert {T.BRONZE_EVENTS, T.BRONZE_QUARANTINE, T.SILVER_EVENTS, T.SILVER_SESSIONS, T.SILVER_BATCHES,
            T.SILVER_QUALITY, T.SILVER_ITEMS, T.SILVER_ITEM_INDEX, T.SILVER_SEQUENCES, T.SILVER_TRAIN_WINDOWS
            } <= set(tables)
    counts = check_readable(lake, tables)
    assert all(counts[t] > 0 for t in (T.BRONZE_QUARANTINE, T.SILVER_EVENTS, T.SILVER_SESSIONS))
    assert plain_read(lake, tables) == {t: [n, n] for t, n in counts.items()}
