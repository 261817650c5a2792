"""Flow matching on the linear path (paper Eq. 1-2) and the training losses (Appendix C).

Convention (SiT's and the paper's): t = 0 is noise z, t = 1 is data x,
    x_t = (1 - t) z + t x,        v*(x_t, t) = x - z.
Sampling integrates dx/dt = v(x_t, t) from t = 0 to t = 1 (sampling.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .models.sparsity import check_gamma, keep_to_mask, select_tokens


def interpolate(x, z, t):
    """Eq. 1: x_t = (1 - t) z + t x, with t (N,) broadcast over (N, C, H, W)."""
    t = t.view(-1, *([1] * (x.dim() - 1)))
    return (1 - t) * z + t * x


def velocity_target(x, z):
    """Eq. 2: the oracle velocity v* = x - z, constant along the path."""
    return x - z


def token_mask_to_pixels(mask, patch_size: int, grid: int):
    """Token mask (N, T) -> pixel mask (N, 1, H, W), each token covering a p×p patch."""
    m = mask.view(-1, 1, grid, grid)
    return m.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)


@dataclass
class Draws:
    """The randomness of one training step for a batch: times t (N,), noise z (N, C, H, W), which
    labels are dropped to ∅ (N,), and the kept tokens (N, K) or None when γ = 0.

    Drawn for a whole (global) batch and sliced per data-parallel rank, so a sharded step sees
    exactly the draws of an unsharded one."""
    t: torch.Tensor
    z: torch.Tensor
    drop: torch.Tensor | None
    keep: torch.Tensor | None

    def slice(self, a: int, b: int) -> "Draws":
        cut = lambda v: None if v is None else v[a:b]
        return Draws(self.t[a:b], self.z[a:b], cut(self.drop), cut(self.keep))


def draw(model, shape, *, gamma: float, class_dropout: float, generator=None, device="cpu") -> Draws:
    """Draw t ~ U[0, 1], z ~ N(0, I), the class-dropout mask and γ's token subsets, in that order."""
    n = shape[0]
    dev = generator.device if generator is not None else device
    t = torch.rand(n, generator=generator, device=dev).to(device)
    z = torch.randn(shape, generator=generator, device=dev).to(device)
    drop = (torch.rand(n, generator=generator, device=dev) < class_dropout).to(device) if class_dropout > 0 else None
    keep = select_tokens(n, model.num_tokens, gamma, generator, device) if gamma > 0 else None
    return Draws(t, z, drop, keep)


def _labels(model, y, d: Draws):
    return y if d.drop is None else torch.where(d.drop, model.cond_embedder.null(y), y)


def flow_matching_loss(model, x, y, *, gamma: float | None = None, class_dropout: float = 0.1,
                       generator: torch.Generator | None = None, draws: Draws | None = None, net=None):
    """Dense or routed training loss: mean ‖v_θ(x_t, t, y; γ) - v*‖² over all tokens.

    Routing supervises every token (TREAD needs no auxiliary loss). gamma defaults to the
    model's training rate (0 for a dense model). Labels are dropped to ∅ with prob class_dropout.
    ``draws`` (from ``draw``) replaces the internal random draws; all routes share its subset.
    ``net`` runs the forward instead of ``model`` (e.g. its DistributedDataParallel wrapper).
    """
    gamma = model.train_gamma if gamma is None else check_gamma(gamma)
    d = draws or draw(model, x.shape, gamma=gamma, class_dropout=class_dropout, generator=generator,
                      device=x.device)
    z = d.z.to(x.dtype)
    v = (net or model)(interpolate(x, z, d.t), d.t, _labels(model, y, d), keep=d.keep)
    return (v - velocity_target(x, z)).pow(2).mean()


def masked_flow_matching_loss(model, x, y, *, gamma: float | None = None, mae_weight: float = 0.1,
                              class_dropout: float = 0.1, generator: torch.Generator | None = None,
                              draws: Draws | None = None, net=None):
    """Eq. A4: flow-matching loss on visible tokens + λ (1-t)² MAE term on masked tokens.

    Eq. A3 is the MAE reconstruction ‖(D_θ - x) ⊙ M‖² rewritten with D_θ - x = (1-t)(v_θ - v*)
    (from Eq. A2). The printed A3/A4 drop v* inside the norm; taken literally that would push
    masked velocities to zero, so we keep the target: λ (1-t)² ‖(v_θ - v*) ⊙ M‖².
    Each term is averaged over its own tokens (visible, masked). λ = 0.1 is MaskDiT's weight.
    """
    gamma = model.train_gamma if gamma is None else check_gamma(gamma)
    d = draws or draw(model, x.shape, gamma=gamma, class_dropout=class_dropout, generator=generator,
                      device=x.device)
    z, t = d.z.to(x.dtype), d.t
    v = (net or model)(interpolate(x, z, t), t, _labels(model, y, d), keep=d.keep)
    err = (v - velocity_target(x, z)).pow(2)  # (N, C, H, W)
    if d.keep is None:  # γ = 0: nothing is masked
        return err.mean()
    masked = token_mask_to_pixels(keep_to_mask(d.keep, model.num_tokens), model.patch_size, model.grid)
    visible = 1 - masked
    c = x.shape[1]
    loss_visible = (err * visible).sum() / (visible.sum() * c).clamp_min(1)
    weight = (1 - t).pow(2).view(-1, 1, 1, 1)
    loss_mae = (weight * err * masked).sum() / (masked.sum() * c).clamp_min(1)
    return loss_visible + mae_weight * loss_mae


def training_loss(model, x, y, **kwargs):
    """The loss that fits the model's sparsity: masked (Eq. A4) or dense/routed (all tokens)."""
    if getattr(model, "sparsity", None) == "masking":
        return masked_flow_matching_loss(model, x, y, **kwargs)
    kwargs.pop("mae_weight", None)
    return flow_matching_loss(model, x, y, **kwargs)


# ---------------------------------------------------------------------------------------------
# EMA of weights
# ---------------------------------------------------------------------------------------------

def make_ema(model):
    """A frozen copy of ``model`` to hold the exponential moving average of its weights."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema, model, decay: float = 0.9999):
    """θ_ema ← decay·θ_ema + (1 - decay)·θ, for parameters; the saved buffers are copied (not the
    unsaved ones, such as a prompt bank: an online bank changes size at every step)."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(_saved_buffers(ema), _saved_buffers(model)):
        be.copy_(b)


def _saved_buffers(module):
    return [b for m in module.modules() for name, b in m.named_buffers(recurse=False)
            if name not in m._non_persistent_buffers_set]
