"""Conditioning embedders: what the backbone is conditioned on, behind one interface.

Guidance needs three kinds of condition for a batch of labels ``y``: the condition itself, the
null condition ∅ (CFG, Eq. 3 and 8), and an independently drawn random condition (ICG). Both the
class-label embedder below and the text-to-image track's prompt embedder (text.py) give them as
indices (IndexedConditions), so the sampler, guidance and the FLOP counter serve both unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


class IndexedConditions(nn.Module):
    """Conditions given as indices 0..num_classes-1, with index ``num_classes`` the null condition ∅:
    class labels here, prompts of a caption bank in text.py. The three conditions guidance needs
    (the condition, ∅, an independent random one) and CFG's condition dropout, once for both."""

    num_classes: int

    def null(self, y: torch.Tensor) -> torch.Tensor:
        """The null condition for every sample of y."""
        return torch.full_like(y, self.num_classes)

    def random(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """An independent uniformly random condition per sample (ICG's condition)."""
        dev = generator.device if generator is not None else y.device
        return torch.randint(0, self.num_classes, y.shape, generator=generator, device=dev).to(y.device)

    def drop(self, y: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Condition dropout for CFG training: replace each condition by ∅ with probability ``prob``."""
        if prob <= 0:
            return y
        dev = generator.device if generator is not None else y.device
        drop = torch.rand(y.shape, generator=generator, device=dev).to(y.device) < prob
        return torch.where(drop, self.null(y), y)


class LabelEmbedder(IndexedConditions):
    """Class label -> (N, D) vector. Row ``num_classes`` of the table is the null class ∅.

    Parameter name ``embedding_table`` follows the official DiT/SiT layout.
    """

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)  # (N, D)
