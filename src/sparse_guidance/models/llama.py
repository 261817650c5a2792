"""Llama-style transformer parts of the text-to-image track (paper App. A.1): no biases in any
linear layer, RMSNorm pre-normalisation, SwiGLU feed-forward with ratio 8/3, and axial 2-D rotary
position embeddings on (h, w) token positions as in Crowson et al.'s HDiT.

Shapes: N batch, T image tokens (or K kept), L text tokens, D width, H heads, d = D / H.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def swiglu_hidden(dim: int, ratio: float = 8 / 3, multiple_of: int = 64) -> int:
    """Hidden width of the SwiGLU feed-forward: ratio·D rounded up to a multiple (Llama's rule)."""
    return multiple_of * -(-int(ratio * dim) // multiple_of)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) · w3 x), without biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


# ---------------------------------------------------------------------------------------------
# Axial 2-D RoPE: half of each head's rotation pairs turn with the row h, half with the column w
# ---------------------------------------------------------------------------------------------

def grid_positions(grid: int) -> torch.Tensor:
    """(h, w) of every patch token in raster order: (T, 2) float, T = grid²."""
    h, w = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.stack([h.flatten(), w.flatten()], dim=-1).float()


def rope_pairs(head_dim: int) -> int:
    """The rotation pairs of a head, d/2 (d/4 per axis: d must be divisible by 4)."""
    if head_dim % 4:
        raise ConfigError(f"axial RoPE needs a head width divisible by 4, not {head_dim}.")
    return head_dim // 2


def axial_rope_angles(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles (..., T, d/2) of tokens at positions pos (..., T, 2): d/4 frequencies
    θ^(-i/(d/4)) per axis, the first d/4 pairs turned by h, the next d/4 by w."""
    n = rope_pairs(head_dim) // 2
    freqs = theta ** (-torch.arange(n, dtype=torch.float32, device=pos.device) / n)  # (d/4,)
    return torch.cat([pos[..., :1] * freqs, pos[..., 1:2] * freqs], dim=-1)  # (..., T, d/2)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate x (N, H, T, d) by angles (N, T, d/2): pair (i, i + d/2) turns by angles[..., i]."""
    cos, sin = angles.cos()[:, None].to(x.dtype), angles.sin()[:, None].to(x.dtype)  # (N, 1, T, d/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """Multi-head attention without biases: self-attention, with RoPE on queries and keys when
    angles are given, or (cross=True) attention to a context (N, L, D). ``mask`` (N, L or T) marks
    the keys that may be attended to (text padding)."""

    def __init__(self, dim: int, num_heads: int, cross: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"width {dim} is not divisible by num_heads={num_heads}.")
        self.num_heads, self.cross = num_heads, cross
        if cross:
            self.q = nn.Linear(dim, dim, bias=False)
            self.kv = nn.Linear(dim, 2 * dim, bias=False)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def _heads(self, x):
        n, t, _ = x.shape
        return x.reshape(n, t, self.num_heads, -1).transpose(1, 2)  # (N, H, T, d)

    def forward(self, x, angles=None, context=None, mask=None):
        if self.cross:
            q, (k, v) = self._heads(self.q(x)), map(self._heads, self.kv(context).chunk(2, dim=-1))
        else:
            q, k, v = map(self._heads, self.qkv(x).chunk(3, dim=-1))
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        keys = None if mask is None else mask[:, None, None, :]  # (N, 1, 1, L): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # (N, H, T, d)
        return self.proj(out.transpose(1, 2).flatten(2))  # (N, T, D)


class TransformerLayer(nn.Module):
    """A pre-norm bidirectional layer: x + attn(norm x), then + SwiGLU(norm x) (the text refiner)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim, eps=1e-6), nn.RMSNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.mlp = SwiGLU(dim, swiglu_hidden(dim))

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))
