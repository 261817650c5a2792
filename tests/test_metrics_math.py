"""Metric math on synthetic features: Fréchet distance, precision/recall (k=3), Inception Score."""
from __future__ import annotations

import numpy as np
import pytest

from metrics_helpers import frechet_lowrank, frechet_scipy, inception_score_adm, prc_bruteforce
from sparse_guidance import ConfigError
from sparse_guidance.metrics import frechet_distance, gaussian_stats, inception_score, precision_recall
from sparse_guidance.metrics.stats import frechet_from_features


def gaussian(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix * scale + shift).astype(np.float32)


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    f = gaussian(50, 6, 0)
    mu, sigma = gaussian_stats(f)
    assert mu.dtype == np.float64 and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    centred = f.astype(np.float64) - mu
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-10)


@pytest.mark.parametrize("d", [8, 64])
def test_frechet_matches_scipy_sqrtm(d):
    a, b = gaussian(400, d, 1), gaussian(300, d, 2, shift=0.3, scale=1.3)
    s1, s2 = gaussian_stats(a), gaussian_stats(b)
    ours = frechet_distance(*s1, *s2)
    assert ours == pytest.approx(frechet_scipy(*s1, *s2), rel=1e-6, abs=1e-8)
    assert frechet_from_features(a, *s2) == pytest.approx(ours, rel=1e-12)


def test_frechet_of_identical_sets_is_zero():
    f = gaussian(200, 16, 3)
    assert abs(frechet_distance(*gaussian_stats(f), *gaussian_stats(f))) < 1e-6


def test_frechet_grows_monotonically_with_the_shift():
    real = gaussian(500, 16, 4)
    stats = gaussian_stats(real)
    shifts = (0.25, 0.5, 1.0, 2.0)
    fresh = [frechet_from_features(gaussian(500, 16, 5, shift=s), *stats) for s in (0.0,) + shifts]
    assert all(x < y for x, y in zip(fresh, fresh[1:]))
    # the real set itself, shifted by s in every dimension: the covariance terms cancel, FID = |Δμ|² = 16 s²
    for s in shifts:
        assert frechet_from_features(real + s, *stats) == pytest.approx(16 * s ** 2, rel=1e-5)


def test_frechet_with_fewer_samples_than_dims_matches_the_lowrank_identity():
    f = gaussian(6, 64, 6)
    mu2, s2 = gaussian_stats(gaussian(300, 64, 7, shift=0.1))
    assert frechet_from_features(f, mu2, s2) == pytest.approx(frechet_lowrank(f, mu2, s2), rel=1e-6)


def test_frechet_rejects_mismatched_or_bad_statistics():
    mu, s = gaussian_stats(gaussian(50, 4, 8))
    mu8, s8 = gaussian_stats(gaussian(50, 8, 9))
    with pytest.raises(ConfigError, match="different dimensions: 4 vs 8"):
        frechet_distance(mu, s, mu8, s8)
    with pytest.raises(ConfigError, match="not \\(D,\\) and \\(D, D\\)"):
        frechet_distance(mu, s[:3], mu, s)
    with pytest.raises(ConfigError, match="NaN"):
        frechet_distance(mu * np.nan, s, mu, s)
    with pytest.raises(ConfigError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 4)))


def test_precision_recall_identical_clouds():
    x = gaussian(120, 8, 10)
    assert precision_recall(x, x) == (1.0, 1.0)


def test_precision_recall_far_away_cloud():
    x = gaussian(120, 8, 11)
    assert precision_recall(x + 100.0, x) == (0.0, 0.0)


def test_precision_recall_half_the_modes():
    """Real data: 4 well-separated modes; generated: fresh draws from only 2 of them -> high P, R ~ 0.5."""
    rng = np.random.default_rng(12)
    centres = np.array([[20, 0], [0, 20], [-20, 0], [0, -20]], dtype=np.float64)
    real = np.concatenate([c + rng.normal(size=(200, 2)) for c in centres]).astype(np.float32)
    gen = np.concatenate([c + rng.normal(size=(200, 2)) for c in centres[:2]]).astype(np.float32)
    p, r = precision_recall(gen, real)
    assert p > 0.93
    assert r == pytest.approx(0.5, abs=0.04)
    assert (p, r) == pytest.approx(prc_bruteforce(gen, real), abs=1e-6)  # torch-fidelity means in float32


@pytest.mark.parametrize("seed", [13, 14])
def test_precision_recall_matches_bruteforce_on_overlapping_clouds(seed):
    gen, real = gaussian(90, 5, seed, shift=0.7), gaussian(70, 5, seed + 100)
    p, r = precision_recall(gen, real, batch_size=32)  # batched, as on a real 50k x 10k evaluation
    assert 0 < p < 1 and 0 < r < 1
    assert (p, r) == pytest.approx(prc_bruteforce(gen, real), abs=1e-6)  # torch-fidelity means in float32


def test_precision_recall_needs_more_points_than_k_and_equal_dims():
    with pytest.raises(ConfigError, match="N >= 4"):
        precision_recall(gaussian(3, 4, 0), gaussian(10, 4, 1))
    with pytest.raises(ConfigError, match="5-d, reference features 4-d"):
        precision_recall(gaussian(10, 5, 0), gaussian(10, 4, 1))


@pytest.mark.parametrize("n, split", [(40, 10), (40, 40), (30, 5000)])
def test_inception_score_matches_adm_formula(n, split):
    logits = np.random.default_rng(15).normal(size=(n, 10)) * 3
    mean, std = inception_score(logits, split_size=split)
    assert mean == pytest.approx(inception_score_adm(logits, split), rel=1e-10)
    assert std >= 0 and (std == 0) == (n <= split)


def test_inception_score_of_confident_distinct_classes_is_the_class_count():
    logits = np.eye(10).repeat(3, axis=0) * 50  # 30 samples, 3 per class, near one-hot
    assert inception_score(logits)[0] == pytest.approx(10, rel=1e-6)
