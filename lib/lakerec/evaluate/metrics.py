"""Full-ranking evaluation: every user's target is ranked against every item of the catalog.

Per user: scores for all n items; padding and the items the scoring stage would not recommend to that user at
the target's time are excluded (the serving rule, lakerec.data.exclusion: by default the whole history before
the target, the target included, so a target repeating a history item is a miss, as in production). Rank = 1 +
items scoring higher + other items scoring equal (ties count against the target, so a flat baseline such as
popularity cannot win by ties); an excluded target gets rank MISSED, outside every k. HR@k, NDCG@k (one
relevant item: 1/log2(rank+1) within k) and MRR@k, averaged over users; beside them the share of users whose
target repeats an excluded item (`repeat_target_share`), the catalog coverage and the popularity bias of the
top-k lists, overall and per slice (target popularity, history length). `evaluate_all` is the one entry point
for the model and every baseline.

Memory: users are scored batch by batch and, within a batch, items chunk by chunk (evaluate.item_chunk), so the
largest score block is batch_size x item_chunk, never users x items nor batch_size x items: a scorer returns a
batch's scores of the items it is asked for. The targets' scores come first (one block of the batch's distinct
targets); each chunk then adds its items scoring above and equal to the target (the target's own column counted
at that score, once) and merges its top-k into a running top-k (lakerec.models.topk's rule: chunks come in item
order, so the lower item still wins a tie). Exclusions are applied per chunk from the users' sparse item lists.
The counts and lists are those of one pass over all items: the chunk size changes no result (given a scorer
whose score of an item does not depend on which other items it is asked for; a float matmul may differ in the last
bit between block shapes, as it already does between batch sizes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lakerec import tables as T
from lakerec.data.exclusion import excluded_items
from lakerec.models.sasrec import PAD, SASRec
from lakerec.models.topk import NO_ITEM, merge_top_k, top_k

# a batch's scores of some items: [C] item_idx -> [B, C] (one row per user of the batch)
ItemScores = Callable[[torch.Tensor], torch.Tensor]
# [B, L] inputs (and, for a user-aware scorer, the B user ids) -> that batch's ItemScores
ScoreFn = Callable[..., ItemScores]
ITEM_CHUNK = 65536  # items scored at once (evaluate.item_chunk): a score block is batch_size x this
EVAL_COLUMNS = [T.USER_ID, T.HISTORY, T.HISTORY_TYPES, T.VALID_INPUT, T.VALID_TARGET, T.TEST_INPUT, T.TEST_TARGET]
SPLITS = {  # split -> (input column, target column, items before the target = history[:-cut])
    "valid": (T.VALID_INPUT, T.VALID_TARGET, 2),
    "test": (T.TEST_INPUT, T.TEST_TARGET, 1),
}
TIDY_COLUMNS = ["model", "slice", "metric", "value"]
MISSED = torch.iinfo(torch.int64).max  # the rank of a target the serving rule excludes: no hit at any k, MRR 0
ALL, HEAD, TAIL, COLD = "all", "head", "tail", "cold"  # slices by the target's popularity before the split


def user_aware(fn: ScoreFn) -> ScoreFn:
    """Mark a scorer that needs the user ids (fn(inputs, users)), e.g. ALS's user factors."""
    fn.needs_users = True
    return fn


@dataclass(frozen=True)
class Exclusions:
    """A batch's excluded (row, item) pairs, padding included, sorted by item: a chunk finds its own by bisection,
    so no [B, n_items] mask is ever built."""

    rows: torch.Tensor
    items: torch.Tensor

    @classmethod
    def of(cls, excluded: Sequence[np.ndarray]) -> "Exclusions":
        per_row = [np.concatenate([[PAD], np.asarray(e, dtype=np.int64)]) for e in excluded]
        items = np.concatenate(per_row) if per_row else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(per_row)), [len(e) for e in per_row])
        order = np.argsort(items, kind="stable")
        return cls(torch.from_numpy(rows[order]), torch.from_numpy(items[order]))

    def within(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns relative to lo) of the pairs whose item is in [lo, hi)."""
        a, b = torch.searchsorted(self.items, torch.tensor([lo, hi])).tolist()
        return self.rows[a:b], self.items[a:b] - lo

    def hit(self, items: torch.Tensor) -> torch.Tensor:
        """[B] bool: row i's items[i] is excluded."""
        key = 1 << 32  # item_idx < 2**32
        return torch.isin(torch.arange(len(items)) * key + items, self.rows * key + self.items)


