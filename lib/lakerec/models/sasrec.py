"""SASRec (Kang & McAuley 2018): a causal Transformer over the item sequence, output tied to the item embedding.

Training predicts the next item at every position of a window in one pass (not one sample per prefix);
`user_vectors` is the hidden state at the last (newest) position.
"""
from __future__ import annotations

import torch

from lakerec.models.base import PAD, ModelConfig, SequenceEncoder

__all__ = ["PAD", "SASRec", "SASRecConfig"]
SASRecConfig = ModelConfig  # the name the evaluate and score stages import


class SASRec(SequenceEncoder):
    causal = True

    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded histories -> [B, d]: the hidden state at the last (newest) position."""
        return self(input_ids)[:, -1, :]

    def explain_user(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._last_position(input_ids)

    def training_pairs(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every non-padding target position: (hidden state there, the next item)."""
        keep = targets != PAD
        return self(inputs)[keep], targets[keep]

    def training_pairs_and_users(self, inputs: torch.Tensor, targets: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """training_pairs and the last position's hidden state (the user vector) from one forward pass."""
        hidden = self(inputs)
        keep = targets != PAD
        return hidden[keep], targets[keep], hidden[:, -1]
