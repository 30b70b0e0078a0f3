"""benchmarks/quality.py and its protocol: the pieces that need neither RecBole nor a lakerec run."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


Q = _load("quality", BENCH / "quality.py")
P = sys.modules["protocol"]  # the module the benchmark imported from benchmarks/peers


def write_udata(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("".join(f"{u}\t{i}\t4\t{ts}\n" for u, i, ts in rows))
    return path


# user 1 rates a, b, c at once (ties: file order decides), then d; user 2 has two events only (no split)
TINY = [("1", "b", 100), ("2", "x", 50), ("1", "a", 100), ("1", "d", 300), ("1", "c", 100), ("2", "y", 40)]


def test_histories_order_by_time_then_file_line(tmp_path):
    rows = P.read_udata(write_udata(tmp_path / "u.data", TINY))
    histories = P.user_histories(rows)
    assert histories == {"1": ["b", "a", "c", "d"], "2": ["y", "x"]}
    assert P.leave_one_out(histories) == {"1": ("c", "d")}


def test_split_mismatches_counts_differing_and_missing_users():
    expected = {"1": ("c", "d"), "2": ("x", "y"), "3": ("p", "q")}
    other = {"1": ("c", "d"), "2": ("y", "x"), "4": ("r", "s")}  # 2 differs, 3 missing, 4 extra
    assert P.split_mismatches(expected, other) == 3
    assert P.split_mismatches(expected, dict(expected)) == 0


def test_read_udata_names_a_bad_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n1\t2\t3\n")
    with pytest.raises(ValueError, match=r"u.data:2: expected 4"):
        P.read_udata(path)


def test_ranks_exclude_history_and_count_ties_against_the_target():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1, 0.7],
                           [0.2, 0.2, 0.2, 0.2, 0.2]])
    excluded = torch.tensor([[True, False, False, False, False],  # item 0 (history) out: 0.7 above, 0.5 tie
                             [False, True, True, False, False]])  # target 1 is in the history: a miss
    ranks = P.target_ranks(scores, torch.tensor([1, 1]), excluded)
    assert ranks.tolist() == [3, torch.iinfo(torch.int64).max]  # row 2: never within any k


def test_ranking_metrics_by_hand():
    m = P.ranking_metrics([1, 3, 12, 30])
    assert m["hr@5"] == pytest.approx(0.5) and m["hr@20"] == pytest.approx(0.75)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(13)) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)  # ranks past 10 count 0
    assert P.coverage([[1, 2], [2, 3]], n_items=6) == pytest.approx(0.5)


def test_cache_key_follows_scripts_data_and_parameters(tmp_path, monkeypatch):
    data = write_udata(tmp_path / "u.data", TINY)
    script = tmp_path / "script.py"
    script.write_text("x = 1\n")
    key = P.cache_key([script, data], {"overrides": []})
    assert key == P.cache_key([script, data], {"overrides": []})
    assert key != P.cache_key([script, data], {"overrides": ["epochs=1"]})
    script.write_text("x = 2\n")
    assert key != P.cache_key([script, data], {"overrides": []})
    monkeypatch.setattr(Q, "PEER_CACHE", tmp_path)
    path = Q.peer_cache_path(data, [])
    assert path.parent == tmp_path and path.name.startswith("recbole_sasrec-") and path.suffix == ".json"
    assert path != Q.peer_cache_path(data, ["epochs=1"])


def test_recbole_result_reuses_the_cache_unless_fresh(tmp_path, monkeypatch):
    data = write_udata(tmp_path / "u.data", TINY)
    monkeypatch.setattr(Q, "PEER_CACHE", tmp_path / "cache")
    monkeypatch.setattr(Q, "PEER_PYTHON", tmp_path / "no-venv" / "python")
    result, note = Q.recbole_result(data, fresh=False)
    assert result is None and "setup_recbole.sh" in note  # nothing cached, no venv: a clear skip
    Q.peer_cache_path(data, []).parent.mkdir()
    Q.peer_cache_path(data, []).write_text('{"test": {"ndcg@10": 0.1}, "seconds_to_best": 5.0}')
    result, note = Q.recbole_result(data, fresh=False)
    assert Q.recbole_row(result) == {"ndcg@10": 0.1, "seconds_to_best": 5.0} and note.startswith("RecBole: cached")
    assert Q.recbole_result(data, fresh=True)[0] is None  # --fresh-peer ignores the cache (and needs the venv)


def test_lakerec_rows_read_both_metric_namings():
    evaluate = {"test.sasrec.ndcg_10": 0.12, "test.sasrec.mrr_10": 0.05, "test.als.ndcg_10": 0.08,
                "test.pop.ndcg_10": 0.04, "test.sasrec.slice.head.ndcg_10": 0.2, "test_users": 943.0}
    rows = Q.lakerec_rows(evaluate, {"seconds_to_best": 90.0, "train_seconds": 200.0, "epochs_run": 10.0})
    assert rows["sasrec"] == {"ndcg@10": 0.12, "mrr@10": 0.05, "seconds_to_best": 90.0, "seconds_per_epoch": 20.0}
    assert rows["als"] == {"ndcg@10": 0.08} and set(rows) == {"sasrec", "als", "pop"}
    assert Q.best_lakerec(rows) == ("sasrec", rows["sasrec"])

    older = Q.lakerec_rows({"test_ndcg_10": 0.09, "test_mrr": 0.07, "pop_test_ndcg_10": 0.04}, {"train_seconds": 300.0})
    assert older == {"sasrec": {"ndcg@10": 0.09, "seconds_to_best": 300.0}, "pop": {"ndcg@10": 0.04}}


def test_over_seeds_is_mean_and_sample_sd_per_row_and_metric():
    runs = [{"sasrec": {"ndcg@10": 0.10}, "pop": {"ndcg@10": 0.04}},
            {"sasrec": {"ndcg@10": 0.12}, "pop": {"ndcg@10": 0.04}},
            {"sasrec": {"ndcg@10": 0.14}, "pop": {"ndcg@10": 0.04}}]
    agg = Q.over_seeds(runs)
    assert agg["sasrec"]["ndcg@10"] == pytest.approx((0.12, 0.02)) and agg["pop"]["ndcg@10"] == pytest.approx((0.04, 0))


def test_table_marks_missing_metrics_and_rows():
    text = Q.format_table({"lakerec sasrec": {"ndcg@10": (0.123456, 0.01), "seconds_to_best": 91.6},
                           "ALS": None, "published ICSRec": {"hr@10": 0.1055}})
    header, lakerec, als, published = text.splitlines()
    assert header.split()[:3] == ["model", "hr@5", "ndcg@5"] and header.split()[-1] == "seconds_per_epoch"
    cells = lakerec.split()
    assert cells[:2] == ["lakerec", "sasrec"] and cells[2 + Q.COLUMNS.index("ndcg@10")] == "0.1235±0.0100"
    assert cells[2 + Q.COLUMNS.index("seconds_to_best")] == "92" and cells[2] == "-"
    assert als.split()[1:] == ["n/a"] * len(Q.COLUMNS)
    assert published.split()[2 + Q.COLUMNS.index("hr@10")] == "0.1055"


def test_last_line_ratios_and_nan_where_not_applicable():
    line = Q.last_line("ml100k", (0.12, 0.005), 0.10, None, 30.0, 600.0)
    assert line == ("dataset=ml100k ndcg10=0.1200 ndcg10_sd=0.0050 best_baseline_ndcg10=0.1000 "
                    "ratio_vs_best_baseline=1.200 published_best_ndcg10=nan ratio_vs_published=nan "
                    "time_ratio_vs_recbole=0.050")
    toys = Q.last_line("toys", (0.0657, math.nan), 0.05, 0.0657, 30.0, None)
    assert "ndcg10_sd=nan" in toys and toys.endswith("ratio_vs_published=1.000 time_ratio_vs_recbole=nan")
    assert Q.last_line("toys", None, None, None, None, None).startswith("dataset=toys ndcg10=nan ndcg10_sd=nan")


def test_sequence_file_split_is_last_test_second_last_valid(tmp_path):
    path = tmp_path / "toys.txt"
    path.write_text("1 5 6 7 8\n2 9 9 10\n")
    assert Q.sequence_file_split(path) == {"1": ("7", "8"), "2": ("9", "10")}


def test_paired_over_seeds_averages_users_across_seeds():
    import pandas as pd

    frames = [pd.DataFrame({"user_id": ["u1", "u2", "u3"], "sasrec": [1, 1, 3], "pop": [50, 3, 50]}),
              pd.DataFrame({"user_id": ["u3", "u2", "u1"], "sasrec": [1, 1, 1], "pop": [50, 3, 50]})]
    test = Q.paired_over_seeds(frames, "sasrec", "pop")
    assert test.users == 3 and test.mean_b == pytest.approx(0.5 / 3)  # u2: rank 3 -> 0.5, others 0
    assert test.mean_a == pytest.approx((1 + 1 + (0.5 + 1) / 2) / 3)  # u3 is rank 3 then 1, joined by id


def test_movielens_protocol_split(ml100k):
    rows = P.read_udata(ml100k / "u.data")
    split = P.leave_one_out(P.user_histories(rows))
    assert len(rows) == 100_000 and len(split) == 943  # every ML-100K user has at least 20 ratings
    assert all(valid != test for valid, test in split.values())  # u.data has no repeated (user, item)


@pytest.mark.slow
def test_recbole_script_on_a_tiny_file(tmp_path):
    """The real RecBole script in its venv on 60 synthetic users: its split equals the protocol's (it checks and
    exits otherwise), and the history-masked validation NDCG@10 RecBole early-stopped on is the protocol's."""
    if not Q.PEER_PYTHON.is_file():
        pytest.skip(f"RecBole venv absent at {Q.PEER_PYTHON} (bash benchmarks/peers/setup_recbole.sh)")
    rows = [(str(u), str((u * 7 + j * 3) % 40 + 1), 1000 + j // 2) for u in range(1, 61) for j in range(15)]
    data = write_udata(tmp_path / "u.data", rows)  # timestamps tie in pairs: file order must break them
    out = tmp_path / "out.json"
    subprocess.run([str(Q.PEER_PYTHON), str(Q.PEER_SCRIPT), "--data", str(data), "--out", str(out),
                    "--workdir", str(tmp_path / "work"), "--set", "epochs=2"], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(out.read_text())
    expected = P.leave_one_out(P.user_histories(P.read_udata(data)))
    assert P.split_mismatches(expected, {u: tuple(v) for u, v in result["split"].items()}) == 0
    assert result["users"] == 60 and result["items"] == 40 and result["test"]["users"] == 60
    best = result["epochs"][result["best_epoch"] - 1]
    assert best["valid_ndcg10"] == pytest.approx(result["valid"]["ndcg@10"], abs=1e-4)  # RecBole rounds to 4
    assert best["test"] == result["test"]  # the best checkpoint reloaded scores as it did when saved
    assert 0 < result["seconds_to_best"] <= sum(e["train_s"] + e["valid_s"] for e in result["epochs"])


def test_stage_metrics_read_a_real_mlflow_store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("lakerec", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment, run_name="pipeline:lakerec"):
        with mlflow.start_run(experiment_id=experiment, run_name="train", nested=True):
            mlflow.log_metrics({"seconds_to_best": 42.0})
        with mlflow.start_run(experiment_id=experiment, run_name="evaluate", nested=True):
            mlflow.log_metrics({"test.sasrec.ndcg_10": 0.11, "test.pop.ndcg_10": 0.04})
    stages = Q.stage_metrics(uri)
    assert set(stages) == {"train", "evaluate"}
    run_id = Q.stage_runs(uri)["evaluate"][0]
    assert Q.user_ranks(uri, run_id) is None  # an evaluate run without evaluation/test_ranks.csv
    rows = Q.lakerec_rows(stages["evaluate"], stages["train"])
    assert rows == {"sasrec": {"ndcg@10": 0.11, "seconds_to_best": 42.0}, "pop": {"ndcg@10": 0.04}}
