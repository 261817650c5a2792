"""Model registry: DiT/SiT sizes × patch sizes, each buildable dense, routed or masked; and the
text-to-image track's TR-DiT sizes (trdit.py), routed.

    build_model("SiT-XL/2", sparsity="routing", routes=["2:24"], train_gamma=0.5)
    build_model("SiT-XL/2", sparsity="masking")          # MaskDiT decoder of Table A2
    build_trdit("TR-DiT-2.5B", routes=["2:30"], train_gamma=0.5)   # Table A1

A model of your own: the token primitives select_tokens (kept indices (N, K)), gather_tokens and
scatter_tokens are exported here, and check_model_interface(model, use) names any attribute the
sampler, the FLOP counter or training needs that the model lacks (interface.py).
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError
from .conditioning import LabelEmbedder
from .interface import REQUIREMENTS, check_model_interface
from .masking import MaskedSiT
from .sit import Route, SiT
from .sparsity import check_gamma, gather_tokens, keep_to_mask, num_kept, scatter_tokens, select_tokens
from .text import SYSTEM_PROMPT, PromptEmbedder
from .trdit import TRDIT_SIZES, TRDiT, build_trdit

# depth, width, heads (DiT Table 1), plus a tiny size for the embedded CPU default.
SIZES = {
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "T": dict(depth=8, hidden_size=192, num_heads=3),  # embedded default (Fashion-MNIST, CPU)
}
PATCHES = (2, 4, 8)
MODELS = {f"{family}-{size}/{p}": dict(patch_size=p, **dims)
          for family in ("SiT", "DiT") for size, dims in SIZES.items() for p in PATCHES}
SPARSITY = ("none", "routing", "masking")


def build_model(name: str, sparsity: str = "none", **kwargs) -> SiT:
    """Build a registered model. kwargs go to SiT/MaskedSiT (input_size, in_channels, num_classes,
    learn_sigma, routes, train_gamma, decoder_depth, decoder_width, decoder_heads) or, for a TR-DiT
    size, to TRDiT (routed or dense; input_size, in_channels, num_prompts, routes, train_gamma, ...)."""
    if name not in MODELS and name not in TRDIT_SIZES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join([*MODELS, *TRDIT_SIZES])}.")
    if sparsity not in SPARSITY:
        raise ConfigError(f"unknown sparsity {sparsity!r}; choose one of {SPARSITY}.")
    if sparsity == "none" and kwargs.get("routes"):
        raise ConfigError("sparsity='none' takes no routes; use sparsity='routing'.")
    if sparsity == "routing" and not kwargs.get("routes"):
        raise ConfigError("sparsity='routing' needs at least one route, e.g. routes=['2:24'].")
    if name in TRDIT_SIZES:
        if sparsity == "masking":
            raise ConfigError(f"{name} is trained with routing (TREAD) or dense, not with masking.")
        return build_trdit(name, **kwargs)
    args = {**MODELS[name], **kwargs}
    if sparsity == "masking":
        return MaskedSiT(**args)
    return SiT(**args)


class _NoNormalOnMeta(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.nn.init.normal_, torch.Tensor.normal_):
            tensor = args[0] if args else kwargs["tensor"]
            if tensor.is_meta:
                return tensor  # a meta tensor holds no values to draw
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta():
    """Build modules on the meta device (shapes only, no memory): ``with on_meta(): build_model(...)``.
    Random initialisation has nothing to fill there; ``normal_`` is skipped instead of going through
    torch's Python decomposition, whose first call imports torch._dynamo (about 1.5 s per process)."""
    with torch.device("meta"), _NoNormalOnMeta():
        yield


__all__ = ["MODELS", "SIZES", "SPARSITY", "build_model", "on_meta", "SiT", "MaskedSiT", "Route", "LabelEmbedder",
           "select_tokens", "gather_tokens", "scatter_tokens", "num_kept", "keep_to_mask", "check_gamma",
           "TRDIT_SIZES", "TRDiT", "build_trdit", "PromptEmbedder", "SYSTEM_PROMPT", "check_model_interface",
           "REQUIREMENTS"]
