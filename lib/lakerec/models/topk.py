"""The one top-k rule, shared by evaluation's lists, batch scoring and the pyfunc, so that the same scores give
the same list wherever they are ranked.

- Ties: equal scores list the lower column (item_idx, or candidate position) first. torch.topk leaves the order of
  ties, and which tied item makes the cut, to the backend; here they are fixed, whatever the device.
- Short candidate lists: a score of -inf means "not eligible" (callers mask excluded items and padding so). The
  result is always [B, min(k, columns)]; a row with fewer eligible columns ends in NO_ITEM slots (value -inf),
  never an excluded item. Serving drops them (a shorter list, not made-up items); evaluation counts none of them.

Cost: one torch.topk(k + 1) pass, then sorts of [B, k]. Only a row whose k-th and (k+1)-th best scores are equal
(a tie at the cut, or a short list) takes the exact column-order pass over its whole row (compare, cumsum,
nonzero: about ten times a topk over 50k columns), so wide catalogs pay for ties only where there are some.
"""
from __future__ import annotations

import torch

NO_ITEM = -1  # the index of a slot no eligible item fills


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each [B, min(k, C)], best first, of [B, C] scores under the rule above."""
    if scores.dim() != 2:
        raise ValueError(f"top_k needs [rows, columns] scores, got shape {tuple(scores.shape)}")
    k = min(k, scores.shape[1])
    if k <= 0:
        _check_nan(scores)
        empty = scores.new_empty(scores.shape[0], 0)
        return empty, empty.long()
    if k == scores.shape[1]:  # every column is listed: no cut to decide
        _check_nan(scores)
        values, columns = scores, torch.arange(k).expand(scores.shape[0], k)
    else:
        values, columns = torch.topk(scores, k + 1, dim=1)
        _check_nan(values[:, :1])  # torch.topk ranks NaN above every number: a row with one lists it first
        tied = values[:, k] == values[:, k - 1]  # which of the tied columns make the cut is the backend's choice
        values, columns = values[:, :k].clone(), columns[:, :k].clone()
        if tied.any():
            rows = tied.nonzero()[:, 0]
            columns[rows] = _cut_by_column(scores[rows], k)
            values[rows] = scores[rows].gather(1, columns[rows])
    columns, by_column = torch.sort(columns, dim=1)  # column order first, so the stable sort keeps ties in it
    values = values.gather(1, by_column)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, columns = values.gather(1, order), columns.gather(1, order)
    return values, columns.masked_fill(values == float("-inf"), NO_ITEM)


def merge_top_k(first: tuple[torch.Tensor, torch.Tensor], later: tuple[torch.Tensor, torch.Tensor],
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best k of two (values, columns) lists under the rule above, where every column of `later` is above
    every column of `first` (chunks of the columns, merged in column order): the stable sort keeps `first`'s entry
    ahead on a tie, which is the lower column. Ranking a row chunk by chunk and merging gives its one-pass top_k."""
    values = torch.cat([first[0], later[0]], dim=1)
    columns = torch.cat([first[1], later[1]], dim=1)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), columns.gather(1, order)


def _cut_by_column(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[R, k] columns (in column order) of the k best scores of each row, the lowest tied columns making the cut."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # the k-th best score of each row: the cut
    above = scores > kth
    tied = scores == kth
    take = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
    return take.nonzero()[:, 1].view(-1, k)  # exactly k per row


def _check_nan(scores: torch.Tensor) -> None:
    if torch.isnan(scores).any():
        raise ValueError("top_k: scores contain NaN (a model or scorer produced an undefined score)")
