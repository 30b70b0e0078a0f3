"""Full-ranking evaluation: every user's target is ranked against every item of the catalog.

Per user: scores for all n items; padding and the items of the user's history before the target are excluded,
the target itself always stays (a repeated purchase is a legitimate hit). Rank = 1 + items scoring higher
+ other items scoring equal (ties count against the target, so a flat baseline such as popularity cannot
win by ties). HR@k, NDCG@k (one relevant item: 1/log2(rank+1) within k) and MRR, averaged over users.
Vectorised in torch, batch by batch: memory is batch_size x n_items, never users x items.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from lakerec import tables as T
from lakerec.models.sasrec import PAD, SASRec

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # [B, L] inputs -> [B, n_items + 1] scores
EVAL_COLUMNS = [T.USER_ID, T.HISTORY, T.VALID_INPUT, T.VALID_TARGET, T.TEST_INPUT, T.TEST_TARGET]
SPLITS = {  # split -> (input column, target column, items before the target = history[:-cut])
    "valid": (T.VALID_INPUT, T.VALID_TARGET, 2),
    "test": (T.TEST_INPUT, T.TEST_TARGET, 1),
}


def history_mask(histories: Sequence[np.ndarray], n_items: int) -> torch.Tensor:
    """[B, n_items + 1] True where an item must not be ranked: padding and each user's history items."""
    mask = torch.zeros(len(histories), n_items + 1, dtype=torch.bool)
    padded = torch.nn.utils.rnn.pad_sequence(
        [torch.as_tensor(np.asarray(h, dtype=np.int64)) for h in histories], batch_first=True, padding_value=PAD)
    if padded.numel():
        mask.scatter_(1, padded, True)
    mask[:, PAD] = True
    return mask


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among the items not excluded (the target itself is never excluded)."""
    rows = torch.arange(len(targets))
    excluded = excluded.clone()
    excluded[rows, targets] = False
    scores = scores.float().masked_fill(excluded, float("-inf"))
    target_score = scores[rows, targets].unsqueeze(1)
    higher = (scores > target_score).sum(1)
    ties = (scores == target_score).sum(1) - 1
    return 1 + higher + ties


def ranking_metrics(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """hr_k, ndcg_k for each k, and mrr, averaged over the ranked users."""
    ranks = ranks.double()
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr_{k}"] = hit.double().mean().item()
        out[f"ndcg_{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1), torch.zeros_like(ranks)).mean().item()
    out["mrr"] = (1.0 / ranks).mean().item()
    return out


def rank_users(score_fn: ScoreFn, inputs: np.ndarray, targets: np.ndarray, histories: Sequence[np.ndarray],
               n_items: int, batch_size: int = 256) -> torch.Tensor:
    """Ranks of every user's target under score_fn, computed batch by batch."""
    if len(inputs) != len(targets) or len(targets) != len(histories):
        raise ValueError("inputs, targets and histories must have one entry per user")
    ranks = []
    with torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            stop = start + batch_size
            scores = score_fn(torch.as_tensor(inputs[start:stop], dtype=torch.long)).cpu()
            ranks.append(target_ranks(scores, torch.as_tensor(targets[start:stop], dtype=torch.long),
                                      history_mask(histories[start:stop], n_items)))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def model_scores(model: SASRec) -> ScoreFn:
    """Scores of every item for a batch of histories: user vectors times item vectors."""
    model.eval()
    device = next(model.parameters()).device
    return lambda inputs: model.user_vectors(inputs.to(device)) @ model.item_vectors().T


def popularity_scores(counts: np.ndarray) -> ScoreFn:
    """The most-popular baseline: the same score vector (item counts) for every user."""
    flat = torch.as_tensor(counts, dtype=torch.float32)
    return lambda inputs: flat.expand(len(inputs), -1)


def training_popularity(sequences: pd.DataFrame, n_items: int) -> np.ndarray:
    """Item counts over the part of each history that training sees (everything before the valid item)."""
    parts = [np.asarray(h)[:-2] for h in sequences[T.HISTORY]]
    items = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return np.bincount(items.astype(np.int64), minlength=n_items + 1)


def evaluate_sequences(sequences: pd.DataFrame, n_items: int, ks: Sequence[int], model: SASRec | None = None,
                       splits: Sequence[str] = ("valid", "test"), batch_size: int = 256) -> dict[str, float]:
    """Model and popularity metrics per split over users with a split (test_target > 0).

    sequences: rows of silver.sequences (history and the split columns). Keys: `<split>_<metric>` for the
    model, `pop_<split>_<metric>` for the baseline, and `<split>_users`.
    """
    users = sequences[sequences[T.TEST_TARGET] > 0]
    if users.empty:
        raise ValueError("no user has a valid/test split: nothing to evaluate")
    scorers = {"pop_": popularity_scores(training_popularity(users, n_items))}
    if model is not None:
        scorers[""] = model_scores(model)
    out: dict[str, float] = {}
    for split in splits:
        input_col, target_col, cut = SPLITS[split]
        inputs = np.stack(users[input_col].to_numpy())
        targets = users[target_col].to_numpy()
        histories = [np.asarray(h)[:-cut] for h in users[T.HISTORY]]
        out[f"{split}_users"] = float(len(users))
        for prefix, score_fn in scorers.items():
            ranks = rank_users(score_fn, inputs, targets, histories, n_items, batch_size)
            out.update({f"{prefix}{split}_{k}": v for k, v in ranking_metrics(ranks, ks).items()})
    return out
