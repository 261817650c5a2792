"""TR-DiT: the paper's text-to-image backbone (Sec. 4.4, App. A.1, Table A1) with TREAD routing.

Llama-style blocks (llama.py): RMSNorm pre-normalisation, no biases, SwiGLU 8/3, axial 2-D RoPE
on the image tokens' (h, w) positions; after self-attention, cross-attention from the image
tokens to the prompt's tokens (text.py). The time t enters through one shared modulation of all
blocks (PixArt-α's adaLN-single: t -> 6·D shift/scale/gate, plus a learned (6, D) table per block),
zero-initialised so that every block starts as the identity, as DiT's adaLN-Zero does.

Why adaLN-single: Table A1 (width 2048, 16 heads, 34 layers) with it has 2.45B parameters besides
the frozen text encoder, the paper's "2.5B"; DiT's per-block adaLN-Zero (a D -> 6·D linear in
each of the 34 blocks) would add 0.86B, about 3.3B (test_models checks both counts).

TREAD with RoPE: "we mask tokens and positional indices simultaneously" (App. A.1). A route gathers
the kept tokens and their rotation angles with the same indices, so attention inside the route
sees every token at its own (h, w); removed tokens skip the route unchanged (Eq. 5).

Shapes: N batch, C latent channels, T = (H/p)² image tokens, K kept, L text tokens, D width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .llama import Attention, SwiGLU, axial_rope_angles, grid_positions, rope_pairs, swiglu_hidden
from .sit import Route, TimestepEmbedder, active_routes, check_routes, unpatchify
from .sparsity import check_gamma, gather_tokens, scatter_tokens, select_tokens
from .text import PromptEmbedder

# width, depth, heads and the text encoder's token width and length (Table A1 for 2.5B:
# InternVL3-2B's language model is 1536 wide); T for the embedded default (CPU, MiniLM's 384).
FREQUENCY_SIZE = 256  # sinusoidal features of t, as in DiT/SiT
TRDIT_SIZES = {
    "TR-DiT-2.5B": dict(hidden_size=2048, depth=34, num_heads=16, text_dim=1536, text_len=256),
    "TR-DiT-B": dict(hidden_size=768, depth=12, num_heads=12, text_dim=1536, text_len=256),
    "TR-DiT-T": dict(hidden_size=128, depth=6, num_heads=4, text_dim=384, text_len=48),
}


def modulate(x, shift, scale):
    """x (N, T, D), shift/scale (N, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TRDiTBlock(nn.Module):
    """x + g1·attn(mod(norm x), RoPE) ; x + cross(norm x, text) ; x + g2·SwiGLU(mod(norm x))."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.RMSNorm(dim, eps=1e-6) for _ in range(3))
        self.attn = Attention(dim, num_heads)
        self.cross_attn = Attention(dim, num_heads, cross=True)
        self.mlp = SwiGLU(dim, swiglu_hidden(dim))
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))  # added to the shared modulation

    def forward(self, x, angles, t6, context, context_mask):
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.scale_shift_table[None] + t6).unbind(1)  # (N, D) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), angles=angles)
        x = x + self.cross_attn(self.norm2(x), context=context, mask=context_mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm3(x), shift2, scale2))


class TRDiT(nn.Module):
    """Text-conditional velocity v(x_t, t, prompt) (Eq. 2); ``y`` indexes the prompt bank (text.py)."""

    sparsity = "routing"

    def __init__(self, input_size=64, patch_size=2, in_channels=4, hidden_size=2048, depth=34, num_heads=16,
                 num_prompts=1, text_dim=1536, text_len=256, refiner_depth=2, routes=(), train_gamma=0.0):
        super().__init__()
        if input_size % patch_size:
            raise ConfigError(f"input_size={input_size} is not divisible by patch_size={patch_size}.")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.out_channels, self.learn_sigma = in_channels, False
        self.routes = tuple(Route.parse(r) for r in routes)
        check_routes(self.routes, depth)
        self.train_gamma = check_gamma(train_gamma, "train_gamma")
        self.grid = input_size // patch_size
        self.num_tokens = self.grid ** 2
        self.head_dim = hidden_size // num_heads

        self.x_embedder = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=False)
        self.t_embedder = nn.Sequential(nn.Linear(FREQUENCY_SIZE, hidden_size, bias=False), nn.SiLU(),
                                        nn.Linear(hidden_size, hidden_size, bias=False))
        self.t_block = nn.Linear(hidden_size, 6 * hidden_size, bias=False)  # adaLN-single
        self.y_embedder = PromptEmbedder(num_prompts, text_dim, text_len, hidden_size, num_heads, refiner_depth)
        angles = (torch.empty(self.grid ** 2, rope_pairs(self.head_dim)) if torch.empty(0).is_meta  # shapes only
                  else axial_rope_angles(grid_positions(self.grid), self.head_dim))  # (no decomposition on meta)
        self.register_buffer("rope_angles", angles, persistent=False)  # (T, d/2): each patch's (h, w) rotation, once
        self.blocks = nn.ModuleList([TRDiTBlock(hidden_size, num_heads) for _ in range(depth)])
        self.final_norm = nn.RMSNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.final_table = nn.Parameter(torch.zeros(2, hidden_size))
        self.final_linear = nn.Linear(hidden_size, patch_size * patch_size * in_channels, bias=False)
        self.initialize_weights()

    def initialize_weights(self):
        """Xavier for linear layers, N(0, 0.02) for the time MLP; zero for the shared modulation,
        the cross-attention outputs and the final layer: the fresh model predicts 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
        w = self.x_embedder.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.t_embedder[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder[2].weight, std=0.02)
        nn.init.zeros_(self.t_block.weight)
        for blk in self.blocks:
            nn.init.zeros_(blk.cross_attn.proj.weight)
        nn.init.zeros_(self.final_linear.weight)

    @property
    def cond_embedder(self) -> PromptEmbedder:
        return self.y_embedder

    def unpatchify(self, x):
        return unpatchify(x, self.patch_size, self.grid, self.out_channels)

    def forward(self, x, t, y, gamma: float = 0.0, generator: torch.Generator | None = None, keep=None):
        """Velocity (N, C, H, W) for latents x, times t (N,) in [0, 1] and prompt indices y (N,).
        gamma and keep route tokens as in SiT.forward; their (h, w) angles travel with them."""
        gamma = check_gamma(gamma)
        starts, ends = active_routes(self.routes, gamma, keep)
        n = x.shape[0]
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)  # (N, T, D)
        angles = self.rope_angles.expand(n, -1, -1)  # (N, T, d/2)
        freqs = TimestepEmbedder.frequencies(t, FREQUENCY_SIZE).to(self.t_embedder[0].weight.dtype)
        t_emb = self.t_embedder(freqs)  # (N, D)
        t6 = self.t_block(F.silu(t_emb)).view(n, 6, -1)  # (N, 6, D)
        context, context_mask = self.y_embedder(y)  # (N, L, D), (N, L)
        saved = route_keep = None
        for i, block in enumerate(self.blocks):
            if i in starts:
                route_keep = keep if keep is not None else select_tokens(n, self.num_tokens, gamma, generator,
                                                                         tokens.device)
                saved = tokens, angles
                tokens, angles = gather_tokens(tokens, route_keep), gather_tokens(angles, route_keep)  # (N, K, ·)
            tokens = block(tokens, angles, t6, context, context_mask)
            if i in ends:
                tokens, angles = scatter_tokens(saved[0], route_keep, tokens), saved[1]  # (N, T, D)
        shift, scale = (self.final_table[None] + t_emb[:, None]).unbind(1)
        return self.unpatchify(self.final_linear(modulate(self.final_norm(tokens), shift, scale)))


def build_trdit(name: str, **kwargs) -> TRDiT:
    """A registered TR-DiT size; kwargs (input_size, in_channels, num_prompts, routes, ...) override it."""
    if name not in TRDIT_SIZES:
        raise ConfigError(f"unknown model {name!r}; TR-DiT sizes: {', '.join(TRDIT_SIZES)}.")
    return TRDiT(**{**TRDIT_SIZES[name], **kwargs})
