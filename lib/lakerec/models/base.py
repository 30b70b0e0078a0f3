"""What SASRec and BERT4Rec share: one config, item + position embeddings, a Transformer encoder, tied output.

Inputs are left-padded item_idx sequences (0 = padding) of length max_len, so the newest item always sits at the
last position. Both models expose `user_vectors(inputs)` [B, d] and `item_vectors()` [n_items + 1, d] (row 0 is
padding), so evaluation and scoring are one matrix product whichever model trained; and `training_pairs(inputs,
targets)` -> (hidden [N, d], target item_idx [N]) for the positions a loss is computed on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

PAD = 0
MODEL_NAMES = ("sasrec", "bert4rec")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from library code (what the registry stores next to the weights)."""

    n_items: int  # catalog size; item_idx runs 1..n_items, 0 is padding (BERT4Rec adds n_items + 1 = [MASK])
    max_len: int
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    norm_first: bool = True  # pre-LN blocks (stable without warm-up) or the original post-LN
    name: Literal["sasrec", "bert4rec"] = "sasrec"
    mask_prob: float = 0.2  # BERT4Rec: share of positions masked in training

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 2:
            raise ValueError(f"need n_items >= 1 and max_len >= 2, got {self.n_items}, {self.max_len}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}: expected one of {MODEL_NAMES}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)


class SequenceEncoder(nn.Module):
    """Embeddings (std 0.02: PyTorch's default std 1 drowns the position signal and ruins quality) + encoder."""

    extra_tokens = 0  # vocabulary rows after the items (BERT4Rec's [MASK])
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.item_emb = nn.Embedding(config.n_items + 1 + self.extra_tokens, d, padding_idx=PAD)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(d, config.heads, dim_feedforward=4 * d, dropout=config.dropout,
                                           activation="gelu", batch_first=True, norm_first=config.norm_first)
        self.encoder = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d) if config.norm_first else nn.Identity()
        blocked = torch.ones(config.max_len, config.max_len, dtype=torch.bool)
        self.register_buffer("future", torch.triu(blocked, diagonal=1) if self.causal else ~blocked,
                             persistent=False)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] item_idx -> [B, L] x d hidden states (zero at padding positions)."""
        _, length = input_ids.shape
        if length != self.config.max_len:
            raise ValueError(f"input length {length} != max_len {self.config.max_len}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.item_emb(input_ids) * math.sqrt(self.config.dim) + self.pos_emb(positions)
        h = self.encoder(self.emb_dropout(x), mask=self._attention_mask(input_ids))
        return self.final_norm(h) * (input_ids != PAD).unsqueeze(-1)

    def _attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B*heads, L, L] True = may not attend: padding keys (and the future, in the causal model).

        The diagonal stays open, so a padding query still attends to itself: a row with every key masked
        would turn into NaN and leak into later layers through 0 * NaN.
        """
        length = input_ids.shape[1]
        pad_keys = (input_ids == PAD).unsqueeze(1)  # [B, 1, L]
        blocked = self.future[-length:, -length:].unsqueeze(0) | pad_keys
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=input_ids.device)
        return blocked.repeat_interleave(self.config.heads, dim=0)

    def item_vectors(self) -> torch.Tensor:
        """[n_items + 1, d] output item vectors, tied to the input embedding (row 0 is padding)."""
        return self.item_emb.weight[: self.config.n_items + 1]

    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def explain_user(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: [B, L] -> (user_vectors(input_ids) [B, d], attribution [B, L] >= 0 of each input position).
        Scoring uses it to say which history item a recommendation comes from."""
        raise NotImplementedError

    def _last_position(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode hidden state at the last position [B, d] and its attention rollout over the inputs [B, L].

        Rollout (Abnar & Zuidema 2020): per layer the head-averaged attention plus the residual (0.5 A + 0.5 I),
        multiplied through the layers: how much the last position draws on each input position. Gradient-free,
        and cheaper than forward(): columns that are padding in every row are cut (no real position attends to
        padding), and the last layer computes its last query only. Same vector as forward()[:, -1].
        """
        batch, length = input_ids.shape
        real = (input_ids != PAD).any(dim=0).nonzero()
        first = int(real[0]) if len(real) else length - 1
        ids = input_ids[:, first:]
        n = ids.shape[1]
        positions = torch.arange(first, length, device=ids.device)
        x = self.item_emb(ids) * math.sqrt(self.config.dim) + self.pos_emb(positions)
        mask = self._attention_mask(ids)
        eye = torch.eye(n, device=ids.device)
        rollout = eye.expand(batch, n, n)
        layers = list(self.encoder.layers)
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            src = layer.norm1(x) if layer.norm_first else x
            query, residual = (src[:, -1:], x[:, -1:]) if last else (src, x)
            attended, weights = layer.self_attn(query, src, src, attn_mask=mask[:, -query.shape[1]:],
                                                need_weights=True, average_attn_weights=True)
            if layer.norm_first:
                x = residual + attended
                x = x + _feed_forward(layer, layer.norm2(x))
            else:
                x = layer.norm1(residual + attended)
                x = layer.norm2(x + _feed_forward(layer, x))
            rollout = (0.5 * weights + 0.5 * eye[-query.shape[1]:]) @ rollout
        hidden = self.final_norm(x[:, -1]) * (ids[:, -1:] != PAD)
        attribution = torch.zeros(batch, length, device=ids.device)
        attribution[:, first:] = rollout[:, -1]
        return hidden, attribution

    def training_pairs(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """The feed-forward block of an encoder layer, as its forward applies it (dropout is identity in eval)."""
    return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))
