"""A new user's first run: `lakerec run` from a folder of their own (no conf/, no pipelines/ there, no
--conf-dir or --pipeline) on an interaction log of ids alone, with no item catalog, its output to a file."""
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from deltalake import DeltaTable

from tests.conftest import REPO

USERS, ITEMS, EVENTS = 30, 12, 8


def _id_only_events(path) -> None:
    """Each user walks the ring of items from a start of their own, one event every five minutes."""
    t0 = datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    with open(path, "w") as f:
        for u in range(USERS):
            for k in range(EVENTS):
                ts = t0 + timedelta(hours=u, minutes=5 * k)
                f.write(json.dumps({"user_id": f"u{u}", "item_id": f"i{(u + k) % ITEMS}", "event_type": "view",
                                    "ts": ts.isoformat()}) + "\n")


@pytest.mark.slow
def test_lakerec_runs_from_any_folder_on_ids_alone(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    _id_only_events(work / "events.jsonl")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lib'}{os.pathsep}{REPO}"}  # this tree's lib first
    for variable in ("MLFLOW_TRACKING_URI", "LAKEREC_CONF_DIR", "LAKEREC_LAKE_ROOT"):
        env.pop(variable, None)
    with open(tmp_path / "run.log", "w") as log:  # a file, not a terminal: what a scheduler's log gets
        done = subprocess.run([sys.executable, "-m", "jobs", "run", "--profile", "test",
                               "--set", "input.events.path=events.jsonl", "--set", "lake.root=lake",
                               "--set", "evaluate.baselines=[pop]", "--set", "train.epochs=2"],
                              cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    out = (tmp_path / "run.log").read_text()
    assert done.returncode == 0, out[-4000:]
    assert "[items] skipped: no item catalog" in out
    assert "[train] epoch 1/2" in out and "[train] epoch 2/2" in out  # a line per epoch without a terminal
    topn = DeltaTable(str(work / "lake" / "gold" / "topn")).to_pandas()
    assert topn["user_id"].nunique() == USERS  # every user of the log gets recommendations
    assert set(topn["item_id"]) <= {f"i{n}" for n in range(ITEMS)}
    assert not (work / "lake" / "silver" / "items").exists()  # no catalog was made up
