"""The metric math of ADM's protocol, on features; torch-fidelity does the work where it has it.

* Fréchet distance (FID on pool3, sFID on mixed_6/conv[:7]; Heusel et al. 2017):
  ``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``, through torch-fidelity's
  ``fid_statistics_to_metric`` (tr of the square root from the eigenvalues of S1 S2). Statistics are
  ADM's: the mean and the unbiased covariance (``np.cov``) of the features, in float64.
* Precision/recall (Kynkäänniemi et al. 2019, k = 3): a point is on a set's manifold if it lies
  within the distance from some member of the set to that member's k-th nearest neighbour (self
  excluded); precision = share of generated points on the real manifold, recall = share of real
  points on the generated manifold. torch-fidelity's ``calculate_precision_recall_part`` (batched).
* Inception Score (Salimans et al. 2016): ``exp E_x KL(p(y|x) || p(y))`` from the softmax of the
  logits without the fc bias (ADM), over consecutive splits of 5000 samples, averaged (ADM); through
  torch-fidelity's ``isc_features_to_metric`` without shuffling.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from ..errors import ConfigError

PRC_K = 3  # Kynkäänniemi et al.'s and ADM's neighbourhood size
IS_SPLIT_SIZE = 5000  # ADM: Inception Score over consecutive splits of 5000 samples


def _features_2d(x, what: str, min_rows: int) -> np.ndarray:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ConfigError(f"{what} must be a (N, D) array with N >= {min_rows}; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ConfigError(f"{what} contains NaN or inf.")
    return x


def gaussian_stats(features, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) in float64: the features' mean and unbiased covariance, as ADM's evaluator."""
    f = _features_2d(features, what, min_rows=2).astype(np.float64)  # (N, D)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def check_stats(mu, sigma, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate (mu (D,), sigma (D, D)), finite; returns them as float64."""
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ConfigError(f"{where}: mu {mu.shape} and sigma {sigma.shape} are not (D,) and (D, D).")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ConfigError(f"{where}: mu/sigma contain NaN or inf.")
    return mu.astype(np.float64), sigma.astype(np.float64)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (torch-fidelity's implementation)."""
    mu1, sigma1 = check_stats(mu1, sigma1, "first statistics")
    mu2, sigma2 = check_stats(mu2, sigma2, "second statistics")
    if mu1.shape != mu2.shape:
        raise ConfigError(f"statistics of different dimensions: {mu1.shape[0]} vs {mu2.shape[0]}; the sample "
                          "features and the reference statistics must come from the same network layer.")
    out = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    return float(out[KEY_METRIC_FID])


def frechet_from_features(features, mu, sigma) -> float:
    """Fréchet distance between Gaussian statistics of features (N, D) and reference (mu, sigma)."""
    return frechet_distance(*gaussian_stats(features), mu, sigma)


def precision_recall(generated, real, k: int = PRC_K, batch_size: int = 10000,
                     device=None) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds) of generated (N, D) against real (M, D) features."""
    g = torch.as_tensor(_features_2d(generated, "generated features", k + 1), dtype=torch.float32)
    r = torch.as_tensor(_features_2d(real, "reference features", k + 1), dtype=torch.float32)
    if g.shape[1] != r.shape[1]:
        raise ConfigError(f"generated features are {g.shape[1]}-d, reference features {r.shape[1]}-d; "
                          "both must come from the same network layer.")
    if device is not None:
        g, r = g.to(device), r.to(device)
    out = prc_features_to_metric(g, r, prc_neighborhood=k, prc_batch_size=batch_size, save_cpu_ram=True,
                                 verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def inception_score(logits_unbiased, split_size: int = IS_SPLIT_SIZE) -> tuple[float, float]:
    """(mean, std) of the Inception Score over ceil(N / split_size) consecutive, equal splits."""
    x = torch.as_tensor(_features_2d(logits_unbiased, "Inception logits", 1))  # (N, 1008)
    splits = max(1, math.ceil(x.shape[0] / split_size))
    out = isc_features_to_metric(x, splits=splits, shuffle=False)
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD])
