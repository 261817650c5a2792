"""The workflow's evaluation stages: reference statistics, the Fashion-MNIST classifier, a row's metrics.

They are apart from stages.py because they need the feature networks (metrics/, torch-fidelity):
the data, training, sampling and FLOP jobs start without importing them.

    reference_stats(cfg)  train_classifier_stage(cfg)  evaluate_row(cfg, experiment, row)
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import config as C
from .data import FashionMNIST
from .errors import ConfigError
from .io import copy_file, save_npz, write_json
from .layout import Layout, job_digest
from .metrics import build_reference, evaluate_npz, load_reference, paired_distance, resolve_extractor
from .metrics.classifier import ClassifierExtractor, save_classifier, train_classifier
from .metrics.features import array_features
from .stages import device_of


def reference_images(cfg: dict) -> np.ndarray:
    """The reference images for metrics of a dataset we hold (Fashion-MNIST): uint8 (N, H, W)."""
    d, ref = cfg["data"], cfg["data"]["reference"]
    ds = FashionMNIST(ref["split"], root=d["root"], download=d["download"], output="uint8")
    return ds.images[:ref["n"]].numpy()  # (n, 32, 32), padded like the training images


def reference_stats(cfg: dict, device=None, progress: bool = True) -> dict:
    """Reference statistics for the metrics at data/reference.npz (ADM format: mu, sigma, mu_s,
    sigma_s, pool, ref_n, extractor_id) and a description in data/reference.json.

    Fashion-MNIST: built from the first n images of data.reference.split. ImageNet: ADM's reference
    batch as it is (its precomputed statistics) plus the pool3 features of its images for P/R."""
    layout, m, ref = Layout(cfg), cfg["metrics"], cfg["data"]["reference"]
    ext = resolve_extractor(m["extractor"], weights_path=m["weights_path"], device=device or device_of(cfg))
    cache = Path(layout.cache) / "metrics"
    if ref["npz"] is None:
        images = reference_images(cfg)
        built = build_reference(images, cache_dir=cache, extractor=ext, name="reference", pr_n=m["pr_ref_n"],
                                batch_size=ref["batch_size"], progress=progress)
        copy_file(built, layout.reference)
        source = f"Fashion-MNIST {ref['split']} split, first {len(images)} images"
        n = len(images)
    else:
        needs = tuple(x for x in ("fid", "sfid") if x in m["metrics"]) + (
            ("prc",) if {"prec", "rec"} & set(m["metrics"]) else ())
        r = load_reference(ref["npz"], ext, needs or ("fid",), cache, m["pr_ref_n"], ref["batch_size"], progress)
        arrays = {k: v for k, v in (("mu", r.mu), ("sigma", r.sigma), ("mu_s", r.mu_s), ("sigma_s", r.sigma_s),
                                    ("pool", r.pool)) if v is not None}
        save_npz(layout.reference, **arrays, ref_n=np.array(r.ref_n or 0),
                        extractor_id=np.array(ext.extractor_id))
        source, n = f"{ref['npz']} ({r.stats_source})", r.ref_n
    info = {"source": source, "ref_n": n, "extractor": getattr(ext, "label", type(ext).__name__),
            "extractor_id": ext.extractor_id, "pr_ref_n": m["pr_ref_n"]}
    write_json(layout.reference_info, info)
    return info


def train_classifier_stage(cfg: dict, device=None, progress: bool = True) -> dict:
    """The Fashion-MNIST classifier the figure grids measure with (metrics.extractor: classifier): train
    it on the training images, then its reference statistics on the first classifier.reference_n test
    images (ADM layout, like data/reference.npz) and its test accuracy -> classifier/."""
    layout, c, d = Layout(cfg), cfg["classifier"], cfg["data"]
    device = device or device_of(cfg)
    train_set = FashionMNIST(d["train_split"], root=d["root"], download=d["download"], output="uint8")
    n_train = min(d["train_limit"] or len(train_set), len(train_set))
    t0 = time.perf_counter()
    model = train_classifier(train_set.images[:n_train].numpy(), np.asarray(train_set.targets[:n_train]),
                             steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"], seed=c["seed"],
                             progress=progress, device=device)
    seconds = time.perf_counter() - t0
    meta = {"steps": c["steps"], "batch_size": c["batch_size"], "lr": c["lr"], "seed": c["seed"],
            "train_images": n_train}
    save_classifier(model, layout.classifier, meta)
    ext = ClassifierExtractor(layout.classifier).to(device).eval()
    test = FashionMNIST("test", root=d["root"], download=d["download"], output="uint8")
    images = test.images[:c["reference_n"]].numpy()
    labels = np.asarray(test.targets[:c["reference_n"]])
    feats = array_features(images, ext, batch_size=256, progress=progress)
    accuracy = float((feats["logits"].argmax(1) == labels).mean())
    built = build_reference(images, cache_dir=Path(layout.cache) / "metrics", extractor=ext,
                            name="classifier-reference", pr_n=min(cfg["metrics"]["pr_ref_n"], len(images)),
                            batch_size=256, progress=progress)
    copy_file(built, layout.classifier_reference)
    info = {**meta, "train_seconds": round(seconds, 1), "test_accuracy": round(accuracy, 4),
            "reference": f"Fashion-MNIST test split, first {len(images)} images", "ref_n": len(images),
            "extractor": ext.label, "extractor_id": ext.extractor_id}
    write_json(layout.classifier_info, info)
    return info


def metric_extractor(cfg: dict, m: dict, device=None):
    """The feature extractor of a metrics setting, and the reference statistics it is compared with."""
    layout = Layout(cfg)
    if m["extractor"] == "classifier":
        return (resolve_extractor("classifier", weights_path=layout.classifier, device=device or device_of(cfg)),
                layout.classifier_reference)
    return resolve_extractor(m["extractor"], weights_path=m["weights_path"], device=device or device_of(cfg)), \
        layout.reference


def evaluate_row(cfg: dict, experiment: str, row: str, device=None, progress: bool = True) -> dict:
    """Metrics (the experiment's metrics.metrics; ADM protocol) of the first metrics.n samples of a row
    against the reference statistics of its feature network -> metrics/<experiment>/<row>.json.

    A row tagged role: compare also gets its paired distance to the experiment's role: conditional row
    (Fig. 7, the same noise sample by sample): LPIPS where its weights are available, else the cosine
    distance of the metric's features, named as such (``distance``, ``distance_value``, ``_std``, ``_n``)."""
    layout, m = Layout(cfg), C.experiment(cfg, experiment)["metrics"]
    C.row_spec(cfg, experiment, row)
    ext, reference = metric_extractor(cfg, m, device)
    with np.load(reference, allow_pickle=False) as z:
        ref_id = str(z["extractor_id"]) if "extractor_id" in z.files else None
    if ref_id is not None and ref_id != ext.extractor_id and (m["extractor"] == "classifier"
                                                              or cfg["data"]["reference"]["npz"] is None):
        raise ConfigError(f"{reference!r} was built with feature extractor {ref_id}, but metrics now use "
                          f"{ext.extractor_id}; rebuild the reference (delete it and rerun).")
    result = evaluate_npz(layout.samples(experiment, row), reference, n=m["n"], metrics=m["metrics"],
                          extractor=ext, cache_dir=Path(layout.cache) / "metrics", batch_size=m["batch_size"],
                          progress=progress, pr_ref_n=m["pr_ref_n"])
    result = {"experiment": experiment, "row": row, **result,
              "config_digest": job_digest(cfg, "evaluate", experiment=experiment, row=row)}
    ref_row = C.distance_reference(cfg, experiment, row)
    if ref_row is not None:
        d = paired_distance(layout.samples(experiment, row), layout.samples(experiment, ref_row), n=m["n"],
                            extractor=ext, cache_dir=Path(layout.cache) / "metrics", progress=False)
        name = d["distance"]
        result.update(distance="lpips" if name == "lpips" else f"feature cosine distance ({getattr(ext, 'label', 'features')})",
                      distance_value=d[name], distance_std=d[f"{name}_std"], distance_n=d["n"], distance_to=ref_row)
    write_json(layout.metrics(experiment, row), result)
    return result
