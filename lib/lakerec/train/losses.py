"""Training losses over (hidden state, target item) pairs, scored against the tied item vectors.

- `ce`: full softmax cross-entropy over every item (exact; cost grows with the catalog).
- `sampled`: softmax over the target and `negatives` items drawn from a proposal q (item popularity in the
  training data, shared by the batch), each logit corrected by -log q(item) (logQ correction, Yi et al. 2019) so
  the sampled softmax estimates the full one instead of over-punishing popular items. A negative that happens
  to be the row's own target is masked out.

Both take an optional `excluded` mask ([n_items + 1] bool): items that are no candidates at all. Text-aware
models exclude the items without ID history: an item that did not exist yet is no evidence of dislike, and
treating it as a negative in every step teaches the model to bury exactly the new items it should surface.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# (hidden, item vectors, targets[, excluded items])
LossFn = Callable[..., torch.Tensor]


def full_softmax_ce(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                    excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE of [N, d] hidden states over all real items (rows 1.. of items [n_items + 1, d]); targets 1..n."""
    logits = hidden @ items[1:].T  # padding (row 0) is never a prediction
    if excluded is not None:
        logits = logits.masked_fill(excluded[1:].unsqueeze(0), float("-inf"))
    return F.cross_entropy(logits, targets - 1)


def sampled_softmax_ce(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       log_q: torch.Tensor) -> torch.Tensor:
    """Mean CE over [target, negatives] per row with logQ correction.

    negatives: [K] item_idx shared by the batch; log_q: [n_items + 1] log proposal probability per item_idx.
    """
    positive = (hidden * items[targets]).sum(-1, keepdim=True) - log_q[targets].unsqueeze(1)  # [N, 1]
    negative = hidden @ items[negatives].T - log_q[negatives]  # [N, K]
    negative = negative.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))


def proposal(item_counts: torch.Tensor) -> torch.Tensor:
    """q over item_idx from training counts (+1 so every item can be drawn; padding never)."""
    q = item_counts.double() + 1
    q[0] = 0
    return (q / q.sum()).float()


def make_loss(kind: str, negatives: int, item_counts: torch.Tensor | None = None) -> LossFn:
    """The configured loss; `sampled` draws its negatives from the global torch RNG (seeded by the loop)."""
    if kind == "ce":
        return full_softmax_ce
    if kind != "sampled":
        raise ValueError(f"unknown loss {kind!r}: expected ce or sampled")
    if item_counts is None:
        raise ValueError("the sampled loss needs item counts for its proposal distribution")
    q = proposal(item_counts)
    log_q = torch.log(q.clamp_min(1e-30))

    def loss(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             excluded: torch.Tensor | None = None) -> torch.Tensor:
        proposal_q = q if excluded is None else q.masked_fill(excluded.cpu(), 0)
        drawn = torch.multinomial(proposal_q, negatives, replacement=True).to(hidden.device)
        return sampled_softmax_ce(hidden, items, targets, drawn, log_q.to(hidden.device))

    return loss
