"""Cold-start report: cold/tail/warm slices and the text-only baseline, on a hand-made split."""
import mlflow
import numpy as np
import pandas as pd
import torch

from lakerec import tables as T
from lakerec import tracking
from lakerec.evaluate.baselines import same_for_everyone
from lakerec.evaluate.coldstart import (coldstart_table, comparison_artifacts, comparison_metrics, text_scorer,
                                        wide)
from tests.data.helpers import lake_run, own_mlflow_store


def rows(histories: list[list[int]], max_len: int = 4) -> pd.DataFrame:
    def pad(h):
        return np.array([0] * (max_len - len(h[-max_len:])) + h[-max_len:], dtype=np.int64)

    return pd.DataFrame({T.USER_ID: [f"u{i}" for i in range(len(histories))], T.HISTORY: histories,
                         T.VALID_INPUT: [pad(h[:-2]) for h in histories], T.VALID_TARGET: [h[-2] for h in histories],
                         T.TEST_INPUT: [pad(h[:-1]) for h in histories], T.TEST_TARGET: [h[-1] for h in histories]})


def test_slices_and_the_text_baseline_finds_the_cold_item_by_its_text():
    # items 1-3 "noir" text, 4-6 "comedy" text; item 3 and 6 never seen before the split (cold targets)
    text = np.zeros((7, 2), dtype=np.float32)
    text[1:4, 0], text[4:7, 1] = 1.0, 1.0
    text[3] += [0.0, 0.1]
    data = rows([[1, 2, 1, 3], [4, 5, 4, 6], [1, 2, 1, 2], [4, 5, 5, 4], [2, 1, 5, 1]])
    popular = same_for_everyone(torch.tensor([0, 5, 4, 0, 3, 2, 0], dtype=torch.float32))
    table = coldstart_table(data, 6, {"pop": popular, "text": text_scorer(text)}, ks=[1, 10])
    users = table[(table["model"] == "pop") & (table["metric"] == "users")].set_index("slice")["value"]
    assert users.to_dict() == {"cold": 2, "tail": 2, "warm": 3, "all": 5}
    w = wide(table, ["hr_1"])
    assert w.loc["pop", "cold.hr_1"] == 0.0  # never seen: popularity 0, ranked last
    assert w.loc["text", "cold.hr_1"] == 1.0  # the only unseen item of the user's genre
    assert list(w.columns) == ["cold.hr_1", "tail.hr_1", "warm.hr_1", "all.hr_1"]


def test_the_comparison_is_returned_as_data_and_the_tracking_layer_logs_it(make_cfg):
    # a real MLflow store (sqlite, artifacts in tmp): the artifacts a job would log land under cold_start/
    data = rows([[1, 2, 1, 3], [4, 5, 4, 6], [1, 2, 1, 2], [4, 5, 5, 4], [2, 1, 5, 1]])
    popular = same_for_everyone(torch.tensor([0, 5, 4, 0, 3, 2, 0], dtype=torch.float32))
    tables = {"items": coldstart_table(data, 6, {"pop": popular}, ks=[1, 10])}
    metrics = comparison_metrics(tables)
    assert metrics["coldstart.items.pop.cold.hr_1"] == 0.0 and not any(k.endswith(".users") for k in metrics)
    artifacts = comparison_artifacts(tables)
    assert set(artifacts) == {"cold_start/items_table.csv", "cold_start/items_table.md",
                              "cold_start/items_ndcg_10_by_slice.png"}
    with own_mlflow_store():
        with lake_run(make_cfg()) as run:
            tracking.log_artifacts(artifacts)
        logged = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "cold_start")}
        csv = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/cold_start/items_table.csv")
    assert logged == set(artifacts)
    assert csv.splitlines()[0] == ("model,cold.ndcg_10,cold.hr_10,tail.ndcg_10,tail.hr_10,warm.ndcg_10,warm.hr_10,"
                                   "all.ndcg_10,all.hr_10")
