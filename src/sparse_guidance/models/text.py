"""Prompts as conditions for TR-DiT (paper App. A.1, after Ma et al.'s LI-DiT): the token states
of a frozen text encoder for a bank of prompts, computed once and cached, then a trainable
projection and two transformer layers (the refiner) in front of TR-DiT's cross-attention.

A condition is an index into the bank, (N,) long: 0..K-1 the bank's prompts, K the empty prompt ∅
(CFG's null condition); ICG's random condition is another prompt of the bank. So the sampler, the
guidance recipes and the FLOP counter take prompts exactly as they take class labels
(IndexedConditions).

The bank is a buffer that is not saved with the weights: a model trains with its training captions'
features and samples with its evaluation prompts' (``set_bank``). Every caption the encoder reads
starts with the paper's system prompt (SYSTEM_PROMPT).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .conditioning import IndexedConditions
from .llama import TransformerLayer

SYSTEM_PROMPT = ("Describe the image by detailing the color, shape, size, texture, quantity, text, and spatial "
                 "relationships of the objects.")


class PromptEmbedder(IndexedConditions):
    """Prompt index -> (context (N, L, D), key mask (N, L)) from the cached bank."""

    def __init__(self, num_prompts: int, text_dim: int, text_len: int, hidden_size: int, num_heads: int,
                 refiner_depth: int = 2):
        super().__init__()
        self.num_classes, self.text_dim, self.text_len = num_prompts, text_dim, text_len
        self.register_buffer("bank", torch.zeros(num_prompts + 1, text_len, text_dim), persistent=False)
        self.register_buffer("bank_mask", torch.ones(num_prompts + 1, text_len, dtype=torch.bool), persistent=False)
        self.proj = nn.Linear(text_dim, hidden_size, bias=False)
        self.refiner = nn.ModuleList([TransformerLayer(hidden_size, num_heads) for _ in range(refiner_depth)])

    def set_bank(self, features: torch.Tensor, mask: torch.Tensor) -> None:
        """The frozen encoder's token states of K prompts and, last, of the empty prompt:
        features (K+1, L, text_dim), mask (K+1, L) True at real tokens (at least one per prompt)."""
        if features.ndim != 3 or tuple(features.shape[1:]) != (self.text_len, self.text_dim):
            raise ConfigError(f"prompt features of shape {tuple(features.shape)}; this model reads "
                              f"(prompts + 1, {self.text_len}, {self.text_dim}): re-encode them with its text encoder.")
        if tuple(mask.shape) != tuple(features.shape[:2]) or not bool(mask.bool().any(dim=1).all()):
            raise ConfigError(f"prompt mask of shape {tuple(mask.shape)} must be {tuple(features.shape[:2])} with at "
                              "least one real token per prompt (the empty prompt keeps its start token).")
        if features.shape[0] < 2:
            raise ConfigError("a prompt bank needs at least one prompt besides the empty one.")
        self.num_classes = features.shape[0] - 1
        self.bank = features.detach().to(self.proj.weight.device, torch.float32)
        self.bank_mask = mask.detach().to(self.proj.weight.device, torch.bool)

    def forward(self, y: torch.Tensor):
        context = self.proj(self.bank[y].to(self.proj.weight.dtype))  # (N, L, D)
        mask = self.bank_mask[y]  # (N, L)
        for layer in self.refiner:
            context = layer(context, mask)
        return context, mask
