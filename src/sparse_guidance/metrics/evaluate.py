"""``evaluate_npz``: FID, sFID, IS, precision and recall of an ADM sample set (paper §4.1, ADM's protocol).

The first n samples are evaluated (FID@5k for the paper's heatmaps, 50k for its tables); every number
sits beside the count behind it (``fid_n``, ``ref_n``, ...), and the result names the network that
produced the features. The Inception Score needs the Inception logits: with the offline TorchScript
network (no logits) ``is_mean`` is None and ``is_note`` says why; no substitute is ever reported
under a standard metric's name.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .features import features_of, resolve_n
from .inception import resolve_extractor
from .npz import inspect_npz
from .reference import PR_REF_N, load_reference
from .stats import IS_SPLIT_SIZE, PRC_K, frechet_from_features, inception_score, precision_recall

METRICS = ("fid", "sfid", "is", "prec", "rec")
NO_LOGITS_NOTE = ("no Inception logits offline: {label} has no logits layer; the Inception Score needs "
                  "torch-fidelity's inception-v3-compat weights (cached in $TORCH_HOME/hub/checkpoints/ or given "
                  "as weights_path)")


def check_metrics(metrics) -> tuple[str, ...]:
    """The requested metric names, validated and in METRICS order."""
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ConfigError(f"metrics {list(metrics)!r}: {'unknown ' + str(unknown) if unknown else 'none given'}; "
                          f"choose from {list(METRICS)}.")
    return tuple(m for m in METRICS if m in metrics)


def _needs(metrics) -> tuple[str, ...]:
    return tuple(m for m in ("fid", "sfid") if m in metrics) + (("prc",) if {"prec", "rec"} & set(metrics) else ())


def evaluate_npz(sample_npz, reference=None, n: int | None = None, metrics=METRICS, extractor="auto",
                 weights_path=None, cache_dir=None, batch_size: int = 32, device=None, progress: bool = True,
                 pr_ref_n: int = PR_REF_N, is_split_size: int = IS_SPLIT_SIZE) -> dict:
    """ADM-protocol metrics of the first n samples of ``sample_npz`` against the reference npz.

    reference: ADM's reference batch (mu, sigma, mu_s, sigma_s, arr_0), one written by
    ``build_reference``, or an image set (arr_0 only: statistics computed once and cached).
    extractor: "auto" | "offline" | "inception-v3-compat" | an object with ``extract`` and
    ``extractor_id``. Features are cached in ``cache_dir`` (default: ``.metrics-cache/`` beside each npz).

    Returns a JSON-ready dict: ``fid``/``fid_n``, ``sfid``/``sfid_n``, ``is_mean``/``is_std``/``is_n``
    (None plus ``is_note`` without logits), ``prec``/``rec`` with ``*_n``, ``*_ref_n``, ``*_k``; and
    ``n``, ``ref_n``, ``ref_stats`` (where the reference statistics came from), ``extractor``,
    ``extractor_id``, ``resize``, ``samples``, ``reference``.
    """
    metrics = check_metrics(metrics)
    needs = _needs(metrics)
    if needs and reference is None:
        raise ConfigError(f"metrics {list(metrics)} need a reference npz (only 'is' does not).")
    if isinstance(sample_npz, (str, Path)):  # fail fast on a bad sample set or n, before any extraction
        resolve_n(n, inspect_npz(sample_npz).num, repr(str(sample_npz)))
    ext = resolve_extractor(extractor, weights_path=weights_path, device=device)
    ref = load_reference(reference, ext, needs, cache_dir, pr_ref_n, batch_size, progress) if needs else None
    feats = features_of(sample_npz, ext, n, cache_dir, batch_size, progress)
    n = len(feats["pool"])
    out = {"samples": _describe(sample_npz), "reference": None if reference is None else str(reference), "n": n,
           "extractor": _label(ext), "extractor_id": ext.extractor_id, "resize": getattr(ext, "resize", None)}
    if ref is not None:
        out.update(ref_n=ref.ref_n, ref_stats=ref.stats_source)
    if "fid" in metrics:
        out.update(fid=frechet_from_features(feats["pool"], ref.mu, ref.sigma), fid_n=n)
    if "sfid" in metrics:
        out.update(sfid=frechet_from_features(feats["spatial"], ref.mu_s, ref.sigma_s), sfid_n=n)
    if "is" in metrics:
        out.update(_inception_score(feats, is_split_size, _label(ext)), is_n=n)
    if {"prec", "rec"} & set(metrics):
        prec, rec = precision_recall(feats["pool"], ref.pool, k=PRC_K, device=getattr(ext, "device", None))
        for m, v in (("prec", prec), ("rec", rec)):
            if m in metrics:
                out.update({m: v, f"{m}_n": n, f"{m}_ref_n": len(ref.pool), f"{m}_k": PRC_K})
    return out


def _describe(images) -> str:
    return str(images) if isinstance(images, (str, Path)) else f"uint8 array {tuple(images.shape)}"


def _label(ext) -> str:
    return getattr(ext, "label", type(ext).__name__)


def _inception_score(feats: dict, split_size: int, label: str) -> dict:
    if "logits" not in feats:
        return {"is_mean": None, "is_std": None, "is_note": NO_LOGITS_NOTE.format(label=label)}
    mean, std = inception_score(feats["logits"], split_size)
    return {"is_mean": mean, "is_std": std, "is_splits": -(-len(feats["logits"]) // split_size)}

