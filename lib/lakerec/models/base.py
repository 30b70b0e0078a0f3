"""What SASRec and BERT4Rec share: one config, item + position embeddings, a Transformer encoder, tied output.

Inputs are left-padded item_idx sequences (0 = padding) of length max_len, so the newest item always sits at the
last position. Both models expose `user_vectors(inputs)` [B, d] and `item_vectors()` [n_items + 1, d] (row 0 is
padding), so evaluation and scoring are one matrix product whichever model trained; and `training_pairs(inputs,
targets)` -> (hidden [N, d], target item_idx [N]) for the positions a loss is computed on, and
`training_pairs_and_users` the same plus the windows' user vectors (train.contrastive's first view).

Text-aware items (`text_dim` > 0): an item's vector fuses its ID embedding with a projection of its pretrained
text embedding (`gate`: a learned per-dimension sigmoid mix; `sum`). The text embeddings of the catalog and the
mask of items that had ID history in training are buffers, so they travel with the weights into the registry
and to the scorers. Items without ID history are represented by their projected text alone (the gate is not
applied: gating a missing ID would shrink a new item's vector and bury it under warm items), and in training a
share `id_dropout` of ID embeddings is dropped the same way, so the model learns to rank from text as well.
`item_vectors_from_text(text_emb)` gives the vector of an item outside the model's index (a new catalog item).

Item dropout (`item_dropout`, training only): a share of the input items' embeddings is zeroed per step (the
position embedding stays), so the model cannot lean on any single history item: regularisation for sparse data.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lakerec.config import MODEL_NAMES, ModelName

PAD = 0


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
    name: ModelName = "sasrec"
    mask_prob: float = 0.2  # BERT4Rec: share of positions masked in training
    text_dim: int = 0  # > 0: text-aware items over text embeddings of this size (0: ID-only)
    text_fusion: Literal["gate", "sum"] = "gate"
    id_dropout: float = 0.0  # text-aware: share of items whose ID is dropped per training step (text alone)
    text_encoder: str | None = None  # the encoder whose silver.item_embeddings rows the text came from
    item_dropout: float = 0.0  # share of input item embeddings zeroed per training step
    bsarec_alpha: float = 0.7  # BSARec: weight of the causal filter beside self-attention (1 - alpha)
    bsarec_window: int = 10  # BSARec: items the causal low-pass averages

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 2:
            raise ValueError(f"need n_items >= 1 and max_len >= 2, got {self.n_items}, {self.max_len}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}: expected one of {MODEL_NAMES}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")
        if self.text_dim < 0 or self.text_fusion not in ("gate", "sum") or not 0 <= self.id_dropout < 1:
            raise ValueError(f"text_dim >= 0, text_fusion gate|sum and id_dropout in [0, 1) expected, got "
                             f"{self.text_dim}, {self.text_fusion!r}, {self.id_dropout}")
        if not 0 <= self.item_dropout < 1 or not 0 <= self.bsarec_alpha <= 1 or self.bsarec_window < 1:
            raise ValueError(f"item_dropout in [0, 1), bsarec_alpha in [0, 1] and bsarec_window >= 1 expected, got "
                             f"{self.item_dropout}, {self.bsarec_alpha}, {self.bsarec_window}")

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
        self.encoder = self._build_encoder()
        self.final_norm = nn.LayerNorm(d) if config.norm_first else nn.Identity()
        blocked = torch.ones(config.max_len, config.max_len, dtype=torch.bool)
        self.register_buffer("future", torch.triu(blocked, diagonal=1) if self.causal else ~blocked,
                             persistent=False)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        if config.text_dim:
            vocab = config.n_items + 1 + self.extra_tokens
            self.register_buffer("text_emb", torch.zeros(vocab, config.text_dim))  # row 0 and [MASK]: no text
            # 1.0: the item had ID history in training (float, not bool: Horovod broadcasts no bool tensors)
            self.register_buffer("id_known", torch.ones(vocab))
            self.text_proj = nn.Linear(config.text_dim, d)  # std 0.02 on unit-norm text: the ID embeddings' scale
            nn.init.normal_(self.text_proj.weight, std=0.02)
            nn.init.zeros_(self.text_proj.bias)
            if config.text_fusion == "gate":
                self.gate = nn.Linear(2 * d, d)
                nn.init.zeros_(self.gate.weight)
                nn.init.zeros_(self.gate.bias)  # starts as the mean of ID and text

    def _build_encoder(self) -> nn.Module:
        """The Transformer blocks (a subclass with another token mixer builds its own, see bsarec.py)."""
        c = self.config
        block = nn.TransformerEncoderLayer(c.dim, c.heads, dim_feedforward=4 * c.dim, dropout=c.dropout,
                                           activation="gelu", batch_first=True, norm_first=c.norm_first)
        return nn.TransformerEncoder(block, c.layers, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] item_idx -> [B, L] x d hidden states (zero at padding positions).

        Columns that are padding in every row are cut before the encoder and zero-filled after: no real position
        attends to padding, so the result is the same, and a batch of short histories costs what its longest
        one needs, not max_len (the feed groups windows of similar length into batches for this).
        """
        _, length = input_ids.shape
        if length != self.config.max_len:
            raise ValueError(f"input length {length} != max_len {self.config.max_len}")
        first = first_real_column(input_ids)
        ids = input_ids[:, first:]
        positions = torch.arange(first, length, device=input_ids.device)
        items = self.drop_items(self.item_repr(ids), ids)
        x = items * math.sqrt(self.config.dim) + self.pos_emb(positions)
        h = self._encode(self.emb_dropout(x), ids)
        return F.pad(self.final_norm(h) * (ids != PAD).unsqueeze(-1), (0, 0, first, 0))

    def _encode(self, x: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask=self._attention_mask(input_ids))

    def drop_items(self, items: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Training with item_dropout: zero a random share of the input items' embeddings [B, L, d] (the rest
        scaled by 1 / (1 - p), as dropout does, so eval sees the same expected scale). Real items only: padding
        is zero already and BERT4Rec's [MASK] is the question itself. Draws from the global torch RNG, which the
        training loop seeds per (seed, epoch, rank)."""
        p = self.config.item_dropout
        if not self.training or p == 0:
            return items
        real = (input_ids > PAD) & (input_ids <= self.config.n_items)
        dropped = real & (torch.rand(input_ids.shape, device=input_ids.device) < p)
        scale = torch.where(real, 1 / (1 - p), 1.0).masked_fill(dropped, 0.0)
        return items * scale.unsqueeze(-1).to(items.dtype)

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
        if not self.config.text_dim:
            return self.item_emb.weight[: self.config.n_items + 1]
        return self.item_repr(torch.arange(self.config.n_items + 1, device=self.item_emb.weight.device))

    def item_repr(self, ids: torch.Tensor) -> torch.Tensor:
        """[...] item_idx -> [..., d]: the ID embedding, fused with the projected text when text-aware.

        The ID part is dropped for items without ID history and, in training, for a random id_dropout share.
        """
        ids_emb = self.item_emb(ids)
        if not self.config.text_dim:
            return ids_emb
        keep = self.id_known[ids] > 0
        if self.training and self.config.id_dropout > 0:
            keep = keep & (torch.rand(ids.shape, device=ids.device) >= self.config.id_dropout)
        text = self.text_proj(self.text_emb[ids])
        fused = torch.where(keep.unsqueeze(-1), self._fuse(ids_emb, text), text)
        return fused * (ids != PAD).unsqueeze(-1)

    def _fuse(self, ids_emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """An item with both halves: the sum, or the gated mix."""
        if self.config.text_fusion == "sum":
            return ids_emb + text
        g = torch.sigmoid(self.gate(torch.cat([ids_emb, text], dim=-1)))
        return g * ids_emb + (1 - g) * text

    def item_vectors_from_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        """[N, text_dim] text embeddings (the model's encoder, `config.text_encoder`) -> [N, d] item vectors for
        items with no ID history: what `item_vectors()` holds for such items, so they rank on the same scale
        (score = user_vectors(inputs) @ vectors.T). For new catalog items outside the model's index."""
        if not self.config.text_dim:
            raise ValueError("an ID-only model cannot score items from text: train with train.text.enabled")
        if text_emb.ndim != 2 or text_emb.shape[1] != self.config.text_dim:
            raise ValueError(f"expected [N, {self.config.text_dim}] text embeddings, got {tuple(text_emb.shape)}")
        return self.text_proj(text_emb.to(self.text_proj.weight))

    def excluded_from_training(self) -> torch.Tensor | None:
        """[n_items + 1] bool: items the training loss must not use as negatives (text-aware: those without ID
        history, see lakerec.train.losses); None for the ID-only model, which ranks every item."""
        if not self.config.text_dim:
            return None
        return self.id_known[: self.config.n_items + 1] == 0

    def set_item_text(self, text_emb: torch.Tensor, id_known: torch.Tensor | None = None) -> None:
        """Load the catalog's text embeddings ([n_items + 1, text_dim], row i = item_idx i) and which items had ID
        history in training ([n_items + 1] bool; None: all)."""
        if not self.config.text_dim:
            raise ValueError("set_item_text on an ID-only model")
        n = self.config.n_items + 1
        if tuple(text_emb.shape) != (n, self.config.text_dim):
            raise ValueError(f"text embeddings {tuple(text_emb.shape)}, expected {(n, self.config.text_dim)}")
        with torch.no_grad():
            self.text_emb.zero_()
            self.text_emb[:n] = text_emb.to(self.text_emb)
            self.id_known.fill_(1.0)
            if id_known is not None:
                self.id_known[:n] = id_known.to(torch.bool).float()

    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def explain_user(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: [B, L] -> (user_vectors(input_ids) [B, d], attribution [B, L] >= 0 of each input position).
        Scoring uses it to say which history item a recommendation comes from."""
        raise NotImplementedError

    def _last_position(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode hidden state at the last position [B, d] and its attention rollout over the inputs [B, L].

        Rollout (Abnar & Zuidema 2020): per layer the head-averaged attention (BSARec: mixed with its filter's
        averaging weights) plus the residual (0.5 A + 0.5 I), multiplied through the layers: how much the last
        position draws on each input position. Gradient-free, and cheaper than forward(): columns that are padding
        in every row are cut (no real position attends to padding), and the last layer computes its last query
        only. Same vector as forward()[:, -1].
        """
        batch, length = input_ids.shape
        first = first_real_column(input_ids)
        ids = input_ids[:, first:]
        n = ids.shape[1]
        positions = torch.arange(first, length, device=ids.device)
        x = self.item_repr(ids) * math.sqrt(self.config.dim) + self.pos_emb(positions)
        mask = self._attention_mask(ids)
        eye = torch.eye(n, device=ids.device)
        rollout = eye.expand(batch, n, n)
        layers = list(self.encoder.layers)
        real = ids != PAD
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            src = layer.norm1(x) if layer.norm_first else x
            queries = 1 if last else n
            residual = x[:, -queries:]
            attended, weights = self._mix_tokens(layer, src, queries, mask, real)
            if layer.norm_first:
                x = residual + attended
                x = x + _feed_forward(layer, layer.norm2(x))
            else:
                x = layer.norm1(residual + attended)
                x = layer.norm2(x + _feed_forward(layer, x))
            rollout = (0.5 * weights + 0.5 * eye[-queries:]) @ rollout
        hidden = self.final_norm(x[:, -1]) * (ids[:, -1:] != PAD)
        attribution = torch.zeros(batch, length, device=ids.device)
        attribution[:, first:] = rollout[:, -1]
        return hidden, attribution

    def _mix_tokens(self, layer: nn.Module, src: torch.Tensor, queries: int, mask: torch.Tensor,
                    real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A block's token mixing for the last `queries` positions: (output [B, q, d], head-averaged weights
        [B, q, n] over the positions it drew on). Here self-attention; BSARec adds its filter."""
        return layer.self_attn(src[:, -queries:], src, src, attn_mask=mask[:, -queries:], need_weights=True,
                               average_attn_weights=True)

    def training_pairs(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def training_pairs_and_users(self, inputs: torch.Tensor, targets: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """training_pairs plus each window's user vector [B, d] under training's dropout (the next item it predicts
        is targets[:, -1]): the contrastive regulariser's first view. Here a pass of its own; SASRec shares one."""
        hidden, y = self.training_pairs(inputs, targets)
        return hidden, y, self.user_vectors(inputs)


def first_real_column(input_ids: torch.Tensor) -> int:
    """The first column of left-padded [B, L] inputs that is not padding in every row (L - 1 if all are)."""
    real = (input_ids != PAD).any(dim=0).nonzero()
    return int(real[0]) if len(real) else input_ids.shape[1] - 1


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """The feed-forward block of an encoder layer, as its forward applies it (dropout is identity in eval)."""
    return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))
