"""Reference statistics: ADM's reference batches as they are, and cached ones built from images.

An ADM reference batch (e.g. ``VIRTUAL_imagenet256_labeled.npz``) holds ``arr_0`` (the reference
images), ``mu``/``sigma`` (pool3 statistics, FID) and ``mu_s``/``sigma_s`` (mixed_6/conv[:7]
statistics, sFID). As ADM's evaluator does, precomputed statistics are used as they are; precision/
recall needs the reference images' pool3 features, extracted from ``arr_0`` once (feature cache).

``build_reference`` writes the same format for an image set we hold (the embedded Fashion-MNIST
default: e.g. its train split): ``mu, sigma, mu_s, sigma_s`` over all images, ``pool`` (pool3
features of the first ``pr_n`` images, for P/R; ADM uses 10k reference images), ``ref_n``,
``extractor_id`` and ``key``. The file is named by a hash of the images, the extractor and ``pr_n``
(changed inputs or a changed extractor give a new file) and written atomically. A reference npz with
``arr_0`` but without statistics gets them built the same way, cached beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .features import CACHE_DIRNAME, extract_batches, npz_features
from .inception import resolve_extractor
from ..io import array_digest, file_hash, save_npz, text_digest
from .npz import IMAGES_KEY, check_images, inspect_npz, iter_array_batches, iter_npz_batches, open_npz
from .stats import check_stats, gaussian_stats

PR_REF_N = 10000  # ADM: precision/recall against 10k reference images
STATS_KEYS = {"fid": ("mu", "sigma"), "sfid": ("mu_s", "sigma_s")}


@dataclass
class Reference:
    """What a metric needs from a reference; absent parts are None."""

    path: str | None
    mu: np.ndarray | None = None  # (2048,)
    sigma: np.ndarray | None = None  # (2048, 2048)
    mu_s: np.ndarray | None = None  # (2023,)
    sigma_s: np.ndarray | None = None  # (2023, 2023)
    pool: np.ndarray | None = None  # (M, 2048) pool3 features for precision/recall
    ref_n: int | None = None  # images behind the statistics
    stats_source: str = ""


def _reference_key(digest: str, extractor, pr_n: int) -> str:
    return text_digest("reference-v1", digest, extractor.extractor_id, pr_n)


def _valid_cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["key"]) == key and all(k in z.files for k in ("mu", "sigma", "mu_s", "sigma_s", "pool"))
    except Exception:
        return False


def build_reference(images, cache_dir=None, extractor="auto", name: str | None = None, pr_n: int = PR_REF_N,
                    batch_size: int = 32, progress: bool = True, device=None) -> Path:
    """ADM-style reference statistics of uint8 images (array or ADM npz path), computed once and cached.

    Returns the path of ``<cache_dir>/<name>-<key>.ref.npz``; a second call with the same images,
    extractor and ``pr_n`` returns it without extracting anything.
    """
    if isinstance(pr_n, bool) or not isinstance(pr_n, (int, np.integer)) or pr_n < 4:
        raise ConfigError(f"pr_n={pr_n!r} must be an integer >= 4 (reference images kept for precision/recall).")
    ext = resolve_extractor(extractor, device=device)
    if isinstance(images, (str, Path)):
        src = Path(images)
        info = inspect_npz(src)
        digest, num = file_hash(src), info.num
        batches = iter_npz_batches(src, batch_size=batch_size)
        folder = Path(cache_dir) if cache_dir is not None else src.parent / CACHE_DIRNAME
        name = name or src.stem
    else:
        images = np.asarray(images)
        check_images(images.shape, images.dtype, "reference image array")
        if cache_dir is None:
            raise ConfigError("build_reference from an array needs cache_dir (where to keep the statistics).")
        digest, num = array_digest(images), len(images)
        batches = iter_array_batches(images, batch_size=batch_size)
        folder, name = Path(cache_dir), name or "reference"
    if num < 2:
        raise ConfigError(f"reference statistics need at least 2 images; got {num}.")
    key = _reference_key(digest, ext, pr_n)
    out = folder / f"{name}-{key[:16]}.ref.npz"
    if _valid_cached(out, key):
        return out
    feats = extract_batches(batches, ext, num, progress, desc=f"reference features ({name})")
    mu, sigma = gaussian_stats(feats["pool"], "reference pool3 features")
    mu_s, sigma_s = gaussian_stats(feats["spatial"], "reference mixed_6/conv features")
    return save_npz(out, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, pool=feats["pool"][:pr_n],
                           ref_n=np.array(num), extractor_id=np.array(ext.extractor_id), key=np.array(key))


STORED_KEYS = ("mu", "sigma", "mu_s", "sigma_s", "pool", "ref_n", "extractor_id")


def load_reference(path, extractor, needs=("fid", "sfid", "prc"), cache_dir=None, pr_n: int = PR_REF_N,
                   batch_size: int = 32, progress: bool = True) -> Reference:
    """Read what ``needs`` ("fid", "sfid", "prc") asks of a reference npz; ConfigError names what is missing."""
    path = Path(path)
    where = f"reference {str(path)!r}"
    with open_npz(path, "reference") as z:
        files = set(z.files)
        stored = {k: z[k] for k in STORED_KEYS if k in files}  # everything but the images
    missing = sorted({k for m in needs for k in STATS_KEYS.get(m, ()) if k not in files})
    has_images = IMAGES_KEY in files
    if missing and not has_images:
        raise ConfigError(f"{where} lacks {missing} and has no {IMAGES_KEY} images to compute them from (it has "
                          f"{sorted(files)}); use ADM's reference batch or build one with build_reference().")
    ref = Reference(str(path), stats_source=f"precomputed in {path.name}")
    if missing:  # statistics from arr_0, cached beside the reference
        built = build_reference(path, cache_dir, extractor, pr_n=pr_n, batch_size=batch_size, progress=progress)
        ref.stats_source = f"computed from {path.name}'s {IMAGES_KEY} (cached at {built})"
        with np.load(built, allow_pickle=False) as b:
            stored = {k: b[k] for k in STORED_KEYS if k in b.files}
    for metric, (k_mu, k_sigma) in STATS_KEYS.items():
        if metric in needs:
            mu, sigma = check_stats(stored[k_mu], stored[k_sigma], f"{where} {k_mu}/{k_sigma}")
            setattr(ref, k_mu, mu)
            setattr(ref, k_sigma, sigma)
    if "ref_n" in stored:
        ref.ref_n = int(stored["ref_n"])
    elif has_images:
        ref.ref_n = inspect_npz(path).num
    if "prc" in needs:
        ref.pool = _reference_pool(path, stored, extractor, has_images, pr_n, cache_dir, batch_size, progress)
    return ref


def _reference_pool(path: Path, stored: dict, extractor, has_images: bool, pr_n: int, cache_dir, batch_size,
                    progress) -> np.ndarray:
    """pool3 features of the reference images for precision/recall: stored ones, else from arr_0."""
    stored_id = str(stored["extractor_id"]) if "extractor_id" in stored else "none"
    if "pool" in stored and stored_id == extractor.extractor_id:
        return np.asarray(stored["pool"])[:pr_n]
    if has_images:
        n = min(pr_n, inspect_npz(path).num)
        return npz_features(path, extractor, n, cache_dir, batch_size, progress)["pool"]
    raise ConfigError(f"reference {str(path)!r} has no {IMAGES_KEY} images and no pool3 features from this "
                      f"extractor ({extractor.extractor_id}; stored: {stored_id}), so precision/recall cannot be "
                      "computed: rebuild it with build_reference() and this extractor, or leave out prec/rec.")
