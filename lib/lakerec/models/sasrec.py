"""SASRec (Kang & McAuley 2018): a causal Transformer over the item sequence, output tied to the item embedding.

Inputs are left-padded item_idx sequences (0 = padding) of length max_len, so the newest item always sits at
the last position: `user_vectors` is the hidden state there and scoring every item is one matrix product with
`item_vectors()`. Training predicts the next item at every position in one pass (full softmax).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


@dataclass(frozen=True)
class SASRecConfig:
    """Everything needed to rebuild the module from library code (what the registry stores next to the weights)."""

    n_items: int  # catalog size; item_idx runs 1..n_items, 0 is padding
    max_len: int
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    norm_first: bool = True  # pre-LN blocks (stable without warm-up) or the original post-LN

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 2:
            raise ValueError(f"need n_items >= 1 and max_len >= 2, got {self.n_items}, {self.max_len}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SASRecConfig":
        return cls(**d)


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.item_emb = nn.Embedding(config.n_items + 1, d, padding_idx=PAD)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(d, config.heads, dim_feedforward=4 * d, dropout=config.dropout,
                                           activation="gelu", batch_first=True, norm_first=config.norm_first)
        self.encoder = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d) if config.norm_first else nn.Identity()
        future = torch.triu(torch.ones(config.max_len, config.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("future", future, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] item_idx -> [B, L, d] hidden states; position t sees only positions <= t that are not padding."""
        _, length = input_ids.shape
        if length != self.config.max_len:
            raise ValueError(f"input length {length} != max_len {self.config.max_len}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.item_emb(input_ids) * math.sqrt(self.config.dim) + self.pos_emb(positions)
        x = self.emb_dropout(x)
        h = self.encoder(x, mask=self._attention_mask(input_ids))
        h = self.final_norm(h)
        return h * (input_ids != PAD).unsqueeze(-1)

    def _attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B*heads, L, L] True = may not attend: the future and padding keys.

        The diagonal stays open, so a padding query still attends to itself: a row with every key masked
        would turn into NaN and leak into later layers through 0 * NaN.
        """
        pad_keys = (input_ids == PAD).unsqueeze(1)  # [B, 1, L]
        blocked = self.future.unsqueeze(0) | pad_keys
        blocked = blocked & ~torch.eye(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
        return blocked.repeat_interleave(self.config.heads, dim=0)

    def item_vectors(self) -> torch.Tensor:
        """[n_items + 1, d] output item vectors (tied to the input embedding; row 0 is padding)."""
        return self.item_emb.weight

    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded histories -> [B, d]: the hidden state at the last (newest) position."""
        return self(input_ids)[:, -1, :]

    def loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean full-softmax cross-entropy over every non-padding target position of the batch."""
        hidden = self(input_ids)
        keep = targets != PAD
        logits = hidden[keep] @ self.item_vectors()[1:].T  # real items only: padding is never a prediction
        return F.cross_entropy(logits, targets[keep] - 1)
