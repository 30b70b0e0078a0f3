"""The one top-k rule, shared by evaluation's lists, batch scoring and the pyfunc, so that the same scores give
the same list wherever they are ranked.

- Ties: equal scores list the lower column (item_idx, or candidate position) first. torch.topk leaves the order of
  ties, and which tied item makes the cut, to the backend; here they are fixed, whatever the device.
- Short candidate lists: a score of -inf means "not eligible" (callers mask excluded items and padding so). The
  result is always [B, min(k, columns)]; a row with fewer eligible columns ends in NO_ITEM slots (value -inf),
  never an excluded item. Serving drops them (a shorter list, not made-up items); evaluation counts none of them.
"""
from __future__ import annotations

import torch

NO_ITEM = -1  # the index of a slot no eligible item fills


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each [B, min(k, C)], best first, of [B, C] scores under the rule above."""
    if scores.dim() != 2:
        raise ValueError(f"top_k needs [rows, columns] scores, got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("top_k: scores contain NaN (a model or scorer produced an undefined score)")
    k = min(k, scores.shape[1])
    if k <= 0:
        empty = scores.new_empty(scores.shape[0], 0)
        return empty, empty.long()
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # the k-th best score of each row: the cut
    above = scores > kth
    tied = scores == kth
    take = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))  # lowest tied columns make the cut
    columns = take.nonzero()[:, 1].view(-1, k)  # exactly k per row, in column order
    values = scores.gather(1, columns)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices  # stable: ties stay in column order
    values, columns = values.gather(1, order), columns.gather(1, order)
    return values, columns.masked_fill(values == float("-inf"), NO_ITEM)