@dataclass
class TopList:
    """One batch's running top-k while its item chunks come in (item order), excluded items left out."""

    top_values: torch.Tensor     # [B, <= k] the running top-k (lakerec.models.topk's rule)
    top_items: torch.Tensor

    @classmethod
    def start(cls, rows: int) -> "TopList":
        return cls(torch.zeros(rows, 0), torch.zeros(rows, 0, dtype=torch.long))

    def add(self, block: torch.Tensor, lo: int, exclusions: Exclusions, k: int) -> torch.Tensor:
        """Merge one chunk (block [B, C]: the scores of items lo .. lo + C - 1); returns it with the excluded
        items at -inf."""
        rows, columns = exclusions.within(lo, lo + block.shape[1])
        masked = block.cpu().float().index_put((rows, columns), torch.tensor(float("-inf")))
        if k:
            values, best = top_k(masked, k)
            self.top_values, self.top_items = merge_top_k((self.top_values, self.top_items), (values, best + lo), k)
        return masked

    def top(self) -> torch.Tensor:
        """[B, k] items, NO_ITEM where no eligible item is left."""
        return self.top_items.masked_fill(self.top_values == float("-inf"), NO_ITEM)


@dataclass
class RankState:
    """One batch's running target counts (items above and equal to each user's target) and top-k list."""

    targets: torch.Tensor       # [B]
    target_scores: torch.Tensor  # [B] float32, from the targets' own block
    higher: torch.Tensor         # [B] non-excluded items scoring above the target so far
    equal: torch.Tensor          # [B] items scoring equal, the target's own column included once
    lists: TopList

    @classmethod
    def start(cls, scores: ItemScores, targets: torch.Tensor) -> "RankState":
        distinct, column = torch.unique(targets, return_inverse=True)
        own = scores(distinct).cpu().float()[torch.arange(len(targets)), column]
        zeros = torch.zeros(len(targets), dtype=torch.long)
        return cls(targets, own, zeros, zeros.clone(), TopList.start(len(targets)))

    def add(self, block: torch.Tensor, lo: int, exclusions: Exclusions, k: int) -> None:
        """Count and merge one chunk: block [B, C] holds the scores of items lo .. lo + C - 1."""
        masked = self.lists.add(block, lo, exclusions, k)
        inside = ((self.targets >= lo) & (self.targets < lo + block.shape[1])).nonzero()[:, 0]
        masked[inside, self.targets[inside] - lo] = self.target_scores[inside]  # the target at its own score
        own = self.target_scores.unsqueeze(1)
        self.higher += (masked > own).sum(1)
        self.equal += (masked == own).sum(1)

    def ranks(self, exclusions: Exclusions) -> torch.Tensor:
        """1-based ranks, items above + items equal (the target's own column among them: 1 + higher + the other
        ties); an excluded target (a repeat the serving rule never recommends) gets MISSED: a miss at every k."""
        return torch.where(exclusions.hit(self.targets), MISSED, self.higher + self.equal)

    def top(self) -> torch.Tensor:
        return self.lists.top()


