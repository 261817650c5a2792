"""MaskDiT-style token masking (paper Eq. 4, Table A2) with a masked-inference path.

The encoder (the SiT blocks) sees only the kept tokens. A small decoder maps them to its own
width, puts a learned mask token e_mask at every removed position, adds its own positional
embedding and runs a few adaLN blocks conditioned on the encoder's vector c. Removed tokens
never re-enter with their original activations.

MaskDiT's own code never masks at inference; Sparse Guidance needs it, so ``forward`` masks at
any γ (γ=0: every token is kept and no mask token is used).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .sit import FinalLayer, SiT, SiTBlock, modulate, sincos_pos_embed
from .sparsity import check_gamma, gather_tokens, scatter_tokens, select_tokens


class DecoderEmbed(nn.Module):
    """adaLN + linear from encoder width D to decoder width D_dec: (N, K, D) -> (N, K, D_dec)."""

    def __init__(self, hidden_size: int, decoder_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, decoder_size)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class MaskedSiT(SiT):
    """SiT encoder on kept tokens + MaskDiT decoder (default 8 blocks, width 512, 16 heads)."""

    sparsity = "masking"

    def __init__(self, *, decoder_depth=8, decoder_width=512, decoder_heads=16, train_gamma=0.5, **kwargs):
        """train_gamma: the masking ratio used in training (MaskDiT and Table A2: 0.5)."""
        if kwargs.pop("routes", ()):
            raise ConfigError("a masking model takes no routes; use sparsity='routing' for TREAD routes.")
        super().__init__(routes=(), train_gamma=train_gamma, **kwargs)
        d = self.hidden_size
        self.decoder_width = decoder_width
        self.decoder_embed = DecoderEmbed(d, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, decoder_width), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [SiTBlock(decoder_width, decoder_heads, cond_size=d) for _ in range(decoder_depth)])
        self.final_layer = FinalLayer(decoder_width, self.patch_size, self.out_channels, cond_size=d)
        self.initialize_weights()

    def initialize_weights(self):
        super().initialize_weights()
        if not hasattr(self, "decoder_blocks"):  # called from SiT.__init__ before the decoder exists
            return
        for m in [self.decoder_embed, *self.decoder_blocks, self.final_layer]:
            for lin in m.modules():
                if isinstance(lin, nn.Linear):
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.zeros_(lin.bias)
        grid = sincos_pos_embed(self.decoder_width, self.grid)
        self.decoder_pos_embed.data.copy_(torch.from_numpy(grid).float()[None])
        nn.init.normal_(self.mask_token, std=0.02)
        for blk in self.decoder_blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        self._zero_final(self.final_layer)

    def forward(self, x, t, y, gamma: float = 0.0, generator: torch.Generator | None = None, keep=None):
        """Velocity (N, C, H, W); γ of the tokens are masked (removed before the encoder)."""
        gamma = check_gamma(gamma)
        tokens, c = self.embed(x, t, y)  # (N, T, D)
        n = tokens.shape[0]
        if keep is None and gamma > 0:
            keep = select_tokens(n, self.num_tokens, gamma, generator, tokens.device)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)  # (N, K, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        tokens = self.decoder_embed(tokens, c)  # (N, K, D_dec)
        if keep is not None:
            full = self.mask_token.to(tokens.dtype).expand(n, self.num_tokens, -1)
            tokens = scatter_tokens(full, keep, tokens)  # (N, T, D_dec), e_mask where removed
        tokens = tokens + self.decoder_pos_embed
        for block in self.decoder_blocks:
            tokens = block(tokens, c)
        return self.head(tokens, c)
