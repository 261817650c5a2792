"""A synthetic class-conditional latent dataset for demos and tests (no download).

Class k of K is a Gaussian bump placed at the k-th of K points on a ring in a C×S×S latent grid,
with a class-specific sign pattern over channels, random amplitude and a small position jitter.
Whether a sample put its bump at its class's position (``class_accuracy``) is a cheap, honest
check that a conditional generator follows its condition.
"""
from __future__ import annotations

import math

import torch


def ring_positions(num_classes: int, size: int) -> torch.Tensor:
    """(K, 2) bump centres (row, col) on a ring of radius size/3 around the grid centre."""
    ang = torch.arange(num_classes, dtype=torch.float32) * (2 * math.pi / num_classes)
    c, r = (size - 1) / 2, size / 3
    return torch.stack([c + r * torch.sin(ang), c + r * torch.cos(ang)], dim=1)


def channel_signs(num_classes: int, channels: int) -> torch.Tensor:
    """(K, C) ±1: channel c of class k has sign (-1)^(bit c of k)."""
    k = torch.arange(num_classes)[:, None]
    bits = (k >> torch.arange(channels)[None]) & 1
    return 1.0 - 2.0 * bits.float()


def make_toy_latents(n: int, num_classes: int = 10, channels: int = 4, size: int = 16,
                     generator: torch.Generator | None = None):
    """n latents (n, C, S, S) and labels (n,)."""
    y = torch.randint(0, num_classes, (n,), generator=generator)
    centre = ring_positions(num_classes, size)[y] + 0.7 * torch.randn(n, 2, generator=generator)
    amp = 2.0 + 0.3 * torch.randn(n, generator=generator)
    rows = torch.arange(size, dtype=torch.float32)
    d2 = (rows[None, :, None] - centre[:, 0, None, None]) ** 2 + (rows[None, None, :] - centre[:, 1, None, None]) ** 2
    bump = amp[:, None, None] * torch.exp(-d2 / (2 * 2.0 ** 2))  # (n, S, S)
    x = channel_signs(num_classes, channels)[y][:, :, None, None] * bump[:, None]
    x = x + 0.05 * torch.randn(x.shape, generator=generator)
    return x, y


def class_accuracy(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> float:
    """Fraction of samples whose strongest point (summed |x| over channels) lies nearest to the
    ring position of their own class."""
    size = x.shape[-1]
    energy = x.abs().sum(1).flatten(1)  # (n, S²)
    idx = energy.argmax(1)
    peak = torch.stack([idx // size, idx % size], 1).float()
    nearest = torch.cdist(peak, ring_positions(num_classes, size)).argmin(1)
    return (nearest == y.cpu()).float().mean().item()
