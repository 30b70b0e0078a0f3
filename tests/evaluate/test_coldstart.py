"""Cold-start report: cold/tail/warm slices and the text-only baseline, on a hand-made split."""
import numpy as np
import pandas as pd
import torch

from lakerec import tables as T
from lakerec.evaluate.coldstart import coldstart_table, text_scorer, wide


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
    popular = lambda inputs: torch.tensor([0, 5, 4, 0, 3, 2, 0], dtype=torch.float32).expand(len(inputs), -1)
    table = coldstart_table(data, 6, {"pop": popular, "text": text_scorer(text)}, ks=[1, 10])
    users = table[(table["model"] == "pop") & (table["metric"] == "users")].set_index("slice")["value"]
    assert users.to_dict() == {"cold": 2, "tail": 2, "warm": 3, "all": 5}
    w = wide(table, ["hr_1"])
    assert w.loc["pop", "cold.hr_1"] == 0.0  # never seen: popularity 0, ranked last
    assert w.loc["text", "cold.hr_1"] == 1.0  # the only unseen item of the user's genre
    assert list(w.columns) == ["cold.hr_1", "tail.hr_1", "warm.hr_1", "all.hr_1"]
