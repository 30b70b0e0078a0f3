"""BSARec (Shin et al., AAAI 2024): SASRec whose blocks mix self-attention with a fixed low-pass/high-pass filter,
an inductive bias towards the smooth trend of a history that attention alone learns poorly on sparse data.

Each block's token mixer is `alpha * filter(x) + (1 - alpha) * attention(x)` with
`filter(x) = low(x) + beta**2 * (x - low(x))` (beta a learned per-dimension rescaling of the high frequencies).
The original takes low(x) from an FFT over the whole window, which lets every position read the items after it:
trained to predict the next item at every position, such a model learns to copy the future. Here low(x) is
causal: the mean of the last `window` real positions up to and including this one (left padding is skipped, so a
short history is averaged over its own items only). `window` plays the part of the original's cut-off c
(keeping the lowest c // 2 + 1 frequencies of max_len positions smooths over about max_len / c of them).
Training, user and item vectors are SASRec's.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from lakerec.models.base import PAD, _feed_forward
from lakerec.models.sasrec import SASRec


def causal_lowpass(x: torch.Tensor, real: torch.Tensor, window: int) -> torch.Tensor:
    """[B, L, d] -> [B, L, d]: at each position the mean of x over the real positions among the last `window`
    (itself included); zero where there is none (padding)."""
    keep = real.unsqueeze(1).to(x.dtype)  # [B, 1, L]
    sums = F.avg_pool1d(F.pad(x.transpose(1, 2) * keep, (window - 1, 0)), window, stride=1)
    counts = F.avg_pool1d(F.pad(keep, (window - 1, 0)), window, stride=1)
    return (sums / counts.clamp_min(0.5 / window)).transpose(1, 2)


def lowpass_weights(real: torch.Tensor, window: int, queries: int) -> torch.Tensor:
    """[B, q, L]: the weight causal_lowpass gives each position, for the last `queries` positions."""
    length = real.shape[1]
    pos = torch.arange(length, device=real.device)
    band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - window)  # [L, L] query x key
    weights = (band[None] & real[:, None, :]).to(torch.float32)[:, -queries:]
    return weights / weights.sum(-1, keepdim=True).clamp_min(1.0)


class BSARecLayer(nn.TransformerEncoderLayer):
    """A Transformer block (pre- or post-LN, as configured) whose token mixer is the filter/attention mix."""

    def __init__(self, dim: int, heads: int, dropout: float, norm_first: bool, alpha: float, window: int):
        super().__init__(dim, heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu", batch_first=True,
                         norm_first=norm_first)
        self.alpha, self.window = alpha, window
        self.sqrt_beta = nn.Parameter(torch.randn(dim))  # as the original: beta = sqrt_beta ** 2 >= 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout1(self.mix(self.norm1(x), mask, real))
            return x + _feed_forward(self, self.norm2(x))
        x = self.norm1(x + self.dropout1(self.mix(x, mask, real)))
        return self.norm2(x + _feed_forward(self, x))

    def mix(self, src: torch.Tensor, mask: torch.Tensor, real: torch.Tensor, queries: int | None = None,
            attended: torch.Tensor | None = None) -> torch.Tensor:
        """alpha * (low + beta * high) + (1 - alpha) * attention, for the last `queries` positions (all: None)."""
        queries = queries or src.shape[1]
        if attended is None:
            attended = self.self_attn(src[:, -queries:], src, src, attn_mask=mask[:, -queries:],
                                      need_weights=False)[0]
        low = causal_lowpass(src, real, self.window)[:, -queries:]
        filtered = low + self.sqrt_beta ** 2 * (src[:, -queries:] - low)
        return self.alpha * filtered + (1 - self.alpha) * attended


class _Blocks(nn.Module):
    """The stack of BSARec blocks (`layers`, as nn.TransformerEncoder names them, so rollout walks them alike)."""

    def __init__(self, block: BSARecLayer, n: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(block) for _ in range(n))


class BSARec(SASRec):
    def _build_encoder(self) -> nn.Module:
        c = self.config
        block = BSARecLayer(c.dim, c.heads, c.dropout, c.norm_first, c.bsarec_alpha, c.bsarec_window)
        return _Blocks(block, c.layers)

    def _encode(self, x: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        mask, real = self._attention_mask(input_ids), input_ids != PAD
        for layer in self.encoder.layers:
            x = layer(x, mask, real)
        return x

    def _mix_tokens(self, layer: BSARecLayer, src: torch.Tensor, queries: int, mask: torch.Tensor,
                    real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed output, and for the rollout the attention weights mixed with the low-pass's averaging weights
        (the high-pass, a per-dimension rescaling of a position's own state, is left to the residual term)."""
        attended, weights = super()._mix_tokens(layer, src, queries, mask, real)
        mixed = layer.mix(src, mask, real, queries, attended)
        low = lowpass_weights(real, layer.window, queries).to(weights.dtype)
        return mixed, layer.alpha * low + (1 - layer.alpha) * weights
