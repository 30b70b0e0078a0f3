"""The serving rule: which of a user's earlier items are never ranked, in scoring and in evaluation alike.

Scoring (`lakerec.score.batch.user_states`) does not recommend again an item the user had an event with: of any
type (`score.exclude_event_types: null`, the default), of the listed types only, or of none (`[]`: repeat-aware,
for groceries or music, where buying again is the point). Evaluation excludes exactly those items from the ranking
at the target's time: the history before the target under the same filter, the target included. A target that
repeats an excluded item can never be recommended in production, so it counts as a miss; the share of such users
is reported as `repeat_target_share`. Unmasking it instead would tell the model which history item is the answer.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def excluded_items(history: np.ndarray, types: Sequence[str] | None, exclude_types: Sequence[str] | None
                   ) -> np.ndarray:
    """Distinct item_idx of `history` (the items before the target) that may not be ranked.

    types: the event type of each history item (needed only when exclude_types lists some types).
    exclude_types: None = every type, [] = none, else the listed types only."""
    history = np.asarray(history, dtype=np.int64)
    if exclude_types is None:
        return np.unique(history)
    if not exclude_types:
        return np.zeros(0, dtype=np.int64)
    if types is None or len(types) != len(history):
        raise ValueError("excluding by event type needs each history item's type: rebuild silver.sequences "
                         "with the sequences stage (it writes history_types)")
    return np.unique(history[np.isin(np.asarray(types, dtype=object), list(exclude_types))])
