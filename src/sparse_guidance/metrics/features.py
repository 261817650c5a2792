"""Batched feature extraction (tqdm) and the feature cache that lets each image set be read once.

The cache of an ADM image set lives in ``cache_dir`` (default: ``.metrics-cache/`` beside the npz),
one file per (file content, extractor): ``<stem>.<content hash>.<extractor hash>.features.npz`` with
the features of the set's *first* ``count`` images. Asking for the first n images reuses the cached
rows and extracts only the missing ones ([count, n)), so FID@5k followed by FID@50k reads the first
5k images once. A changed file (new content hash) or a changed extractor (weights, preprocessing,
``FEATURE_VERSION``) gets a new cache file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from ..progress import tqdm

from ..errors import ConfigError
from ..io import file_hash, save_npz, text_digest
from .npz import check_images, inspect_npz, iter_array_batches, iter_npz_batches, to_rgb_nchw

CACHE_DIRNAME = ".metrics-cache"
FEATURE_KEYS = ("pool", "spatial", "logits")


def extract_batches(batches, extractor, total: int, progress: bool = True, desc: str = "Inception features"):
    """Run ``extractor.extract`` over raw uint8 batches; returns {name: float32 array (total, D)}."""
    out: dict[str, list[np.ndarray]] = {}
    with tqdm(total=total, unit="img", desc=desc, disable=not progress, leave=False) as bar:
        for batch in batches:
            feats = extractor.extract(to_rgb_nchw(batch))  # uint8 (B, 3, H, W) -> {name: (B, D)}
            for k, v in feats.items():
                out.setdefault(k, []).append(v.detach().float().cpu().numpy())
            bar.update(len(batch))
    return {k: np.concatenate(v) for k, v in out.items()}


def array_features(images: np.ndarray, extractor, batch_size: int = 32, progress: bool = True) -> dict:
    """Features of an in-memory uint8 image array (N, H, W[, 1|3]); not cached."""
    images = np.asarray(images)
    check_images(images.shape, images.dtype, "image array")
    return extract_batches(iter_array_batches(images, batch_size=batch_size), extractor, len(images), progress)


def resolve_n(n, available: int, where: str) -> int:
    """The number of images to use: all if n is None, else n, which must lie in [1, available]."""
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n={n!r} must be a positive integer (the first n images of {where}).")
    if n > available:
        raise ConfigError(f"n={n} but {where} holds only {available} images; lower n or generate more samples.")
    return int(n)


def cache_path(npz_path, extractor, cache_dir=None) -> Path:
    """Where the features of ``npz_path`` by ``extractor`` are cached."""
    npz_path = Path(npz_path)
    folder = Path(cache_dir) if cache_dir is not None else npz_path.parent / CACHE_DIRNAME
    tag = f"{file_hash(npz_path)}.{text_digest(extractor.extractor_id)[:12]}"
    return folder / f"{npz_path.stem}.{tag}.features.npz"


def _read_cache(path: Path, extractor, digest: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["extractor_id"]) != extractor.extractor_id or str(z["source_digest"]) != digest:
                return None
            return {k: z[k] for k in FEATURE_KEYS if k in z.files}
    except Exception as e:  # a damaged cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable feature cache {str(path)!r} ({type(e).__name__}: {e}); recomputing.")
        return None


def npz_features(npz_path, extractor, n: int | None = None, cache_dir=None, batch_size: int = 32,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """Features of the first n images (all if None) of an ADM image set, from and into the cache."""
    npz_path = Path(npz_path)
    info = inspect_npz(npz_path)
    n = resolve_n(n, info.num, repr(str(npz_path)))
    path, digest = cache_path(npz_path, extractor, cache_dir), file_hash(npz_path)
    feats = _read_cache(path, extractor, digest) or {}
    have = len(feats["pool"]) if "pool" in feats else 0
    if have < n:
        new = extract_batches(iter_npz_batches(npz_path, have, n, batch_size), extractor, n - have, progress,
                              desc=f"features {npz_path.name}")
        feats = {k: np.concatenate([feats[k], v]) if have else v for k, v in new.items()}
        save_npz(path, **feats, extractor_id=np.array(extractor.extractor_id),
                        source_digest=np.array(digest), source=np.array(str(npz_path.resolve())))
    return {k: v[:n] for k, v in feats.items()}


def features_of(images, extractor, n: int | None = None, cache_dir=None, batch_size: int = 32,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Features of the first n images of an ADM npz path (cached) or of a uint8 array (not cached)."""
    if isinstance(images, (str, Path)):
        return npz_features(images, extractor, n, cache_dir, batch_size, progress)
    images = np.asarray(images)
    check_images(images.shape, images.dtype, "image array")
    n = resolve_n(n, len(images), "the image array")
    return array_features(images[:n], extractor, batch_size, progress)
