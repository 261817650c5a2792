"""The real Inception networks, on a handful of images (~8 img/s at 299² on this CPU).

The offline TorchScript network runs on 15 images in all: 8 in one end-to-end evaluation (4 samples
against a fake ADM reference batch with 4 images), 3 in checks against the scripted network, 4 inside
torch-fidelity. torch-fidelity's own Inception runs with random weights (its real ones download).
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from metrics_helpers import frechet_lowrank, images, inception_score_adm, prc_bruteforce
from sparse_guidance import ConfigError
from sparse_guidance.metrics import (CompatInception, ImageDataset, OfflineInception, evaluate_npz, features_of,
                                     gaussian_stats, resolve_extractor)
from sparse_guidance.metrics.inception import COMPAT_FILE, OFFLINE_NAME, preprocess, spatial_features
from sparse_guidance.metrics.npz import to_rgb_nchw


def fake_adm_stats(d, seed):
    """Random mu (d,) and a random full-rank sigma (d, d): low-rank part plus a diagonal."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(16, d)) * 0.05
    return rng.normal(size=d) * 0.1, b.T @ b + np.diag(rng.uniform(0.001, 0.01, d))


@pytest.fixture(scope="module")
def offline():
    return resolve_extractor("offline", device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory, offline):
    """One evaluation with the real network: 4 samples (24 px) vs a fake ADM reference (4 images, 32 px)."""
    d = tmp_path_factory.mktemp("e2e")
    s, r = images(4, size=24, seed=20), images(4, size=32, seed=21)
    (mu, sigma), (mu_s, sigma_s) = fake_adm_stats(2048, 22), fake_adm_stats(2023, 23)
    np.savez(d / "samples.npz", arr_0=s)
    np.savez(d / "VIRTUAL_fake.npz", arr_0=r, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    out = evaluate_npz(d / "samples.npz", d / "VIRTUAL_fake.npz", extractor=offline, cache_dir=d / "cache",
                       progress=False)
    cached = dict(extractor=offline, cache_dir=d / "cache", progress=False)  # reads the caches, runs nothing
    return SimpleNamespace(out=out, s=s, r=r, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s,
                           feats=features_of(d / "samples.npz", **cached),
                           ref_feats=features_of(d / "VIRTUAL_fake.npz", **cached))


def test_offline_inception_gives_pool3_and_sfid_features(run):
    f = run.feats
    assert f["pool"].shape == (4, 2048) and f["spatial"].shape == (4, 2023) and "logits" not in f
    assert f["pool"].dtype == np.float32 and (f["pool"] >= 0).all() and (f["spatial"] >= 0).all()  # post-ReLU
    assert run.ref_feats["pool"].shape == (4, 2048)


def test_features_are_deterministic_across_runs_and_batch_sizes(run, offline):
    again = offline.extract(to_rgb_nchw(run.s[:1]))  # batch of 1 now, batch of 4 in the evaluation
    np.testing.assert_allclose(again["pool"].numpy()[0], run.feats["pool"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(again["spatial"].numpy()[0], run.feats["spatial"][0], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_one_pass_equals_the_scripted_network_and_mixed_6_conv(run, offline):
    x = preprocess(to_rgb_nchw(run.s[:1]))  # (1, 3, 299, 299)
    assert x.shape == (1, 3, 299, 299) and x.min() >= -1 and x.max() < 1
    np.testing.assert_allclose(offline.net(x).numpy()[0], run.feats["pool"][0], rtol=1e-4, atol=1e-5)
    layers = offline.net.net.layers
    h = x
    for name in ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1", "mixed_2",
                 "mixed_3", "mixed_4", "mixed_5"):
        h = getattr(layers, name)(h)
    conv = layers.mixed_6.conv(h)  # mixed_6/conv itself: (1, 192, 17, 17)
    assert conv.shape == (1, 192, 17, 17)
    manual = conv[0, :7].permute(1, 2, 0).reshape(-1).numpy()  # ADM: NHWC, channels [:7], flattened
    np.testing.assert_allclose(manual, run.feats["spatial"][0], rtol=1e-4, atol=1e-5)
    assert manual.shape == (17 * 17 * 7,)
    assert torch.equal(spatial_features(conv)[0].reshape(17, 17, 7)[3, 5], conv[0, :7, 3, 5])


def test_end_to_end_against_a_fake_adm_reference(run):
    o, f = run.out, run.feats
    assert o["extractor"] == "fid-inception-torchscript (offline)" and o["fid_n"] == 4 and o["ref_n"] == 4
    # 4 samples << 2048 dims: the low-rank identity computes the same distance without a 2048² square root
    assert o["fid"] == pytest.approx(frechet_lowrank(f["pool"], run.mu, run.sigma), rel=1e-5)
    assert o["sfid"] == pytest.approx(frechet_lowrank(f["spatial"], run.mu_s, run.sigma_s), rel=1e-5)
    assert (o["prec"], o["rec"]) == pytest.approx(prc_bruteforce(f["pool"], run.ref_feats["pool"]), abs=1e-6)
    assert o["is_mean"] is None and "no Inception logits offline" in o["is_note"]


def test_registered_with_torch_fidelity_and_its_fid_matches_ours(run):
    assert FEATURE_EXTRACTORS_REGISTRY[OFFLINE_NAME] is OfflineInception
    tf = torch_fidelity.calculate_metrics(input1=ImageDataset(run.s[:2]), input2=ImageDataset(run.r[:2]),
                                          feature_extractor=OFFLINE_NAME, fid=True, cuda=False, cache=False,
                                          save_cpu_ram=True, verbose=False)
    # our features of the same images, through the formula test_end_to_end checks our Fréchet distance against
    # (the low-rank identity: one 2048² eigen-decomposition less in this suite)
    ours = frechet_lowrank(run.feats["pool"][:2], *gaussian_stats(run.ref_feats["pool"][:2]))
    assert tf["frechet_inception_distance"] == pytest.approx(ours, rel=1e-4)


def test_torch_fidelity_isc_with_the_offline_network_says_no_logits():
    with pytest.raises(ConfigError, match="no Inception logits"):
        torch_fidelity.calculate_metrics(input1=ImageDataset(images(2)), feature_extractor=OFFLINE_NAME, isc=True,
                                         cuda=False, cache=False, verbose=False)


def test_auto_uses_the_offline_network_when_no_weights_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert isinstance(resolve_extractor("auto", device="cpu"), OfflineInception)


def test_compat_inception_with_cached_weights_reports_inception_score(tmp_path, monkeypatch):
    """torch-fidelity's Inception, random weights placed where its real ones are cached: logits and IS."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with monkeypatch.context() as m:  # build it without downloading anything
        m.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        random_weights = tf_inception.FeatureExtractorInceptionV3("random", ["2048"]).state_dict()
    ckpt = tmp_path / "torch-home" / "hub" / "checkpoints" / COMPAT_FILE
    ckpt.parent.mkdir(parents=True)
    torch.save(random_weights, ckpt)
    ext = resolve_extractor("auto", device="cpu")
    assert isinstance(ext, CompatInception) and ext.has_logits
    kept = {}
    ext.fe.Mixed_6d.register_forward_hook(lambda mod, inp, out: kept.__setitem__("mixed_6", out))
    np.savez(tmp_path / "s.npz", arr_0=images(4, seed=24))
    out = evaluate_npz(tmp_path / "s.npz", metrics="is", extractor=ext, cache_dir=tmp_path, progress=False)
    assert out["extractor"] == "inception-v3-compat (torch-fidelity)" and "is_note" not in out
    f = features_of(tmp_path / "s.npz", ext, cache_dir=tmp_path, progress=False)
    assert out["is_mean"] == pytest.approx(inception_score_adm(f["logits"].astype(np.float64), 5000), rel=1e-9)
    assert f["pool"].shape == (4, 2048) and f["spatial"].shape == (4, 2023) and f["logits"].shape == (4, 1008)
    np.testing.assert_allclose(spatial_features(kept["mixed_6"][:, :192]).numpy(), f["spatial"], rtol=1e-6)


class _RunsCode:
    """A pickle that runs a command when unpickled with weights_only=False (what torch-fidelity does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_compat_weights_that_would_run_code_are_refused_unrun(tmp_path, monkeypatch):
    """A crafted file where torch-fidelity's weights are cached: ConfigError, and its code never runs."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    ckpt = tmp_path / "torch-home" / "hub" / "checkpoints" / COMPAT_FILE
    ckpt.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "payload": _RunsCode(marker)}, ckpt)
    for make in (lambda: resolve_extractor("auto", device="cpu"), lambda: CompatInception(ckpt)):
        with pytest.raises(ConfigError, match=r"(?s)holds objects other than tensors.*posix.system.*refusing"):
            make()
    assert not marker.exists()
