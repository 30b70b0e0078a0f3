"""The evaluation protocol every model of the quality benchmark is held to, in plain Python + torch.

Imported by the RecBole script (inside RecBole's own venv) and by benchmarks/quality.py (inside
lakerec's), so both sides split and rank exactly alike:
- every rating is an interaction; a user's history is ordered by timestamp, ties by line order in u.data;
- leave-one-out: the last item is the test target, the second-last the validation target;
- full ranking over the whole catalog with the items of the user's history before the target excluded, the
  target included (lakerec's serving rule: a repeat is never recommended, so it is a miss at every k);
  rank = 1 + items scoring higher + other items scoring equal.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

import torch

KS = (5, 10, 20)


def read_udata(path: str | Path) -> list[tuple[str, str, int]]:
    """u.data (user, item, rating, timestamp; tab-separated) -> (user, item, ts) in file order."""
    rows = []
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 4 tab-separated fields, got {len(parts)}")
            rows.append((parts[0], parts[1], int(parts[3])))
    return rows


def user_histories(rows: Iterable[tuple[str, str, int]]) -> dict[str, list[str]]:
    """Each user's items ordered by timestamp, ties by the rows' order (file order): a stable sort."""
    events: dict[str, list[tuple[int, int, str]]] = {}
    for line, (user, item, ts) in enumerate(rows):
        events.setdefault(user, []).append((ts, line, item))
    return {user: [item for _, _, item in sorted(evs)] for user, evs in events.items()}


def leave_one_out(histories: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """user -> (valid item, test item) for users with at least 3 events (one left to train on)."""
    return {u: (h[-2], h[-1]) for u, h in histories.items() if len(h) >= 3}


def split_mismatches(expected: dict[str, tuple[str, str]], other: dict[str, tuple[str, str]]) -> int:
    """Users whose (valid, test) items differ between two splits, counting users present in only one."""
    return sum(expected.get(u) != other.get(u) for u in set(expected) | set(other))


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among the items not excluded; ties count against the target; an excluded
    target gets the largest int64 (a miss at every k, MRR 0)."""
    rows = torch.arange(len(targets))
    scores = scores.float().masked_fill(excluded, float("-inf"))
    target_score = scores[rows, targets].unsqueeze(1)
    ranks = 1 + (scores > target_score).sum(1) + (scores == target_score).sum(1) - 1
    return torch.where(excluded[rows, targets], torch.iinfo(torch.int64).max, ranks)


def ranking_metrics(ranks: Sequence[int] | torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """hr@k and ndcg@k for each k, and mrr@10, averaged over users (one relevant item each)."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1), torch.zeros_like(ranks)).mean().item()
    out["mrr@10"] = torch.where(ranks <= 10, 1.0 / ranks, torch.zeros_like(ranks)).mean().item()
    return out


def coverage(top_lists: Iterable[Iterable[int]], n_items: int) -> float:
    """Catalog coverage: the share of the n_items catalog items that appear in at least one top-k list."""
    return len({int(i) for top in top_lists for i in top}) / n_items


def cache_key(files: Sequence[str | Path], params: dict) -> str:
    """sha256 over the files' bytes (scripts, data) and the parameters (sorted JSON): changes when any does."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]

