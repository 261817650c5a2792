"""Checkpoint formats: released and foreign checkpoints loaded as our models, sampled as our velocity.

    loaded = load_pretrained("MaskDiT-256.pt")                       # format and size from the keys
    loaded = load_pretrained("DiT-XL-2-256x256.pt", format="dit")    # or forced
    sample(loaded.model, "sg", noise, y)                              # SG, CFG, AG, ICG unchanged

    format      file                                         keys                               predicts
    ours        our training checkpoints (train.py)          {model, ema, step[, opt, config]}  velocity
    sit         SiT-XL-2-256x256.pt (willisma/SiT)           a plain state dict, learn_sigma    velocity
    dit         DiT-XL-2-256x256.pt (facebookresearch/DiT)   the same layout                    ε on a VP schedule
    maskdit     MaskDiT's releases (Anima-Lab/MaskDiT)       {model, ema, opt}, keys model.*    EDM's F
    tread-edm   TREAD training, edm.py (CompVis/tread)       {model_state_dict, ema_state_dict, EDM's F
                                                              optimizer_state_dict, step}, model.*
    tread-rf    TREAD training, rf.py                        the same, keys without model.      z − x on t' = 1 − t

The keys name the format, except that a plain DiT/SiT state dict looks the same whether it predicts
noise (DiT) or velocity (SiT): there the file name decides (``DiT-...`` / ``SiT-...``), or
``format=``. The architecture (depth, width, patch, channels, classes, learn_sigma, MaskDiT's
decoder) is read from the weights and checked against ``model`` when it is given. Each format's
prediction is converted by its adapter (adapters.py); key renaming is the only other difference:
MaskDiT's ``decoder_layer.*`` is our ``decoder_embed.*`` and its class embedding, a (D, K) linear
map of one-hot labels (∅ = the zero vector), is our (K + 1, D) table with a zero last row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import check_state_dict, read_checkpoint
from ..errors import ConfigError
from .adapters import as_velocity
from . import MODELS, build_model

FORMATS = {  # format -> (parameterisation, where it comes from)
    "ours": ("velocity", "this repository's training checkpoints"),
    "sit": ("velocity", "SiT's released state dicts (willisma/SiT)"),
    "dit": ("vp-epsilon", "DiT's released state dicts (facebookresearch/DiT)"),
    "maskdit": ("edm", "MaskDiT's EDMPrecond checkpoints (Anima-Lab/MaskDiT)"),
    "tread-edm": ("edm", "TREAD's training checkpoints with EDM preconditioning (CompVis/tread edm.py)"),
    "tread-rf": ("reversed-flow", "TREAD's training checkpoints of rf.py (CompVis/tread)"),
}
TREAD_KEYS = ("ema_state_dict", "model_state_dict")
PREFIX = "model."  # EDMPrecond keeps its network as .model


@dataclass
class Loaded:
    """A checkpoint as we sample it: ``model`` (velocity, our time), the network inside, the format,
    the architecture read from the weights and why the format was chosen."""
    model: nn.Module
    net: nn.Module
    format: str
    architecture: dict = field(default_factory=dict)
    reason: str = ""


def _plain(sd) -> bool:
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith("x_embedder.") for k in sd)


def _prefixed(sd) -> bool:
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith(PREFIX + "x_embedder.") for k in sd)


def detect_format(obj, path=None) -> tuple[str, str]:
    """(format, reason) of a loaded checkpoint, from its keys (and the file name for DiT vs SiT);
    ConfigError when they do not tell, naming the choices."""
    if not isinstance(obj, dict):
        raise ConfigError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict; it is no "
                          f"checkpoint format we know ({', '.join(FORMATS)}).")
    if any(k in obj for k in TREAD_KEYS):
        sd = obj.get("ema_state_dict") or obj.get("model_state_dict")
        if _prefixed(sd):
            return "tread-edm", "TREAD's {model,ema}_state_dict with keys model.* (edm.py's EDMPrecond)"
        return "tread-rf", "TREAD's {model,ema}_state_dict with unprefixed keys (rf.py wraps no preconditioner)"
    inner = next((obj[k] for k in ("ema", "model") if isinstance(obj.get(k), dict)), None)
    if inner is not None:
        if _prefixed(inner):
            return "maskdit", "{model, ema, opt} with keys model.* (MaskDiT's EDMPrecond)"
        if _plain(inner):
            return "ours", "{model, ema, step} in our layout (train.py)"
    if _plain(obj):
        name = Path(str(path)).name if path is not None else ""
        if name.startswith("DiT"):
            return "dit", f"a plain DiT/SiT state dict named {name!r}"
        if name.startswith("SiT"):
            return "sit", f"a plain DiT/SiT state dict named {name!r}"
        raise ConfigError(f"{str(path)!r} is a plain DiT/SiT state dict, and those look the same whether they "
                          "predict noise (DiT) or velocity (SiT): pass format='dit' or format='sit' "
                          "(--format dit / --format sit).")
    keys = sorted(map(str, obj))[:8]
    raise ConfigError(f"checkpoint {str(path)!r} is no format we know (top-level keys {keys}); formats: "
                      f"{', '.join(f'{k} ({v[1]})' for k, v in FORMATS.items())}.")


def state_dict(obj, fmt: str, weights: str = "ema") -> dict:
    """The weights of a checkpoint in our layout (models/sit.py, models/masking.py): ``weights`` is
    ema (the EMA, what every reference samples with) or model (the raw weights)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown checkpoint format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if weights not in ("ema", "model"):
        raise ConfigError(f"weights={weights!r}; choose 'ema' or 'model'.")
    if fmt in ("sit", "dit"):
        sd = obj
    else:
        key = {"tread-edm": f"{weights}_state_dict", "tread-rf": f"{weights}_state_dict"}.get(fmt, weights)
        if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
            have = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
            raise ConfigError(f"a {fmt} checkpoint holds its weights under {key!r}, and this one has {have}; "
                              "check format= (or leave it out to detect it).")
        sd = obj[key]
    if not (_plain(sd) or _prefixed(sd)):
        raise ConfigError(f"the weights are not a DiT/SiT layout (no x_embedder.*: {sorted(map(str, sd))[:6]}); "
                          f"check format={fmt!r}.")
    if fmt in ("maskdit", "tread-edm"):
        if not _prefixed(sd):
            raise ConfigError(f"a {fmt} checkpoint's keys start with {PREFIX!r} (EDMPrecond's network), and these "
                              "do not: try format='tread-rf' or 'ours'.")
        sd = {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}
    elif _prefixed(sd):
        raise ConfigError(f"these weights are prefixed {PREFIX!r} (an EDMPrecond network, EDM-parameterised), "
                          f"which format {fmt!r} never is: use format='maskdit' or 'tread-edm'.")
    if fmt == "maskdit":
        sd = _from_maskdit(sd)
    return dict(sd)


