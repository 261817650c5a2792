"""Parameterisation adapters: a network trained to predict something else, seen as our velocity.

The sampler and guidance speak one language (paper Eq. 1, SiT's convention): time t ∈ [0, 1] with
t = 0 noise and t = 1 data, x_t = t·x + (1 − t)·z, and the network returns the velocity
v = x − z. Released checkpoints speak others; each wrapper below converts one of them exactly and
keeps the wrapped network's interface (forward(x, t, y, gamma, generator, keep), cond_embedder,
routes, ...), so SG, CFG, AG and ICG apply to it unchanged:

    wrapper            network predicts                          from
    EDMDenoiser        F of D(x; σ) = c_skip x + c_out F(...)    MaskDiT, TREAD edm.py (Karras et al. 2022)
    VPEpsilon          ε on integer timesteps of a VP schedule   DiT (Ho et al. 2020, linear β)
    ReversedTime       v' = z − x on t' = 1 − t                  TREAD rf.py

A denoiser D(x; σ) (EDM's view of every diffusion model) gives our velocity through
σ = (1 − t)/t and x_t = t·(x + σ z): v = (D(x_t / t; σ) − x_t) / (1 − t). σ is clamped to the
range the model was trained on ([σ_min, σ_max]); inside it the conversion is exact.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class Adapter(nn.Module):
    """A wrapper around ``net`` that forwards every attribute it does not define to the network
    (cond_embedder, routes, sparsity, num_tokens, in_channels, input_size, ...)."""

    parameterization = "velocity"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


# ---------------------------------------------------------------------------------------------
# Denoisers D(x; σ): EDM preconditioning, and DiT's ε-prediction on a VP schedule
# ---------------------------------------------------------------------------------------------

class Denoiser(Adapter):
    """A denoiser D(x; σ) as our velocity: v = (D(x_t / t_e; σ_e) − x_t) / (1 − t_e), with
    t_e = clamp(t, 1/(1 + σ_max), 1/(1 + σ_min)) and σ_e = (1 − t_e)/t_e (the model's σ range;
    t_e = t inside it). Subclasses define ``denoise(x, sigma, y, **kw)`` on EDM's scale x = data + σ z."""

    def __init__(self, net: nn.Module, sigma_min: float, sigma_max: float):
        super().__init__(net)
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"a denoiser's σ range must satisfy 0 < sigma_min < sigma_max; got "
                              f"[{sigma_min}, {sigma_max}].")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def time_range(self) -> tuple[float, float]:
        """The t ∈ (0, 1) of σ_max and of σ_min: t = 1 / (1 + σ)."""
        return 1 / (1 + self.sigma_max), 1 / (1 + self.sigma_min)

    def forward(self, x, t, y, gamma: float = 0.0, generator: torch.Generator | None = None, keep=None):
        """Velocity (N, C, H, W) at our time t (N,) from the denoiser's estimate of the data."""
        lo, hi = self.time_range()
        te = t.to(torch.float64).clamp(lo, hi)  # (N,)
        sigma = (1 - te) / te
        shape = (-1,) + (1,) * (x.dim() - 1)
        te_, xf = te.reshape(shape), x.to(torch.float64)
        d = self.denoise((xf / te_).to(x.dtype), sigma, y, gamma=gamma, generator=generator,
                         keep=keep)  # (N, C, H, W), data scale; σ (N,) in float64
        return ((d.to(torch.float64) - xf) / (1 - te_)).to(x.dtype)

    def denoise(self, x, sigma, y, **kw):
        raise NotImplementedError


