"""GFLOPs of one network evaluation and of one guided sampling step (Table 2).

Convention (the paper's, DiT's): one multiply-accumulate of a linear or convolution layer is
one FLOP; attention score products (QKᵀ, AV), norms and element-wise ops are not counted.
Counts come from fvcore tracing the real module at batch 1 (``F.scaled_dot_product_attention``
is not an fvcore op, so attention products drop out by themselves).

A count depends on γ only through the kept-token count K = T − int(T·γ); counts are cached by
K. A γ schedule touches many K; the linear/conv MACs of a routed or masked model are affine in K
(the sparse blocks see K tokens, the rest see all T), so ``recipe_gflops`` counts the two ends
of a branch's K range and one interior point with fvcore, checks that the three lie on a line,
and interpolates (it counts every K with fvcore if they do not).

    python -m sparse_guidance.flops --table2
    python -m sparse_guidance.flops --model SiT-XL/2 --route 2:24 --gamma 0.5
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings

import torch

from .config import paper_results
from .errors import ConfigError
from .guidance import resolve_recipe
from .models import build_model, check_model_interface, on_meta
from .models.sparsity import check_gamma, num_kept

COUNTED_OPS = {"linear", "conv", "matmul", "addmm", "bmm", "einsum", "mm"}

# Table 2 of the paper: SiT-XL/2 + routing r2→24, 400 epochs; (label, row, recipe preset). The
# paper's GFLOPs per row are in workflow/data/paper_results.yaml.
TABLE2 = [("SiT-XL/2 + routing", "unguided", "unguided"), ("+CFG", "cfg", "cfg"), ("+AG", "ag", "autoguidance"),
          ("+ICG", "icg", "icg"), ("+SG_FLOPS", "sg_flops", "sg_flops"), ("+SG_FID", "sg_fid", "sg_fid")]


class _Call(torch.nn.Module):
    """Binds γ and the kept indices so fvcore can trace model(x, t, y)."""

    def __init__(self, model, gamma, keep):
        super().__init__()
        self.model, self.gamma, self.keep = model, gamma, keep

    def forward(self, x, t, y):
        return self.model(x, t, y, gamma=self.gamma, keep=self.keep)


def _count(model, keep_count: int) -> float:
    with warnings.catch_warnings():  # fvcore's import and tracing warn about torch.jit deprecations
        warnings.simplefilter("ignore")
        return _count_quiet(model, keep_count)


def _count_quiet(model, keep_count: int) -> float:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    device = next(model.parameters()).device
    x = torch.zeros(1, model.in_channels, model.input_size, model.input_size, device=device)
    t = torch.zeros(1, device=device)
    y = torch.zeros(1, dtype=torch.long, device=device)
    keep = None
    if keep_count < model.num_tokens:
        keep = torch.arange(keep_count, device=device)[None]  # which tokens does not change the count
    fa = FlopCountAnalysis(_Call(model, 0.0, keep), (x, t, y))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        by_op = fa.by_operator()
    return sum(v for k, v in by_op.items() if k in COUNTED_OPS) / 1e9


class FlopCounter:
    """GFLOPs of one forward of ``model`` at any γ, counted by fvcore and cached by kept tokens.
    ``model`` needs in_channels, input_size, num_tokens and forward(..., keep=) (check_model_interface)."""

    def __init__(self, model):
        self.model = check_model_interface(model, "flops").eval()
        self.cache: dict[int, float] = {}

    def at_keep(self, k: int) -> float:
        if k not in self.cache:
            self.cache[k] = _count(self.model, k)
        return self.cache[k]

    def __call__(self, gamma: float = 0.0) -> float:
        gamma = check_gamma(gamma)
        if gamma > 0 and getattr(self.model, "sparsity", None) == "routing" and not self.model.routes:
            raise ConfigError(f"gamma={gamma} needs a sparse model; this one has no routes.")
        return self.at_keep(num_kept(self.model.num_tokens, gamma))

    def mean_over(self, gammas: list[float]) -> float:
        """Mean GFLOPs over a list of γ (a schedule), see the module docstring."""
        ks = [num_kept(self.model.num_tokens, check_gamma(g)) for g in gammas]
        lo, hi = min(ks), max(ks)
        if hi - lo > 2 and len(set(ks)) > 3:
            mid = (lo + hi) // 2
            f_lo, f_hi, f_mid = self.at_keep(lo), self.at_keep(hi), self.at_keep(mid)
            slope = (f_hi - f_lo) / (hi - lo)
            if abs(f_lo + slope * (mid - lo) - f_mid) <= 1e-9 * max(f_mid, 1.0):
                return sum(f_lo + slope * (k - lo) for k in ks) / len(ks)
        return sum(self.at_keep(k) for k in ks) / len(ks)


def recipe_gflops(counters: dict[str, FlopCounter] | FlopCounter, recipe, steps: int = 40) -> float:
    """GFLOPs per sampling step of a recipe: the sum over its branches of one forward each,
    averaged over the steps when γ follows a schedule. An unguided recipe (or ω = 1) is one
    forward; CFG-style batched branches still cost two forwards' worth."""
    if isinstance(counters, FlopCounter):
        counters = {"main": counters}
    recipe = resolve_recipe(recipe, num_steps=steps)
    branches = recipe.branches if (recipe.weak is not None and recipe.omega != 1.0) else [recipe.strong]
    total = 0.0
    for b in branches:
        if b.model not in counters:
            raise ConfigError(f"recipe {recipe.name!r} uses model {b.model!r}; give a counter for it.")
        total += counters[b.model].mean_over([b.gamma_at(i, steps) for i in range(steps)])
    return total