def _from_maskdit(sd: dict) -> dict:
    """MaskDiT's key layout -> ours: decoder_layer.* -> decoder_embed.*; the (D, K) one-hot class
    map -> a (K + 1, D) table whose last row (∅) is zero, as MaskDiT's null label is the zero vector."""
    out = {}
    for k, v in sd.items():
        if k.startswith("decoder_layer."):
            out["decoder_embed." + k[len("decoder_layer."):]] = v
        elif k == "y_embedder.embedding_table.weight":
            if v.dim() != 2:
                raise ConfigError(f"MaskDiT's class embedding should be a (D, K) matrix; got {tuple(v.shape)}.")
            out[k] = torch.cat([v.t(), torch.zeros(1, v.shape[0], dtype=v.dtype)], dim=0)  # (K + 1, D)
        else:
            out[k] = v
    return out


def architecture(sd: dict) -> dict:
    """What the weights say about the network: depth, hidden_size, patch_size, in_channels,
    input_size, num_classes, learn_sigma and, with a MaskDiT decoder, decoder_depth / decoder_width."""
    try:
        proj = sd["x_embedder.proj.weight"]  # (D, C, p, p)
        width, channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
        tokens = sd["pos_embed"].shape[1]
        depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
        out_dim = sd["final_layer.linear.weight"].shape[0]
        classes = sd["y_embedder.embedding_table.weight"].shape[0] - 1
    except (KeyError, ValueError) as e:
        raise ConfigError(f"the weights lack a DiT/SiT part ({e}); they are not a class-conditional DiT/SiT.") from e
    grid = int(round(tokens ** 0.5))
    arch = {"depth": depth, "hidden_size": width, "patch_size": patch, "in_channels": channels,
            "input_size": grid * patch, "num_classes": classes, "learn_sigma": out_dim == 2 * patch * patch * channels}
    decoder = [int(m.group(1)) for k in sd if (m := re.match(r"decoder_blocks\.(\d+)\.", k))]
    if decoder:
        arch.update(decoder_depth=1 + max(decoder), decoder_width=sd["mask_token"].shape[-1])
    return arch


def without_sigma(sd: dict, arch: dict) -> dict:
    """A learned-Σ network's weights (2C output channels) as a plain one's (C): the final layer keeps
    the rows of the first C channels of every patch position, exactly what the learn_sigma head
    returns (models/sit.py: unpatchify puts the channel last, so row (i·p + j)·2C + c is channel c of
    pixel (i, j) of the patch)."""
    if not arch["learn_sigma"]:
        return dict(sd)
    p, c = arch["patch_size"], arch["in_channels"]
    rows = torch.arange(p * p * 2 * c).reshape(p * p, 2 * c)[:, :c].reshape(-1)  # (p²·C,)
    out = dict(sd)
    out["final_layer.linear.weight"] = sd["final_layer.linear.weight"][rows].clone()
    out["final_layer.linear.bias"] = sd["final_layer.linear.bias"][rows].clone()
    return out


