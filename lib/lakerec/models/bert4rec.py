"""BERT4Rec (Sun et al. 2019): a bidirectional Transformer trained to fill in masked items (Cloze task).

Training takes a window's item sequence (the `targets` array: the items themselves, left-padded), replaces a
random mask_prob share of its items with [MASK] (item_idx n_items + 1; at least one per row) and predicts only
those positions. At inference the oldest item drops out and a [MASK] is appended at the end: its hidden
state is the user vector, the prediction of what comes next.
"""
from __future__ import annotations

import torch

from lakerec.models.base import PAD, SequenceEncoder


class BERT4Rec(SequenceEncoder):
    extra_tokens = 1
    causal = False

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded histories -> [B, d]: the hidden state of a [MASK] appended after the newest item."""
        return self(self._with_mask_appended(input_ids))[:, -1, :]

    def explain_user(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attribution realigned to input_ids: the oldest item dropped out, the appended [MASK] is no history."""
        hidden, attribution = self._last_position(self._with_mask_appended(input_ids))
        return hidden, torch.cat([torch.zeros_like(attribution[:, :1]), attribution[:, :-1]], dim=1)

    def _with_mask_appended(self, input_ids: torch.Tensor) -> torch.Tensor:
        masked = torch.full_like(input_ids[:, :1], self.mask_token)
        return torch.cat([input_ids[:, 1:], masked], dim=1)

    def mask_items(self, items: torch.Tensor) -> torch.Tensor:
        """[B, L] bool: a random mask_prob share of the real items, at least one per row (else its newest item).

        Uses the global torch RNG, which the training loop seeds per (seed, epoch, rank).
        """
        real = items != PAD
        masked = real & (torch.rand(items.shape, device=items.device) < self.config.mask_prob)
        newest = torch.zeros_like(masked)
        newest[:, -1] = real[:, -1]
        return masked | (newest & ~masked.any(dim=1, keepdim=True))

    def training_pairs(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask items of `targets` (the window's items; `inputs` is not needed): (hidden, item) per masked position."""
        masked = self.mask_items(targets)
        hidden = self(targets.masked_fill(masked, self.mask_token))
        return hidden[masked], targets[masked]
