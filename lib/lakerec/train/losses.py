"""Training losses over (hidden state, target item) pairs, scored against the tied item vectors.

- `ce`: full softmax cross-entropy over every item (exact; cost grows with the catalog).
- `sampled`: softmax over the target and `negatives` items drawn from a proposal q (item popularity in the
  training data, shared by the batch), each logit corrected by -log q(item) (logQ correction, Yi et al. 2019) so
  the sampled softmax estimates the full one instead of over-punishing popular items. A negative that happens
  to be the row's own target is masked out.

Beside the main loss, `contrastive_loss` (train.contrastive, DuoRec: Qiu et al., WSDM 2022) pulls two views of a
window's user vector together and pushes the batch's other windows away (InfoNCE): the remedy DuoRec gives for
sequence representations that collapse into a narrow cone on sparse data.

Both main losses take an optional `excluded` mask ([n_items + 1] bool): items that are no candidates at all. Text-aware
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


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float, similarity: str = "dot",
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE over the 2B views of B pairs (anchor i, positive i), each against the other 2B - 2 as negatives
    (DuoRec's `info_nce`: views of both halves are anchors in turn, a view is never its own negative).

    labels: [B] the rows' next items; views whose row has the same label as the anchor's are no negatives (a false
    negative: DuoRec leaves them in, ICSRec's f_neg takes them out), so a batch with repeated next items does not
    push together what the supervised positive pulls together.
    """
    n = len(anchor)
    z = torch.cat([anchor, positive])
    if similarity == "cos":
        z = F.normalize(z, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r}: expected dot or cos")
    logits = z @ z.T / temperature
    rows = torch.arange(2 * n, device=z.device)
    partner = (rows + n) % (2 * n)
    blocked = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    if labels is not None:
        both = torch.cat([labels, labels])
        blocked = blocked | (both.unsqueeze(0) == both.unsqueeze(1))
    blocked[rows, partner] = False
    return F.cross_entropy(logits.masked_fill(blocked, float("-inf")), partner)


def contrastive_partners(next_items: torch.Tensor, same_target: bool) -> torch.Tensor:
    """[B] next items -> [B] row whose second view is each row's positive: with same_target a random other row of
    the batch with the same next item when there is one (DuoRec's supervised positive, sampled in the batch rather
    than the whole training set), else the row itself (its second dropout view, DuoRec's unsupervised one). Draws
    from the global torch RNG, which the training loop seeds per (seed, epoch, rank)."""
    own = torch.arange(len(next_items), device=next_items.device)
    if not same_target:
        return own
    same = (next_items.unsqueeze(0) == next_items.unsqueeze(1)) & (own.unsqueeze(0) != own.unsqueeze(1))
    draw = torch.rand(same.shape, device=next_items.device).masked_fill(~same, -1.0)
    return torch.where(same.any(dim=1), draw.argmax(dim=1), own)


def contrastive_loss(anchor: torch.Tensor, second: torch.Tensor, next_items: torch.Tensor, temperature: float,
                     similarity: str = "dot", positives: str = "same_target") -> torch.Tensor:
    """DuoRec's regulariser on [B, d] user vectors of a batch from two forward passes (other dropout noise):
    anchor i against the second view of its partner (contrastive_partners), in-batch negatives; 0 for B < 2."""
    if len(anchor) < 2:
        return anchor.sum() * 0.0  # keeps the graph (and Horovod's gradient hooks) the same shape
    partner = contrastive_partners(next_items, positives == "same_target")
    return info_nce(anchor, second[partner], temperature, similarity, next_items)


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
