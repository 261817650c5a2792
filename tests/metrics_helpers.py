"""Shared pieces of the metrics tests: small images, a cheap stand-in feature extractor, brute-force math."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F


def images(n: int, size: int = 16, seed: int = 0, grey: bool = False) -> np.ndarray:
    """Structured uint8 images (a colour gradient plus noise), NHWC, or (N, H, W) when grey."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None, None] * rng.uniform(0, 255, (n, 1, 1, 3))
    x = np.clip(ramp + rng.normal(0, 40, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return x[..., 0] if grey else x


class StubExtractor:
    """A stand-in for the Inception: deterministic low-dimensional features, counting its calls.

    pool (N, 12): 2x2 average pool of the image in [0, 1] per channel; spatial (N, 9): 3x3 pool of
    channel 1; logits (N, 10), only with ``logits=True``: a fixed linear map of pool.
    """

    label = "stub"

    def __init__(self, logits: bool = False, tag: str = "a"):
        self.has_logits = logits
        self.extractor_id = f"stub-{tag}-logits={logits}"
        self.calls = 0
        self.images = 0
        self.w = torch.randn(12, 10, generator=torch.Generator().manual_seed(0)) * 4

    def extract(self, x: torch.Tensor) -> dict:
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3
        self.calls += 1
        self.images += x.shape[0]
        f = x.float() / 255
        pool = F.adaptive_avg_pool2d(f, 2).flatten(1)  # (N, 12)
        out = {"pool": pool, "spatial": F.adaptive_avg_pool2d(f[:, 1:2], 3).flatten(1)}  # (N, 9)
        if self.has_logits:
            out["logits"] = pool @ self.w  # (N, 10)
        return out


def frechet_scipy(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy.linalg.sqrtm (TTUR/ADM style)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_lowrank(feats, mu2, s2) -> float:
    """Fréchet distance of features (n, D), n <= D, against (mu2, s2) without any D x D square root.

    With A the centred features, S1 = AᵀA/(n-1) and the non-zero eigenvalues of S1·S2 are those of
    A·S2·Aᵀ/(n-1) (n x n, symmetric PSD), so tr((S1 S2)^½) = sum of the square roots of its eigenvalues.
    """
    f = feats.astype(np.float64)
    n, mu1 = len(f), f.mean(0)
    a = f - mu1
    small = a @ s2 @ a.T / (n - 1)  # (n, n)
    d = mu1 - mu2
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0, None)).sum()
    return float(d @ d + (a * a).sum() / (n - 1) + np.trace(s2) - 2 * tr_sqrt)


def prc_bruteforce(gen, real, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s precision/recall by full NumPy distance matrices."""
    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d_gr = np.sqrt(((gen[:, None] - real[None]) ** 2).sum(-1))  # (G, R)
    precision = (d_gr <= radii(real)[None]).any(1).mean()
    recall = (d_gr.T <= radii(gen)[None]).any(1).mean()
    return float(precision), float(recall)


def inception_score_adm(logits, split_size: int) -> float:
    """ADM's formula: softmax, then exp(mean KL(p(y|x) || p(y))) over consecutive splits, averaged."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), split_size):
        part = p[i:i + split_size]
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores))
