"""Paired distance between two sample sets made from the same noise (Fig. 7 left: guided output vs the
conditional prediction), pair i of one set against pair i of the other.

* ``lpips`` (Zhang et al. 2018) through the ``lpips`` package, used where its backbone's torchvision
  ImageNet weights are cached in ``$TORCH_HOME/hub/checkpoints/`` (they download at run time otherwise)
  or a ready model is passed. Images are scaled to [-1, 1]; sets smaller than 64 px (Fashion-MNIST's
  28 px is too small for LPIPS's AlexNet) are upsampled bilinearly to 64 px on the short side first,
  and the result records the size used.
* ``inception_pool3_cosine`` (offline fallback, a *different* distance): mean over pairs of
  ``1 - cos(pool3(a_i), pool3(b_i))`` in the FID Inception's pool3 space (features shared with the
  FID cache). It is reported under its own name; ``lpips`` is then None and ``lpips_note`` says why.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import read_checkpoint
from ..errors import ConfigError
from .features import features_of, resolve_n
from .inception import resolve_extractor
from .npz import check_images, inspect_npz, iter_array_batches, iter_npz_batches, to_rgb_nchw

DISTANCES = ("auto", "lpips", "inception_pool3_cosine")
LPIPS_MIN_SIZE = 64
_LPIPS_BACKBONE = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def lpips_weights_file(net: str = "alex") -> Path:
    """Where torchvision caches the ImageNet weights that ``lpips.LPIPS(net=net)`` loads."""
    import torchvision.models as tvm

    if net not in _LPIPS_BACKBONE:
        raise ConfigError(f"lpips_net={net!r}; choose from {sorted(_LPIPS_BACKBONE)}.")
    url = getattr(tvm, _LPIPS_BACKBONE[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def lpips_available(net: str = "alex") -> bool:
    return lpips_weights_file(net).is_file()


def load_lpips(net: str = "alex", device=None):
    """The pretrained LPIPS model; ConfigError where its backbone weights are not cached (offline).

    The backbone's cached torchvision weights are read here with weights_only=True (torchvision would
    unpickle them with weights_only=False, so a crafted file in the cache would run code) and copied
    into LPIPS's slices, whose modules keep the backbone's ``features`` indices as names."""
    if not lpips_available(net):
        raise ConfigError(f"LPIPS ({net}) needs torchvision's ImageNet weights at {lpips_weights_file(net)}, "
                          "which download at run time; put them there, or use distance='inception_pool3_cosine'.")
    import lpips

    backbone = read_checkpoint(lpips_weights_file(net))
    with warnings.catch_warnings():  # lpips passes torchvision the deprecated pretrained= argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # the backbone's weights: below
    own = model.net.state_dict()  # slice<k>.<features index>.<param>
    wanted = {k: "features." + k.split(".", 1)[1] for k in own}
    missing = sorted(v for v in wanted.values() if v not in backbone)
    if missing:
        raise ConfigError(f"{lpips_weights_file(net)} is not torchvision's {net} backbone: it lacks {missing[:4]}; "
                          "delete it so that it downloads again.")
    model.net.load_state_dict({k: backbone[v] for k, v in wanted.items()})
    return model.to(device or "cpu").eval()


def _info(images, what: str):
    if isinstance(images, (str, Path)):
        return inspect_npz(images).shape
    images = np.asarray(images)
    check_images(images.shape, images.dtype, what)
    return images.shape


def _batches(images, n: int, batch_size: int):
    if isinstance(images, (str, Path)):
        return iter_npz_batches(images, 0, n, batch_size)
    return iter_array_batches(np.asarray(images), 0, n, batch_size)


def _to_lpips_input(batch: np.ndarray, device) -> torch.Tensor:
    """uint8 (B, H, W[, C]) -> float (B, 3, H', W') in [-1, 1], upsampled to >= 64 px on the short side."""
    x = to_rgb_nchw(batch).to(device).float() / 127.5 - 1  # (B, 3, H, W)
    h, w = x.shape[-2:]
    if min(h, w) < LPIPS_MIN_SIZE:
        s = LPIPS_MIN_SIZE / min(h, w)
        x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)
    return x


@torch.no_grad()
def _lpips_pairs(model, a, b, n: int, batch_size: int) -> tuple[np.ndarray, tuple]:
    device = next(model.parameters()).device
    dists, size = [], None
    for xa, xb in zip(_batches(a, n, batch_size), _batches(b, n, batch_size)):
        ta, tb = _to_lpips_input(xa, device), _to_lpips_input(xb, device)
        size = tuple(ta.shape[-2:])
        dists.append(model(ta, tb).reshape(-1).cpu().numpy())  # (B,)
    return np.concatenate(dists), size


def _cosine_pairs(a, b, n: int, extractor, cache_dir, batch_size: int, progress: bool) -> np.ndarray:
    fa = torch.from_numpy(features_of(a, extractor, n, cache_dir, batch_size, progress)["pool"]).double()
    fb = torch.from_numpy(features_of(b, extractor, n, cache_dir, batch_size, progress)["pool"]).double()
    return (1 - F.cosine_similarity(fa, fb, dim=1)).numpy()  # (n,)


def paired_distance(a, b, n: int | None = None, distance: str = "auto", extractor="auto", lpips_model=None,
                    lpips_net: str = "alex", cache_dir=None, batch_size: int = 32, device=None,
                    progress: bool = True) -> dict:
    """Mean distance between image i of ``a`` and image i of ``b`` over the first n pairs.

    a, b: ADM npz paths or uint8 arrays, same count and size. distance: "auto" (LPIPS where its
    weights are available or ``lpips_model`` is given, else ``inception_pool3_cosine``), "lpips", or
    "inception_pool3_cosine". The result's ``distance`` names the one used, its value sits under that name.
    """
    if distance not in DISTANCES:
        raise ConfigError(f"distance={distance!r}; choose from {list(DISTANCES)}.")
    sa, sb = _info(a, "first image set"), _info(b, "second image set")
    if sa[1:3] != sb[1:3]:
        raise ConfigError(f"paired sets differ in image size: {sa[1:3]} vs {sb[1:3]}; pairs must match.")
    n = resolve_n(n, min(sa[0], sb[0]), "the smaller of the paired sets")
    use_lpips = distance == "lpips" or (distance == "auto" and (lpips_model is not None or lpips_available(lpips_net)))
    out = {"a": str(a) if isinstance(a, (str, Path)) else "array", "b": str(b) if isinstance(b, (str, Path))
           else "array", "n": n}
    if use_lpips:
        model = lpips_model if lpips_model is not None else load_lpips(lpips_net, device)
        d, size = _lpips_pairs(model, a, b, n, batch_size)
        out.update(distance="lpips", lpips=float(d.mean()), lpips_std=float(d.std()),
                   lpips_net=getattr(model, "pnet_type", lpips_net), lpips_input_size=list(size))
        return out
    ext = resolve_extractor(extractor, device=device)
    d = _cosine_pairs(a, b, n, ext, cache_dir, batch_size, progress)
    why = ("not requested" if distance == "inception_pool3_cosine" else
           f"its {lpips_net} backbone weights ({lpips_weights_file(lpips_net).name}) are not cached offline")
    out.update(distance="inception_pool3_cosine", inception_pool3_cosine=float(d.mean()),
               inception_pool3_cosine_std=float(d.std()), extractor=getattr(ext, "label", type(ext).__name__),
               lpips=None, lpips_note=f"LPIPS not computed ({why}); inception_pool3_cosine is a different "
                                      "distance (1 - cosine similarity of FID Inception pool3 features), not LPIPS")
    return out