class EDMDenoiser(Denoiser):
    """EDM's preconditioning (Karras et al. 2022, Table 1 and Eq. 7), as MaskDiT's and TREAD's
    ``EDMPrecond``: D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ)), with
    c_skip = σ_d² / (σ² + σ_d²), c_out = σ σ_d / √(σ² + σ_d²), c_in = 1 / √(σ² + σ_d²),
    c_noise = ln(σ) / 4; F is the network (its time input is c_noise). σ in [0.002, 80], the range
    EDM's sampler uses (MaskDiT's and TREAD's ``edm_sampler`` defaults)."""

    parameterization = "edm"

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0):
        super().__init__(net, sigma_min, sigma_max)
        self.sigma_data = float(sigma_data)

    def denoise(self, x, sigma, y, **kw):
        s = sigma.reshape((-1,) + (1,) * (x.dim() - 1))  # (N, 1, 1, 1)
        sd2 = self.sigma_data ** 2
        c_skip, c_out = sd2 / (s ** 2 + sd2), s * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in, c_noise = 1 / (s ** 2 + sd2).sqrt(), sigma.log() / 4
        f = self.net((c_in * x).to(x.dtype), c_noise.to(x.dtype), y, **kw)
        return c_skip * x + c_out * f


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear β schedule (Ho et al. 2020), DiT's ``get_named_beta_schedule("linear", 1000)``."""
    scale = 1000 / num_steps
    return torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)


class VPEpsilon(Denoiser):
    """DiT's ε-prediction on the discrete VP schedule ᾱ_s = Π_{k≤s} (1 − β_k), s = 0..S−1 (s = S−1
    is nearly pure noise), as a denoiser: x_vp = √ᾱ (x + σ z) with σ² = (1 − ᾱ)/ᾱ, so
    D(x; σ) = x − σ ε̂(x / √(1 + σ²), s(σ)). s(σ) interpolates the schedule's log σ linearly between
    integer timesteps (DiT was trained on integers; its sinusoidal time embedding is smooth).
    A learned-Σ network's extra channels are dropped (the model's ``learn_sigma`` head does)."""

    parameterization = "vp-epsilon"

    def __init__(self, net: nn.Module, betas: torch.Tensor | None = None):
        betas = linear_betas() if betas is None else torch.as_tensor(betas, dtype=torch.float64)
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        log_sigma = 0.5 * torch.log((1 - alpha_bar) / alpha_bar)  # increasing in s
        super().__init__(net, float(log_sigma[0].exp()), float(log_sigma[-1].exp()))
        self.register_buffer("log_sigmas", log_sigma, persistent=False)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """s(σ) ∈ [0, S−1]: linear interpolation of the schedule's log σ (N,)."""
        ls = self.log_sigmas.to(sigma.device)
        q = sigma.to(torch.float64).log().clamp(float(ls[0]), float(ls[-1]))
        i = torch.searchsorted(ls, q).clamp(1, ls.numel() - 1)
        lo, hi = ls[i - 1], ls[i]
        return (i - 1) + (q - lo) / (hi - lo)

    def denoise(self, x, sigma, y, **kw):
        s = sigma.reshape((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
        eps = self.net((x / (1 + s ** 2).sqrt()).to(x.dtype), self.timestep(sigma).to(x.dtype), y, **kw)
        return x - s * eps


# ---------------------------------------------------------------------------------------------
# Flow matching with time reversed
# ---------------------------------------------------------------------------------------------

class ReversedTime(Adapter):
    """TREAD's ``rf.py``: t' = 1 − t is the noise level (x_t' = (1 − t') x + t' z) and the network
    predicts v' = z − x, so our velocity is v(x, t) = −net(x, 1 − t). Exact at every t."""

    parameterization = "reversed-flow"

    def forward(self, x, t, y, gamma: float = 0.0, generator: torch.Generator | None = None, keep=None):
        return -self.net(x, 1 - t, y, gamma=gamma, generator=generator, keep=keep)


PARAMETERIZATIONS = {"velocity": None, "edm": EDMDenoiser, "vp-epsilon": VPEpsilon, "reversed-flow": ReversedTime}


def as_velocity(net: nn.Module, parameterization: str, **kwargs) -> nn.Module:
    """``net`` seen as our velocity model: itself for "velocity", else its adapter."""
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(f"unknown parameterisation {parameterization!r}; choose one of "
                          f"{', '.join(PARAMETERIZATIONS)}.")
    cls = PARAMETERIZATIONS[parameterization]
    return net if cls is None else cls(net, **kwargs)

