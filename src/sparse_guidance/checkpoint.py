"""Checkpoints: atomic saving, and strict loading with errors that name what does not match.

Official DiT/SiT checkpoints (``DiT-XL-2-256x256.pt``, ``SiT-XL-2-256x256.pt``) are plain state
dicts in the layout models/sit.py follows; they were trained with learn_sigma=True (8 output
channels), so build the model with ``learn_sigma=True`` to load them:

    model = build_model("SiT-XL/2", learn_sigma=True)
    load_weights(model, "SiT-XL-2-256x256.pt")

That loads the weights only: DiT predicts noise, MaskDiT and TREAD are EDM-parameterised. To sample
a foreign checkpoint, use models.formats.load_pretrained, which also converts what it predicts.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch

from .io import atomic_open
from .errors import ConfigError

STATE_KEYS = ("ema", "model", "state_dict")


DIGEST_KEY = "tensor_sha256"  # what save_atomic adds to a checkpoint dict and read_checkpoint checks


def tensor_digest(obj) -> str:
    """SHA-256 over a (nested) checkpoint's contents: every tensor's name, dtype, shape and bytes, and
    every other leaf's repr, mappings in sorted key order. Flipped bytes that still unpickle change it."""
    h = hashlib.sha256()

    def walk(x, name: str):
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(x.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                walk(x[k], f"{name}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{name}/{i}")
        else:
            h.update(f"{name}|{x!r}|".encode())

    walk(obj, "")
    return h.hexdigest()


def save_atomic(obj, path):
    """torch.save to a temporary file in the same folder, then rename: a kill never leaves half a file.
    A dict is saved with its tensor_digest under DIGEST_KEY, which read_checkpoint verifies."""
    if isinstance(obj, dict):
        obj = {**obj, DIGEST_KEY: tensor_digest(obj)}
    with atomic_open(path) as f:
        torch.save(obj, f)


def read_checkpoint(path) -> dict:
    """Load a checkpoint file on the CPU with ``weights_only=True``: tensors and plain containers only,
    so a file that would run code when unpickled (a crafted pickle) is refused, not run. A missing,
    unreadable or refused file raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist; check the path, or train/download it first.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a global that is not a tensor type: possibly code
        raise ConfigError(f"{str(path)!r} holds objects other than tensors (its pickle names "
                          f"{_refused_global(e)}), which could run code when loaded; refusing to unpickle it. "
                          "Use a file from the weights' publisher (or re-save its state dict).") from e
    except Exception as e:  # truncated zip, garbage, ...
        raise ConfigError(f"checkpoint {str(path)!r} is corrupt or not a torch checkpoint ({type(e).__name__}: {e}); "
                          "delete it and re-create or re-download it.") from e
    if isinstance(obj, dict) and DIGEST_KEY in obj:  # one of ours (save_atomic): check its contents
        stored = obj.pop(DIGEST_KEY)
        if tensor_digest(obj) != stored:
            raise ConfigError(f"checkpoint {str(path)!r} is corrupt: its contents do not match the checksum stored "
                              "when it was written; delete it and re-create it (a training rerun resumes from the "
                              "previous good checkpoint, or starts over).")
    return obj


def _refused_global(e: Exception) -> str:
    found = re.search(r"GLOBAL (\S+)", str(e))  # torch: "Unsupported global: GLOBAL os.system ..."
    return found.group(1) if found else "an object that weights_only loading does not allow"


def extract_state_dict(obj, key: str | None = None) -> dict:
    """The weights inside a checkpoint: obj[key], else the first of ema/model/state_dict, else obj."""
    if not isinstance(obj, dict):
        raise ConfigError(f"checkpoint holds a {type(obj).__name__}, not a state dict.")
    if key is not None:
        if key not in obj:
            raise ConfigError(f"checkpoint has no entry {key!r}; it has {sorted(obj)[:10]}.")
        return obj[key]
    for k in STATE_KEYS:
        if k in obj and isinstance(obj[k], dict):
            return obj[k]
    return obj


def check_state_dict(model: torch.nn.Module, sd: dict):
    """Raise ConfigError naming missing, unexpected and mis-shaped keys (at most 8 of each)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            parts.append(f"{label}: {', '.join(items[:8])}{more}")
    hint = ""
    if unexpected and all(k.startswith("model.") for k in unexpected):
        hint = (" Its keys are prefixed 'model.': an EDMPrecond checkpoint (MaskDiT, TREAD's edm.py), whose network "
                "predicts EDM's F, not a velocity; load it with models.formats.load_pretrained (format 'maskdit' or "
                "'tread-edm'), which converts the keys and the parameterisation.")
    elif any(k.startswith("final_layer.linear") for k in (s.split(":")[0] for s in shapes)):
        hint = " Official DiT/SiT checkpoints have 8 output channels: build the model with learn_sigma=True."
    elif any(k.startswith("decoder") or k == "mask_token" for k in missing + unexpected):
        hint = " The checkpoint and the model differ in sparsity (masking decoder present in only one)."
    raise ConfigError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(parts) + "." + hint)


def load_weights(model: torch.nn.Module, source, key: str | None = None) -> torch.nn.Module:
    """Load weights from a path, a checkpoint dict or a state dict, strictly; returns the model."""
    obj = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    sd = extract_state_dict(obj, key)
    check_state_dict(model, sd)
    model.load_state_dict(sd)
    return model
