"""Token sparsity primitives shared by routing (Eq. 5) and masking (Eq. 4).

γ is the fraction of tokens *removed*: each sample keeps ``T - int(T * γ)`` tokens, an
independent uniform subset per sample. The paper writes the test-time subsets as Bernoulli(1-γ)
masks; we keep a fixed count per sample (as TREAD's code does) so that a batch stays a dense
tensor. The subsets are drawn from a ``torch.Generator`` the caller owns, so sampling is
reproducible.
"""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..performance import to_device


def check_gamma(gamma: float, name: str = "gamma") -> float:
    """Validate a sparsity rate: γ ∈ [0, 1)."""
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={gamma!r} is not a number; a sparsity rate is a float in [0, 1).")
    if not math.isfinite(g):
        raise ConfigError(f"{name}={gamma!r} is not a finite number; a sparsity rate is a float in [0, 1).")
    if not 0.0 <= g < 1.0:
        raise ConfigError(f"{name}={gamma!r} is outside [0, 1); γ is the fraction of tokens removed, "
                          "so 0 means dense and values must stay below 1.")
    return g


def num_kept(num_tokens: int, gamma: float) -> int:
    """Tokens each sample keeps at rate γ: T - int(T·γ) (never fewer than one)."""
    return max(1, num_tokens - int(num_tokens * gamma))


def select_tokens(batch: int, num_tokens: int, gamma: float, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices of kept tokens, (N, K), sorted ascending within each sample.

    Each row is an independent uniform K-subset of range(T) with K = num_kept(T, γ).
    """
    gamma = check_gamma(gamma)
    k = num_kept(num_tokens, gamma)
    # Draw on the generator's device so a CPU generator also serves GPU models.
    gen_device = generator.device if generator is not None else device
    noise = torch.rand(batch, num_tokens, generator=generator, device=gen_device)
    keep = noise.argsort(dim=1)[:, :k].sort(dim=1).values  # (N, K)
    # a CPU generator serving a GPU model: pinned and asynchronous, so that the sampling loop never
    # waits for the GPU here (a pageable copy would synchronise once per route)
    return to_device(keep, device)


def gather_tokens(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (N, T, D), keep (N, K) -> (N, K, D)."""
    return torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def scatter_tokens(base: torch.Tensor, keep: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Write values (N, K, D) back into a copy of base (N, T, D) at the kept positions."""
    return base.scatter(1, keep.unsqueeze(-1).expand(-1, -1, base.shape[-1]), values)


def keep_to_mask(keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Binary mask M (N, T): 1 where a token was removed, 0 where it was kept (Appendix C)."""
    mask = torch.ones(keep.shape[0], num_tokens, device=keep.device)
    return mask.scatter(1, keep, 0.0)
