"""Flow matching on the linear path (paper Eq. 1-2) and the training losses (Appendix C).

Convention (SiT's and the paper's): t = 0 is noise z, t = 1 is data x,
    x_t = (1 - t) z + t x,        v*(x_t, t) = x - z.
Sampling integrates dx/dt = v(x_t, t) from t = 0 to t = 1 (sampling.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .errors import ConfigError
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


MAE_TARGETS = ("noisy", "noisy_normalized", "clean")


def masked_flow_matching_loss(model, x, y, *, gamma: float | None = None, mae_weight: float = 0.1,
                              mae_target: str = "noisy", class_dropout: float = 0.1,
                              generator: torch.Generator | None = None, draws: Draws | None = None, net=None):
    """Eq. A4: flow matching on the visible tokens + λ · the MAE term on the masked tokens M.

    With D_θ = x_t + (1-t) v_θ (Eq. A2's relation, the model's denoised estimate), ``mae_target``:
    - "noisy" (the default): Eq. A3/A4 as printed, (1-t)² ‖v_θ ⊙ M‖² = ‖(D_θ - x_t) ⊙ M‖²: the
      masked tokens reconstruct the noisy input, as MaskDiT's code does (train_utils/loss.py).
    - "noisy_normalized": MaskDiT's code literally, ‖(D_θ - norm(x_t)) ⊙ M‖² with x_t normalised
      per patch (mean 0, variance 1 over its p²·C values; MAE's norm_pix_loss). The normalisation
      does not carry over to the flow-matching form: D_θ - norm(x_t) is not (1-t)·(a velocity), so
      it is an option, not the default.
    - "clean": Eq. A1's target, ‖(D_θ - x) ⊙ M‖² = (1-t)² ‖(v_θ - v*) ⊙ M‖², the form this
      repository trained before (results of earlier runs were made with it).
    Each term is averaged over its own tokens and channels (every sample masks as many tokens, so
    this is MaskDiT's per-patch, per-sample mean); λ = 0.1 is MaskDiT's weight.
    """
    if mae_target not in MAE_TARGETS:
        raise ConfigError(f"mae_target={mae_target!r}; choose one of {', '.join(MAE_TARGETS)}.")
    gamma = model.train_gamma if gamma is None else check_gamma(gamma)
    d = draws or draw(model, x.shape, gamma=gamma, class_dropout=class_dropout, generator=generator,
                      device=x.device)
    z, t = d.z.to(x.dtype), d.t
    x_t = interpolate(x, z, t)
    v = (net or model)(x_t, t, _labels(model, y, d), keep=d.keep)
    err = (v - velocity_target(x, z)).pow(2)  # (N, C, H, W)
    if d.keep is None:  # γ = 0: nothing is masked
        return err.mean()
    masked = token_mask_to_pixels(keep_to_mask(d.keep, model.num_tokens), model.patch_size, model.grid)
    visible = 1 - masked
    c = x.shape[1]
    loss_visible = (err * visible).sum() / (visible.sum() * c).clamp_min(1)
    w = (1 - t).view(-1, 1, 1, 1)
    if mae_target == "noisy":
        mae = (w * v).pow(2)                                  # (1-t)² ‖v_θ‖² = ‖D_θ - x_t‖²
    elif mae_target == "clean":
        mae = w.pow(2) * err                                  # ‖D_θ - x‖²
    else:
        mae = (x_t + w * v - patch_normalised(x_t, model.patch_size)).pow(2)  # ‖D_θ - norm(x_t)‖²
    loss_mae = (mae * masked).sum() / (masked.sum() * c).clamp_min(1)
    return loss_visible + mae_weight * loss_mae


def patch_normalised(x: torch.Tensor, p: int, eps: float = 1e-6) -> torch.Tensor:
    """x (N, C, H, W) with each p×p patch normalised over its p²·C values to mean 0, variance 1
    (the unbiased variance, as MAE's and MaskDiT's norm_pix_loss)."""
    n, c, h, w = x.shape
    patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, h // p, w // p, -1)
    patches = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + eps).sqrt()
    return patches.reshape(n, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def training_loss(model, x, y, **kwargs):
    """The loss that fits the model's sparsity: masked (Eq. A4) or dense/routed (all tokens)."""
    if getattr(model, "sparsity", None) == "masking":
        return masked_flow_matching_loss(model, x, y, **kwargs)
    kwargs.pop("mae_weight", None)
    kwargs.pop("mae_target", None)
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
