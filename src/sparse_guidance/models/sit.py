"""SiT/DiT backbone with adaLN-Zero and TREAD token routing (paper §3.1, Eq. 5).

Parameter names follow the official DiT/SiT layout (x_embedder, t_embedder, y_embedder, blocks,
final_layer), so released DiT/SiT checkpoints load without renaming (see checkpoint.py).

Shapes: N batch, C latent channels, H=W latent size, p patch size, T = (H/p)² tokens,
D hidden width, K kept tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conditioning import LabelEmbedder
from .sparsity import check_gamma, gather_tokens, scatter_tokens, select_tokens


def modulate(x, shift, scale):
    """adaLN: x (N, T, D), shift/scale (N, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# Embedders
# ---------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, T, D) with a p×p stride-p convolution."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, T, D)


class TimestepEmbedder(nn.Module):
    """Scalar t -> (N, D): sinusoidal frequencies followed by a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def frequencies(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb  # (N, dim)

    def forward(self, t):
        return self.mlp(self.frequencies(t, self.frequency_size).to(self.mlp[0].weight.dtype))


def sincos_pos_embed(dim: int, grid: int) -> np.ndarray:
    """2-D sin-cos positional embedding, (grid², dim): half the channels encode rows, half columns."""
    def axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([axis(dim // 2, gw), axis(dim // 2, gh)], axis=1)


# ---------------------------------------------------------------------------------------------
# Transformer block
# ---------------------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"width {dim} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, D/heads)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on a vector c (N, cond_size)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, cond_size: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_size or hidden_size, 6 * hidden_size))

    def forward(self, x, c):
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        x = x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))
        return x  # (N, T, D)


class FinalLayer(nn.Module):
    """adaLN + linear: (N, T, D) -> (N, T, p²·C_out)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, cond_size: int | None = None):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_size or hidden_size, 2 * hidden_size))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ---------------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """A TREAD route: tokens skip blocks start..end (both inclusive) at rate γ (Eq. 5)."""
    start: int
    end: int

    @classmethod
    def parse(cls, spec) -> "Route":
        """Accept Route, (start, end), [start, end] or "start:end"."""
        if isinstance(spec, Route):
            return spec
        try:
            if isinstance(spec, str):
                a, b = spec.split(":")
                return cls(int(a), int(b))
            a, b = spec
            return cls(int(a), int(b))
        except (TypeError, ValueError):
            raise ConfigError(f"route {spec!r} is not understood; write it as 'start:end' or [start, end] "
                              "(block indices, both inclusive).")


def check_routes(routes, depth: int):
    """Routes must lie inside the blocks 0..depth-1 and must not overlap."""
    last_end = -1
    for r in sorted(routes, key=lambda r: r.start):
        if not 0 <= r.start <= r.end < depth:
            raise ConfigError(f"route {r.start}:{r.end} lies outside the model's blocks 0..{depth - 1}; "
                              "a route needs 0 <= start <= end < depth.")
        if r.start <= last_end:
            raise ConfigError(f"route {r.start}:{r.end} overlaps an earlier route ending at block {last_end}; "
                              "routes must not overlap.")
        last_end = r.end


def active_routes(routes, gamma: float, keep=None) -> tuple[dict, set]:
    """The routes a forward takes: {start block: route} and the end blocks, both empty at γ = 0
    without ``keep`` (the dense forward); ConfigError when a model without routes is asked to route."""
    if not (gamma > 0 or keep is not None):
        return {}, set()
    if not routes:
        raise ConfigError(f"gamma={gamma} asks for token routing, but this model has no routes; "
                          "build it with routes=[(start, end)] or sample it at gamma=0.")
    return {r.start: r for r in routes}, {r.end for r in routes}


def unpatchify(x, patch_size: int, grid: int, channels: int):
    """(N, T, p²·C) -> (N, C, H, W)."""
    p, g, c = patch_size, grid, channels
    x = x.reshape(x.shape[0], g, g, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(x.shape[0], c, g * p, g * p)  # (N, C, g, p, g, p)


class SiT(nn.Module):
    """Class-conditional SiT/DiT backbone predicting the velocity v(x_t, t, y) (Eq. 2).

    With ``routes`` it is a TREAD model: at a rate γ > 0 each route gathers the kept tokens
    before its start block, runs blocks start..end on them only, and scatters the result back
    into the activations saved before start; removed tokens pass unchanged (identity, Eq. 5).
    γ = 0 is exactly the dense forward.
    """

    sparsity = "routing"

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, num_classes=1000, learn_sigma=False, routes=(), train_gamma=0.0):
        super().__init__()
        if input_size % patch_size:
            raise ConfigError(f"input_size={input_size} is not divisible by patch_size={patch_size}.")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.num_classes, self.learn_sigma = num_classes, learn_sigma
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.routes = tuple(Route.parse(r) for r in routes)
        self._check_routes()
        self.train_gamma = check_gamma(train_gamma, "train_gamma")
        self.grid = input_size // patch_size
        self.num_tokens = self.grid ** 2

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([SiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def _check_routes(self):
        check_routes(self.routes, self.depth)

    # -- initialisation (adaLN-Zero: every block starts as the identity) ------------------------
    def initialize_weights(self):
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(basic)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_pos_embed(self.hidden_size, self.grid)).float()[None])
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        self._zero_final(self.final_layer)

    @staticmethod
    def _zero_final(layer: FinalLayer):
        for lin in (layer.adaLN_modulation[-1], layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    # -- helpers --------------------------------------------------------------------------------
    @property
    def cond_embedder(self) -> LabelEmbedder:
        return self.y_embedder

    def unpatchify(self, x):
        return unpatchify(x, self.patch_size, self.grid, self.out_channels)

    def embed(self, x, t, y):
        """Tokens (N, T, D) with positions added once at the input, and the adaLN vector c (N, D)."""
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        return tokens, c

    def head(self, x, c):
        out = self.unpatchify(self.final_layer(x, c))  # (N, C_out, H, W)
        return out[:, : self.in_channels] if self.learn_sigma else out

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x, t, y, gamma: float = 0.0, generator: torch.Generator | None = None, keep=None):
        """Velocity (N, C, H, W) for latents x (N, C, H, W), times t (N,) in [0, 1], labels y (N,).

        gamma: fraction of tokens removed on every route (0 = dense). Each route draws its own
        subset from ``generator`` unless ``keep`` (N, K) fixes the kept indices for all routes.
        """
        gamma = check_gamma(gamma)
        starts, ends = active_routes(self.routes, gamma, keep)
        tokens, c = self.embed(x, t, y)
        saved = route_keep = None
        for i, block in enumerate(self.blocks):
            if i in starts:
                route_keep = keep if keep is not None else select_tokens(
                    tokens.shape[0], self.num_tokens, gamma, generator, tokens.device)
                saved = tokens
                tokens = gather_tokens(tokens, route_keep)  # (N, K, D)
            tokens = block(tokens, c)
            if i in ends:
                tokens = scatter_tokens(saved, route_keep, tokens)  # (N, T, D)
        return self.head(tokens, c)