def _meta_free_model(name, sparsity, routes, input_size, **kw):
    """Build a model with uninitialised weights (counts do not depend on values)."""
    with on_meta():
        m = build_model(name, sparsity=sparsity, routes=routes, input_size=input_size, **kw)
    return m.to_empty(device="cpu").eval()


def table2(steps: int = 40, model: str = "SiT-XL/2", route: str = "2:24", input_size: int = 32):
    """Rows (name, recipe, our GFLOPs, paper GFLOPs, relative difference) for Table 2."""
    m = _meta_free_model(model, "routing", [route], input_size, train_gamma=0.5)
    counter = FlopCounter(m)
    counters = {"main": counter, "aux": counter}  # AG / SG_FID: aux has the main model's size
    rows, paper_rows = [], paper_results()["table2"]
    for name, row, spec in TABLE2:
        ours, paper = recipe_gflops(counters, spec, steps), paper_rows[row]["gflops"]
        rows.append((name, spec, ours, paper, (ours - paper) / paper))
    return rows


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sparse_guidance.flops", description=(
        "GFLOPs (multiply-accumulates of linear and conv layers, DiT's convention) of one network "
        "evaluation, or per sampling step of a guidance recipe, counted with fvcore."))
    p.add_argument("--table2", action="store_true", help="print Table 2's GFLOPs column beside the paper's")
    p.add_argument("--model", default="SiT-XL/2", help="registered model name (default SiT-XL/2)")
    p.add_argument("--sparsity", default=None, choices=["none", "routing", "masking"],
                   help="default: routing if --route is given, else none")
    p.add_argument("--route", action="append", default=[], help="route 'start:end' (inclusive), repeatable")
    p.add_argument("--gamma", type=float, default=0.0, help="fraction of tokens removed, in [0, 1)")
    p.add_argument("--recipe", default=None, help="guidance preset (e.g. cfg, sg_flops, sg_fid): GFLOPs per step")
    p.add_argument("--steps", type=int, default=40, help="sampling steps for schedules (default 40)")
    p.add_argument("--input-size", type=int, default=32, help="latent size (32 for 256² images with the SD VAE)")
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    a = p.parse_args(argv)
    try:
        for flag, v in (("--steps", a.steps), ("--input-size", a.input_size), ("--in-channels", a.in_channels),
                        ("--num-classes", a.num_classes)):
            if v < 1:
                raise ConfigError(f"{flag} {v}: give an integer >= 1.")
        if a.table2:
            route = a.route[0] if a.route else "2:24"
            print(f"Table 2 GFLOPs: {a.model} + routing r{route.replace(':', '->')}, {a.steps} Euler steps, "
                  "MACs of linear/conv layers (fvcore).")
            print("SG_FID schedule: strong branch γ cosine 0→0.6, weak (aux) branch γ cosine 0.6→0, "
                  "γ(i) = start + (end-start)(1-cos(π i/(steps-1)))/2.")
            print(f"{'method':<22}{'ours':>10}{'paper':>10}{'diff':>9}")
            for name, _, ours, paper, rel in table2(a.steps, a.model, route, a.input_size):
                print(f"{name:<22}{ours:>10.2f}{paper:>10.2f}{100 * rel:>8.2f}%")
            return 0
        sparsity = a.sparsity or ("routing" if a.route else "none")
        m = _meta_free_model(a.model, sparsity, a.route, a.input_size, in_channels=a.in_channels,
                             num_classes=a.num_classes)
        counter = FlopCounter(m)
        if a.recipe:
            g = recipe_gflops({"main": counter, "aux": counter}, a.recipe, a.steps)
            print(f"{a.model} {sparsity} recipe={a.recipe} steps={a.steps}: {g:.2f} GFLOPs per step")
        else:
            print(f"{a.model} {sparsity} routes={a.route or '-'} gamma={a.gamma}: {counter(a.gamma):.2f} GFLOPs")
        return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())
