"""Reading every table of a lake with the readers the README promises: plain deltalake and Spark (the Lake).

Tables are found on disk (each folder with a _delta_log), not listed by hand, so a table a stage starts writing
later is checked without editing a test.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import deltalake

from lakerec.lake import Lake
from tests.conftest import REPO

# A fresh interpreter of the project's environment that imports nothing of lakerec itself: what a user types.
# It ends with os._exit once its line is flushed: a normal exit can abort in deltalake/pyarrow's native teardown
# ("terminate called without an active exception", see tests/score/test_score_job.py), after the reads.
PLAIN_READER = """
import json, os, sys
from deltalake import DeltaTable
out = {}
for path in sys.argv[1:]:
    table = DeltaTable(path)
    out[path] = [len(table.to_pandas()), table.to_pyarrow_table().num_rows]
print(json.dumps(out), flush=True)
os._exit(0)
"""


def lake_tables(root: str | Path) -> list[str]:
    """'layer.name' of every Delta table under the lake root."""
    return sorted(f"{log.parent.parent.name}.{log.parent.name}" for log in Path(root).glob("*/*/_delta_log"))


def check_readable(lake: Lake, tables: list[str]) -> dict[str, int]:
    """Reads each table with deltalake (to_pandas, to_pyarrow_table) and with Spark, asserts they agree on the
    rows, the columns and the partition values; returns the row counts."""
    counts = {}
    for table in tables:
        delta = deltalake.DeltaTable(lake.uri(table))
        frame = delta.to_pandas()
        arrow = delta.to_pyarrow_table()
        spark = lake.read(table)
        assert len(frame) == arrow.num_rows == spark.count(), table
        assert list(frame.columns) == arrow.column_names == spark.columns, table
        for column in delta.metadata().partition_columns:  # filled in from the log by deltalake, folders by Spark
            assert Counter(map(str, frame[column])) == Counter(str(r[0]) for r in spark.select(column).collect()), \
                (table, column)
        counts[table] = len(frame)
    return counts


def plain_read(lake: Lake, tables: list[str]) -> dict[str, list[int]]:
    """Row counts from PLAIN_READER in a new process (to_pandas, to_pyarrow_table), by table."""
    paths = {lake.uri(t): t for t in tables}
    out = subprocess.run([sys.executable, "-c", PLAIN_READER, *paths], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, (
        f"plain deltalake cannot read the lake (is this environment set up by scripts/setup.sh, which installs "
        f"lakerec-arrow-compat.pth?):\n{out.stderr[-3000:]}")
    return {paths[p]: rows for p, rows in json.loads(out.stdout).items()}