def model_name(arch: dict, family: str = "SiT") -> str:
    """The registered model (models.MODELS) of an architecture, e.g. SiT-XL/2; ConfigError if none."""
    for name, dims in MODELS.items():
        if name.startswith(family + "-") and dims["depth"] == arch["depth"] and \
                dims["hidden_size"] == arch["hidden_size"] and dims["patch_size"] == arch["patch_size"]:
            return name
    raise ConfigError(f"no registered model has depth {arch['depth']}, width {arch['hidden_size']} and patch "
                      f"{arch['patch_size']}; add it to models.SIZES (with its number of heads).")


def _check_named(model: str, arch: dict):
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; known: {', '.join(MODELS)}.")
    dims = MODELS[model]
    wrong = [f"{k} {arch[k]} (not {dims[k]})" for k in ("depth", "hidden_size", "patch_size") if dims[k] != arch[k]]
    if wrong:
        raise ConfigError(f"the checkpoint does not fit {model}: it has {', '.join(wrong)}; it is "
                          f"{model_name(arch, model.split('-')[0])}: pass that model (or leave model out).")


def load_pretrained(path, format: str | None = None, model: str | None = None, *, weights: str = "ema",
                    routes=(), num_heads: int | None = None, decoder_heads: int = 16, device="cpu",
                    obj=None) -> Loaded:
    """A checkpoint file as a velocity model ready to sample (eval mode, on ``device``).

    format: one of FORMATS, or None to detect it. model: a registered name (models.MODELS) that the
    weights are checked against; None reads it from them. num_heads: the attention heads, which the
    weights do not show (default: the registered model's; needed for a size that is not registered).
    routes: TREAD routes to route tokens at inference ('start:end', both inclusive; routing has no
    weights, so a dense checkpoint takes them too). decoder_heads: a MaskDiT decoder's heads (not in
    the weights; MaskDiT's is 16). obj: the checkpoint already loaded (then path only names it).
    """
    obj = read_checkpoint(path) if obj is None else obj
    if format is None:
        format, reason = detect_format(obj, path)
    else:
        if format not in FORMATS:
            raise ConfigError(f"unknown checkpoint format {format!r}; choose one of {', '.join(FORMATS)}.")
        reason = "given"
        try:
            seen, _ = detect_format(obj, path)
        except ConfigError:
            seen = None
        if seen is not None and seen != format and not {seen, format} <= {"sit", "dit"}:
            raise ConfigError(f"{str(path)!r} looks like a {seen} checkpoint ({FORMATS[seen][1]}), not {format}: "
                              f"pass format={seen!r} (--format {seen}).")
    sd = state_dict(obj, format, weights)
    arch = architecture(sd)
    family = "DiT" if format in ("dit", "maskdit") else "SiT"
    if model is not None:
        _check_named(model, arch)
        name = model
    else:
        try:
            name = model_name(arch, family)
        except ConfigError as e:
            if num_heads is None:
                raise ConfigError(f"{e} The weights do not show the number of attention heads: pass num_heads "
                                  "(--num-heads) to build this size.") from None
            name = f"{family}-T/2"  # any registered entry; its dimensions are replaced below
    heads = num_heads or MODELS[name]["num_heads"]
    kwargs = {k: arch[k] for k in ("input_size", "in_channels", "num_classes", "learn_sigma", "depth",
                                   "hidden_size", "patch_size")}
    kwargs["num_heads"] = heads
    if "decoder_depth" in arch:
        if routes:
            raise ConfigError("a MaskDiT checkpoint masks tokens at inference (any γ), it takes no routes.")
        net = build_model(name, sparsity="masking", decoder_depth=arch["decoder_depth"],
                          decoder_width=arch["decoder_width"], decoder_heads=decoder_heads, **kwargs)
    else:
        net = build_model(name, sparsity="routing" if routes else "none", routes=list(routes), **kwargs)
    check_state_dict(net, sd)
    net.load_state_dict(sd)
    velocity = as_velocity(net, FORMATS[format][0])
    dims = MODELS[name]
    registered = heads == dims["num_heads"] and all(dims[k] == arch[k] for k in ("depth", "hidden_size", "patch_size"))
    label = name if registered else (f"{family} (depth {arch['depth']}, width {arch['hidden_size']}, patch "
                                     f"{arch['patch_size']}, {heads} heads)")
    return Loaded(model=velocity.to(device).eval(), net=net, format=format,
                  architecture={"model": label, **arch, "num_heads": heads}, reason=reason)