def ranking_metrics(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """hr_k, ndcg_k, mrr_k for each k, and mrr, averaged over the ranked users."""
    ranks = ranks.double()
    out = {}
    zeros = torch.zeros_like(ranks)
    for k in ks:
        hit = ranks <= k
        out[f"hr_{k}"] = hit.double().mean().item()
        out[f"ndcg_{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1), zeros).mean().item()
        out[f"mrr_{k}"] = torch.where(hit, 1.0 / ranks, zeros).mean().item()
    out["mrr"] = (1.0 / ranks).mean().item()
    return out


def score_users(score_fn: ScoreFn, inputs: np.ndarray, targets: np.ndarray | None, excluded: Sequence[np.ndarray],
                n_items: int, batch_size: int = 256, users: np.ndarray | None = None, list_k: int = 0,
                item_chunk: int = ITEM_CHUNK) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(ranks [U], top-k item lists [U, list_k]) of every user under score_fn, batch by batch, item chunk by item
    chunk (the largest score block: batch_size x item_chunk).

    excluded: per user, the items the serving rule does not rank (SplitData.excluded). The lists exclude what the
    ranks exclude, under lakerec.models.topk's rule (NO_ITEM fills a list where fewer items are left). targets
    None: the lists only (serving), ranks None. users: passed to the scorer as its second argument when given
    (user-aware scorers).
    """
    if len(inputs) != len(excluded) or (targets is not None and len(targets) != len(excluded)):
        raise ValueError("inputs, targets and excluded must have one entry per user")
    if users is not None and len(users) != len(excluded):
        raise ValueError("users must have one entry per user")
    if item_chunk < 1:
        raise ValueError(f"item_chunk must be >= 1, got {item_chunk}")
    ranks, tops = [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, list_k, dtype=torch.long)]
    with torch.inference_mode():
        for start in range(0, len(excluded), batch_size):
            stop = start + batch_size
            batch = torch.as_tensor(np.asarray(inputs[start:stop]), dtype=torch.long)
            scores = score_fn(batch) if users is None else score_fn(batch, users[start:stop])
            exclusions = Exclusions.of(excluded[start:stop])
            state = (TopList.start(len(batch)) if targets is None else
                     RankState.start(scores, torch.as_tensor(np.asarray(targets[start:stop]), dtype=torch.long)))
            for lo in range(0, n_items + 1, item_chunk):
                state.add(scores(torch.arange(lo, min(lo + item_chunk, n_items + 1))), lo, exclusions, list_k)
            if targets is not None:
                ranks.append(state.ranks(exclusions))
            tops.append(state.top())
    return (None if targets is None else torch.cat(ranks)), torch.cat(tops)


def rank_users(score_fn: ScoreFn, inputs: np.ndarray, targets: np.ndarray, excluded: Sequence[np.ndarray],
               n_items: int, batch_size: int = 256, users: np.ndarray | None = None,
               item_chunk: int = ITEM_CHUNK) -> torch.Tensor:
    """Ranks of every user's target under score_fn, computed batch by batch (users: for user-aware scorers)."""
    return score_users(score_fn, inputs, targets, excluded, n_items, batch_size, users, item_chunk=item_chunk)[0]


def model_scores(model: SASRec) -> ScoreFn:
    """Scores of a batch of histories: user vectors times the asked items' vectors."""
    model.eval()
    device = next(model.parameters()).device

    def score(inputs: torch.Tensor) -> ItemScores:
        users, items = model.user_vectors(inputs.to(device)), model.item_vectors()
        return lambda asked: users @ items[asked.to(device)].T

    return score


@dataclass(frozen=True)
class SplitData:
    """One split of the evaluated users, as arrays: what a scorer sees and what it must rank."""

    users: np.ndarray            # user ids
    inputs: np.ndarray           # [U, L] the split's padded input
    targets: np.ndarray          # [U]
    histories: list[np.ndarray]  # items before the target (what a baseline may learn from)
    excluded: list[np.ndarray]   # items not ranked: the serving rule over the history (lakerec.data.exclusion)

    @property
    def history_lengths(self) -> np.ndarray:
        return np.array([len(h) for h in self.histories], dtype=np.int64)

    @property
    def repeat_targets(self) -> np.ndarray:
        """Per user: the target repeats an excluded item (a miss under the serving rule)."""
        return np.array([np.isin(t, e) for t, e in zip(self.targets, self.excluded)], dtype=bool)


def split_data(sequences: pd.DataFrame, split: str, exclude_types: Sequence[str] | None = None) -> SplitData:
    """The users with a split (target > 0) of silver.sequences rows, for split "valid" or "test".

    exclude_types: score.exclude_event_types (None: items of every type are excluded; []: none)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {list(SPLITS)}")
    input_col, target_col, cut = SPLITS[split]
    rows = sequences[sequences[target_col] > 0]
    if rows.empty:
        raise ValueError(f"no user has a {split} target: nothing to evaluate")
    histories = [np.asarray(h, dtype=np.int64)[:-cut] for h in rows[T.HISTORY]]
    by_type = exclude_types and T.HISTORY_TYPES in rows.columns  # None or []: the rule needs no types
    types = [None if t is None else list(t)[:-cut] for t in rows[T.HISTORY_TYPES]] if by_type else [None] * len(rows)
    return SplitData(users=rows[T.USER_ID].to_numpy(), inputs=np.stack(rows[input_col].to_numpy()).astype(np.int64),
                     targets=rows[target_col].to_numpy().astype(np.int64), histories=histories,
                     excluded=[excluded_items(h, t, exclude_types) for h, t in zip(histories, types)])


def split_popularity(data: SplitData, n_items: int) -> np.ndarray:
    """[n_items + 1] interactions per item before the split's targets: what a baseline may learn from."""
    items = np.concatenate(data.histories) if data.histories else np.zeros(0, np.int64)
    return np.bincount(items, minlength=n_items + 1)


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Per item: the share of catalog items (padding aside) at most as popular as it; the most popular is 1."""
    catalog = np.sort(counts[1:])
    out = np.searchsorted(catalog, counts, side="right") / max(len(catalog), 1)
    out[PAD] = 0.0
    return out


def popularity_slices(targets: np.ndarray, counts: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Per target: head (among the head_share most popular items seen before the split; an item tied with the
    last head item is head too), tail (seen, not head) or cold (never seen before the split)."""
    seen = np.sort(counts[1:][counts[1:] > 0])[::-1]
    n_head = int(np.ceil(head_share * len(seen)))
    threshold = seen[n_head - 1] if n_head else np.inf
    c = counts[targets]
    return np.where(c == 0, COLD, np.where(c >= threshold, HEAD, TAIL))


def length_slices(lengths: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Per user: the history-length bucket, edges [10, 50] -> len_0-9, len_10-49, len_50_up."""
    bounds = [0, *edges]
    names = [f"len_{lo}-{hi - 1}" for lo, hi in zip(bounds, bounds[1:])] + [f"len_{bounds[-1]}_up"]
    return np.asarray(names)[np.searchsorted(np.asarray(edges), lengths, side="right")]


def list_metrics(top: torch.Tensor, n_items: int, percentile: np.ndarray, k: int) -> dict[str, float]:
    """coverage_k: share of the catalog in any top-k list; pop_bias_k: mean popularity percentile of the
    listed items (1 = only the most popular item). NO_ITEM in a list (no item left) is not an item."""
    items = top[:, :k].reshape(-1).numpy()
    items = items[items != NO_ITEM]
    return {f"coverage_{k}": len(np.unique(items)) / n_items,
            f"pop_bias_{k}": float(percentile[items].mean()) if len(items) else float("nan")}


def evaluate_all(sequences: pd.DataFrame, n_items: int, ks: Sequence[int], scorers: Mapping[str, ScoreFn],
                 split: str = "test", batch_size: int = 256, list_k: int = 10, head_share: float = 0.2,
                 length_edges: Sequence[int] = (10, 50, 200), exclude_types: Sequence[str] | None = None,
                 ranks_out: dict[str, torch.Tensor] | None = None, item_chunk: int = ITEM_CHUNK) -> pd.DataFrame:
    """Every scorer on one split of silver.sequences rows -> tidy (model, slice, metric, value).

    Slices: all, head/tail/cold (the target's popularity before the split) and len_* (the user's history
    length). Metrics per slice: users, repeat_target_share, hr/ndcg/mrr at each k, mrr, coverage and pop_bias of
    the top-list_k lists; per model also `seconds` (the evaluator's wall time for it) in slice all.
    exclude_types: score.exclude_event_types, the serving rule's filter (None: the whole history is excluded).
    ranks_out: filled with model -> per-user ranks (users in split_data order), for paired tests over users.
    item_chunk: evaluate.item_chunk, the items scored at once (memory: batch_size x item_chunk scores).
    """
    data = split_data(sequences, split, exclude_types)
    repeats = data.repeat_targets
    counts = split_popularity(data, n_items)
    percentile = popularity_percentile(counts)
    slices = {ALL: np.ones(len(data.targets), bool)}
    for labels in (popularity_slices(data.targets, counts, head_share),
                   length_slices(data.history_lengths, length_edges)):
        slices.update({name: labels == name for name in np.unique(labels)})
    rows = []
    for model, score_fn in scorers.items():
        start = time.perf_counter()
        users = data.users if getattr(score_fn, "needs_users", False) else None
        ranks, top = score_users(score_fn, data.inputs, data.targets, data.excluded, n_items, batch_size,
                                 users, min(list_k, n_items), item_chunk)
        if ranks_out is not None:
            ranks_out[model] = ranks
        for name, mask in slices.items():
            selected = torch.as_tensor(mask)
            metrics = {"users": float(mask.sum()), "repeat_target_share": float(repeats[mask].mean()),
                       **ranking_metrics(ranks[selected], ks),
                       **list_metrics(top[selected], n_items, percentile, list_k)}
            rows += [(model, name, metric, value) for metric, value in metrics.items()]
        rows.append((model, ALL, "seconds", time.perf_counter() - start))
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def overall(table: pd.DataFrame, model: str) -> dict[str, float]:
    """metric -> value of one model over all users (slice all) of an evaluate_all table."""
    rows = table[(table["model"] == model) & (table["slice"] == ALL)]
    return dict(zip(rows["metric"], rows["value"]))
