"""What the sampler, the FLOP counter and training need of a model, checked where a model enters.

A token-sparse model of your own needs no base class: it needs the attributes below (SiT, MaskedSiT
and TRDiT have all of them). ``check_model_interface(model, use)`` raises a ConfigError naming the
first missing one and what it is for; ``sampling.sample``, ``flops.FlopCounter`` and ``train.train``
call it on the models they are given.

    use        needs
    forward    forward(x, t, y, gamma=0.0, generator=None, keep=None) -> velocity (N, C, H, W)
               (every model a recipe branch runs, e.g. the aux model of AutoGuidance / SG_FID)
    sampling   forward, and cond_embedder with num_classes, null(y), random(y, generator)
               (the model of a recipe's strong branch: it gives every branch its condition)
    flops      forward (keep=), in_channels, input_size, num_tokens, parameters()
    training   forward (keep=), train_gamma, num_tokens, cond_embedder.null(y), parameters();
               a model with sparsity = "masking" also patch_size and grid

Optional: ``sparsity`` ("routing", "masking" or absent) picks training's loss (masking: Eq. A4;
otherwise every token is supervised), and ``routes`` (a model with sparsity = "routing") lets the
FLOP counter refuse γ > 0 on a model without routes.
"""
from __future__ import annotations

import inspect

from torch import nn

from ..errors import ConfigError

FORWARD = "forward(x, t, y, gamma=0.0, generator=None, keep=None)"

# use -> [(attribute, what it is for)]; "a.b" is attribute b of attribute a
REQUIREMENTS: dict[str, list[tuple[str, str]]] = {
    "forward": [],
    "sampling": [
        ("cond_embedder", "the conditions of every branch: the class itself, ∅ or a random class"),
        ("cond_embedder.num_classes", "K: class labels must lie in 0..K-1 (index K is the null condition ∅)"),
        ("cond_embedder.null", "null(y) -> ∅ for every sample of y: a branch with cond: null (CFG)"),
        ("cond_embedder.random", "random(y, generator) -> an independent random condition: cond: random (ICG)"),
    ],
    "flops": [
        ("in_channels", "C of the (1, C, H, W) input the FLOP counter traces"),
        ("input_size", "H = W of the (1, C, H, W) input the FLOP counter traces"),
        ("num_tokens", "T: γ keeps T - int(T·γ) tokens, the count the FLOPs depend on"),
        ("parameters", "the device of the traced input (an nn.Module has it)"),
    ],
    "training": [
        ("train_gamma", "γ of training when the config sets no train.gamma (0.0 for a dense model)"),
        ("num_tokens", "T: training draws its token subsets (N, K) from range(T)"),
        ("cond_embedder", "the conditions: class dropout replaces a label by ∅"),
        ("cond_embedder.null", "null(y) -> ∅: CFG's class dropout during training"),
        ("parameters", "AdamW and the EMA copy (an nn.Module has it)"),
    ],
}
MASKING = [
    ("patch_size", "p: the masked loss (Eq. A4) maps removed tokens to p×p pixel patches"),
    ("grid", "H/p tokens a side: the masked loss's token mask as pixels"),
]
# keyword arguments of forward each use passes
FORWARD_KEYWORDS = {"forward": ("gamma", "generator"), "sampling": ("gamma", "generator"),
                    "flops": ("gamma", "keep"), "training": ("keep",)}
USES = tuple(REQUIREMENTS)


def _lookup(model, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _forward(model):
    return model.forward if isinstance(model, nn.Module) else model


def _missing_keywords(fn, names) -> list[str]:
    """The names among ``names`` that fn takes no keyword argument of (none if it takes **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return []
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return []
    takes = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return [n for n in names if n not in takes]


def check_model_interface(model, use: str = "sampling", name: str = "model"):
    """Raise ConfigError if ``model`` lacks an attribute ``use`` needs (see the module docstring);
    returns the model. ``name`` says which model in the message (e.g. 'main', 'aux')."""
    if use not in USES:
        raise ConfigError(f"unknown model use {use!r}; choose one of {', '.join(USES)}.")
    where = f"{name} ({type(model).__name__})"
    fn = _forward(model)
    if not callable(fn) or (isinstance(model, nn.Module)
                            and getattr(type(model), "forward", None) is getattr(nn.Module, "forward", None)):
        raise ConfigError(f"{where} cannot be called: {use} needs {FORWARD} returning the velocity (N, C, H, W).")
    missing = _missing_keywords(fn, FORWARD_KEYWORDS[use])
    if missing:
        raise ConfigError(f"{where}.forward takes no keyword argument(s) {', '.join(repr(m) for m in missing)}; "
                          f"{use} calls {FORWARD} (gamma: fraction of tokens removed; generator: draws the token "
                          "subsets; keep: fixed kept indices (N, K)). Add them to its signature.")
    needs = list(REQUIREMENTS[use])
    if use == "training" and getattr(model, "sparsity", None) == "masking":
        needs += MASKING
    for attr, purpose in needs:
        try:
            _lookup(model, attr)
        except AttributeError:
            raise ConfigError(f"{where} has no attribute {attr!r}, which {use} needs for {purpose}. Give the "
                              f"model that attribute (SiT in models/sit.py has every one; the list is "
                              f"sparse_guidance.models.interface.REQUIREMENTS).") from None
    return model
