"""ODE samplers over a guidance recipe (Euler, the paper's default with 40 steps; Heun).

Integrates dx/dt = v(x_t, t) from t = 0 (noise) to t = 1 (data) on a uniform grid, where v is
the recipe's guided velocity (guidance.combine). Branches that share a model and γ run as one
batched forward (CFG, ICG); branches with different γ run as separate forwards on their own
token counts, so compute falls with γ.

Reproducibility: the noise is the caller's; token subsets and ICG's random classes are drawn
from ``generator``. Same noise, labels and generator seed give bit-identical samples on CPU.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from .progress import tqdm

from .errors import ConfigError
from .guidance import Recipe, combine, resolve_recipe
from .models.interface import check_model_interface

SOLVERS = ("euler", "heun")


def _as_models(models) -> Mapping[str, torch.nn.Module]:
    if isinstance(models, torch.nn.Module):
        return {"main": models}
    return {k: m for k, m in models.items() if m is not None}


def resolve_conditions(recipe: Recipe, embedder, y, generator=None) -> list[torch.Tensor]:
    """The label tensor each branch is conditioned on: c, ∅ or an independent random class c'.

    ICG's random classes are drawn once per sampling call, so a trajectory keeps its c'."""
    out = []
    for b in recipe.branches:
        out.append(y if b.cond == "class" else embedder.null(y) if b.cond == "null"
                   else embedder.random(y, generator))
    return out


def guided_velocity(models, recipe: Recipe, x, t, conds, step: int, num_steps: int, generator=None):
    """The recipe's velocity at one step: ω v_strong + (1 − ω) v_weak (or v_strong alone)."""
    models = _as_models(models)
    n = x.shape[0]
    tt = t.expand(n) if t.dim() == 0 else t
    gammas = [b.gamma_at(step, num_steps) for b in recipe.branches]
    if recipe.weak is None or recipe.omega == 1.0:
        return models[recipe.strong.model](x, tt, conds[0], gamma=gammas[0], generator=generator)
    s, w = recipe.strong, recipe.weak
    if s.model == w.model and gammas[0] == gammas[1]:
        # One batched forward (CFG / ICG): (2N, C, H, W).
        v = models[s.model](torch.cat([x, x]), torch.cat([tt, tt]), torch.cat(conds), gamma=gammas[0],
                            generator=generator)
        v_strong, v_weak = v[:n], v[n:]
    else:
        v_strong = models[s.model](x, tt, conds[0], gamma=gammas[0], generator=generator)
        v_weak = models[w.model](x, tt, conds[1], gamma=gammas[1], generator=generator)
    return combine(v_strong, v_weak, recipe.omega, recipe.guided_channels)


def check_inputs(noise: torch.Tensor, y: torch.Tensor, num_classes: int):
    """Finite noise, and class labels in 0..K-1 (row K of the label table is ∅, which a branch asks
    for with cond: null, never through the label); ConfigError otherwise."""
    if not torch.isfinite(noise).all():
        raise ConfigError("the initial noise holds NaN or ∞; sampling from it would give NaN images.")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(f"class labels must lie in 0..{num_classes - 1}; got {int(y.min())}..{int(y.max())} "
                          f"(label {num_classes} is the null class ∅: use a recipe branch with cond: null).")


@torch.no_grad()
def sample(models, recipe, noise, y, *, steps: int = 40, solver: str = "euler",
           generator: torch.Generator | None = None, progress: bool = False):
    """Draw samples x_1 from noise x_0 (N, C, H, W) with labels y (N,).

    models: a module (used as 'main') or a dict {'main': ..., 'aux': ...} naming every model the
    recipe's branches use. recipe: a preset name, a recipe dict or a Recipe. Each model is checked
    first (models.check_model_interface): a missing attribute is named, with what it is for.
    """
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; choose one of {SOLVERS}.")
    if int(steps) < 1:
        raise ConfigError(f"steps={steps!r}; a sampler needs at least one step.")
    models = _as_models(models)
    recipe = resolve_recipe(recipe, num_steps=steps)
    missing = recipe.models - set(models)
    if missing:
        raise ConfigError(f"recipe {recipe.name!r} uses model(s) {sorted(missing)} but only "
                          f"{sorted(models)} were given; pass models={{'main': ..., 'aux': ...}}.")
    for key in sorted(recipe.models):  # the strong branch's model gives every branch its condition
        check_model_interface(models[key], "sampling" if key == recipe.strong.model else "forward", repr(key))
    embedder = models[recipe.strong.model].cond_embedder
    check_inputs(noise, y, embedder.num_classes)
    conds = resolve_conditions(recipe, embedder, y, generator)
    ts = torch.linspace(0.0, 1.0, steps + 1, device=noise.device)
    x = noise
    for i in tqdm(range(steps), disable=not progress, desc=f"sampling {recipe.name}"):
        t0, t1 = ts[i], ts[i + 1]
        dt = t1 - t0
        v0 = guided_velocity(models, recipe, x, t0, conds, i, steps, generator)
        if solver == "euler":
            x = x + dt * v0
        else:  # Heun (trapezoidal): second evaluation at t_{i+1} with the step's γ
            x_pred = x + dt * v0
            v1 = guided_velocity(models, recipe, x_pred, t1, conds, i, steps, generator)
            x = x + dt * 0.5 * (v0 + v1)
    return x


if __name__ == "__main__":  # a library module; the command that samples a checkpoint is sparse_guidance.sample
    print("sparse_guidance.sampling is the library's sampler: `from sparse_guidance.sampling import sample`.\n"
          "To sample a checkpoint from the command line: python -m sparse_guidance.sample --help")
