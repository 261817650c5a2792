"""``evaluate_npz``: FID, sFID, IS, precision and recall of an ADM sample set (paper §4.1, ADM's protocol),
and the class accuracy of class-conditional samples by a classifier (``acc``).

The first n samples are evaluated (FID@5k for the paper's heatmaps, 50k for its tables); every number
sits beside the count behind it (``fid_n``, ``ref_n``, ...), and the result names the network that
produced the features. The Inception Score needs the Inception logits: with the offline TorchScript
network (no logits) ``is_mean`` is None and ``is_note`` says why; no substitute is ever reported
under a standard metric's name.

``acc``: the share of the first n samples whose argmax logit is their class label. The labels are the
sample file's ``arr_1`` (ADM's class-conditional sample files store them there); the logits must be
over the dataset's classes (the pipeline's Fashion-MNIST classifier, ``extractor="classifier"``), not
Inception's 1008 TF classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .features import features_of, resolve_n
from .inception import CompatInception, resolve_extractor
from .npz import inspect_npz, open_npz
from .reference import PR_REF_N, load_reference
from .stats import IS_SPLIT_SIZE, PRC_K, frechet_from_features, inception_score, precision_recall

METRICS = ("fid", "sfid", "is", "prec", "rec", "acc")
DEFAULT_METRICS = ("fid", "sfid", "is", "prec", "rec")  # ADM's; "acc" needs labels and a class-logit network
LABELS_KEY = "arr_1"  # ADM: class labels of class-conditional samples
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


def evaluate_npz(sample_npz, reference=None, n: int | None = None, metrics=DEFAULT_METRICS, extractor="auto",
                 weights_path=None, cache_dir=None, batch_size: int = 32, device=None, progress: bool = True,
                 pr_ref_n: int = PR_REF_N, is_split_size: int = IS_SPLIT_SIZE) -> dict:
    """ADM-protocol metrics of the first n samples of ``sample_npz`` against the reference npz.

    reference: ADM's reference batch (mu, sigma, mu_s, sigma_s, arr_0), one written by
    ``build_reference``, or an image set (arr_0 only: statistics computed once and cached).
    extractor: "auto" | "offline" | "inception-v3-compat" | "classifier" (weights_path: its weights file) |
    an object with ``extract`` and ``extractor_id``. Features are cached in ``cache_dir`` (default:
    ``.metrics-cache/`` beside each npz).

    Returns a JSON-ready dict: ``fid``/``fid_n``, ``sfid``/``sfid_n``, ``is_mean``/``is_std``/``is_n``
    (None plus ``is_note`` without logits), ``prec``/``rec`` with ``*_n``, ``*_ref_n``, ``*_k``,
    ``acc``/``acc_n`` (class accuracy against the sample file's ``arr_1`` labels); and
    ``n``, ``ref_n``, ``ref_stats`` (where the reference statistics came from), ``extractor``,
    ``extractor_id``, ``resize``, ``samples``, ``reference``.
    """
    metrics = check_metrics(metrics)
    needs = _needs(metrics)
    if needs and reference is None:
        raise ConfigError(f"metrics {list(metrics)} need a reference npz (only 'is' and 'acc' do not).")
    if isinstance(sample_npz, (str, Path)):  # fail fast on a bad sample set or n, before any extraction
        resolve_n(n, inspect_npz(sample_npz).num, repr(str(sample_npz)))
    labels = _labels(sample_npz, n) if "acc" in metrics else None
    ext = resolve_extractor(extractor, weights_path=weights_path, device=device)
    if "acc" in metrics:
        _check_class_logits(ext)
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
    if "acc" in metrics:
        out.update(acc=_accuracy(feats, labels[:n], _label(ext)), acc_n=n)
    return out


def _labels(sample_npz, n) -> np.ndarray:
    """The class labels (arr_1) of the first n samples (all if n is None) of an ADM sample file."""
    if not isinstance(sample_npz, (str, Path)):
        raise ConfigError("metric 'acc' needs class labels: pass the path of an ADM sample npz whose "
                          f"{LABELS_KEY} holds them (np.savez(path, arr_0=images, {LABELS_KEY}=labels)).")
    with open_npz(sample_npz, "sample set") as z:
        if LABELS_KEY not in z.files:
            raise ConfigError(f"{str(sample_npz)!r} has no class labels ({LABELS_KEY}; it has {sorted(z.files)}), "
                              f"which metric 'acc' needs: save the samples with np.savez(path, arr_0=images, "
                              f"{LABELS_KEY}=labels) (the workflow's sample stage does), or leave out 'acc'.")
        labels = np.asarray(z[LABELS_KEY])
    num = inspect_npz(sample_npz).num
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != num:
        raise ConfigError(f"{str(sample_npz)!r}: {LABELS_KEY} must hold one integer class label per image "
                          f"({num},); got {labels.shape} {labels.dtype}.")
    return labels[:resolve_n(n, num, repr(str(sample_npz)))]


def _check_class_logits(ext) -> None:
    """'acc' needs logits over the dataset's classes: not Inception's 1008 TF classes, not no logits."""
    if isinstance(ext, CompatInception) or not getattr(ext, "has_logits", False):
        why = ("its logits are Inception's 1008 TF classes, not the dataset's class ids"
               if isinstance(ext, CompatInception) else "it has no logits")
        raise ConfigError(f"metric 'acc' cannot use {_label(ext)}: {why}; use extractor='classifier' with the "
                          "Fashion-MNIST classifier's weights (the workflow's classifier stage writes them), or "
                          "leave out 'acc'.")


def _accuracy(feats: dict, labels: np.ndarray, label: str) -> float:
    logits = feats["logits"]  # (n, classes)
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ConfigError(f"class labels span [{labels.min()}, {labels.max()}] but {label} has {logits.shape[1]} "
                          "classes; the sample labels and the classifier must be of the same dataset.")
    return float((logits.argmax(1) == labels).mean())


def _describe(images) -> str:
    return str(images) if isinstance(images, (str, Path)) else f"uint8 array {tuple(images.shape)}"


def _label(ext) -> str:
    return getattr(ext, "label", type(ext).__name__)


def _inception_score(feats: dict, split_size: int, label: str) -> dict:
    if "logits" not in feats:
        return {"is_mean": None, "is_std": None, "is_note": NO_LOGITS_NOTE.format(label=label)}
    mean, std = inception_score(feats["logits"], split_size)
    return {"is_mean": mean, "is_std": std, "is_splits": -(-len(feats["logits"]) // split_size)}

