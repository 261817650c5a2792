"""Paired distance (Fig. 7 left): LPIPS where it can run, an honestly named fallback where it cannot."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from metrics_helpers import StubExtractor, images
from sparse_guidance import ConfigError
from sparse_guidance.metrics import paired_distance
from sparse_guidance.metrics.npz import to_rgb_nchw
from sparse_guidance.metrics.paired import load_lpips, lpips_available, lpips_weights_file

QUIET = dict(progress=False)


@pytest.fixture(autouse=True)
def offline_torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: no LPIPS backbone weights, as on this machine and in CI."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture
def pair(tmp_path):
    a, b = images(6, size=28, seed=30, grey=True), images(6, size=28, seed=31, grey=True)
    np.savez(tmp_path / "guided.npz", arr_0=a)
    np.savez(tmp_path / "cond.npz", arr_0=b)
    return tmp_path / "guided.npz", tmp_path / "cond.npz", a, b


def test_offline_fallback_is_named_for_what_it_is(pair):
    pa, pb, a, b = pair
    ext = StubExtractor()
    out = paired_distance(pa, pb, extractor=ext, **QUIET)
    assert out["distance"] == "inception_pool3_cosine" and out["lpips"] is None
    assert "not LPIPS" in out["lpips_note"] and "not cached" in out["lpips_note"]
    fa = ext.extract(to_rgb_nchw(a))["pool"].double()
    fb = ext.extract(to_rgb_nchw(b))["pool"].double()
    expected = (1 - torch.nn.functional.cosine_similarity(fa, fb, dim=1)).mean().item()
    assert out["inception_pool3_cosine"] == pytest.approx(expected, rel=1e-6) and out["n"] == 6
    same = paired_distance(pa, pa, n=4, extractor=ext, **QUIET)
    assert same["inception_pool3_cosine"] == pytest.approx(0, abs=1e-12) and same["n"] == 4


def test_asking_for_lpips_offline_raises(pair):
    with pytest.raises(ConfigError, match="alexnet-owt-.*\\.pth"):
        paired_distance(pair[0], pair[1], distance="lpips", extractor=StubExtractor(), **QUIET)


def test_lpips_path_with_a_given_model(pair):
    """The LPIPS code path, with a randomly initialised backbone (the pretrained one downloads)."""
    import lpips

    pa, pb, a, b = pair
    with warnings.catch_warnings():  # lpips hands torchvision the deprecated pretrained= argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    out = paired_distance(pa, pb, lpips_model=model, batch_size=4, **QUIET)
    assert out["distance"] == "lpips" and "inception_pool3_cosine" not in out
    assert out["lpips_input_size"] == [64, 64]  # 28 px is too small for LPIPS's AlexNet: upsampled
    x = torch.nn.functional.interpolate(to_rgb_nchw(a).float() / 127.5 - 1, size=(64, 64), mode="bilinear")
    y = torch.nn.functional.interpolate(to_rgb_nchw(b).float() / 127.5 - 1, size=(64, 64), mode="bilinear")
    with torch.no_grad():
        assert out["lpips"] == pytest.approx(model(x, y).mean().item(), rel=1e-5)
    assert paired_distance(pa, pa, lpips_model=model, **QUIET)["lpips"] == pytest.approx(0, abs=1e-7)


def test_lpips_is_chosen_where_its_weights_are_cached():
    assert not lpips_available("alex")
    path = lpips_weights_file("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert lpips_available("alex")


def _cache_alexnet(state) -> None:
    path = lpips_weights_file("alex")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_lpips_backbone_is_read_as_tensors_from_the_cache():
    """load_lpips copies the cached torchvision AlexNet weights into LPIPS's slices, read with
    weights_only=True; its linear layers are lpips's own packaged ones."""
    import torchvision
    torch.manual_seed(3)
    alex = torchvision.models.alexnet(weights=None).state_dict()
    _cache_alexnet(alex)
    model = load_lpips("alex")
    for k, v in model.net.state_dict().items():  # slice<k>.<features index>.<param>
        torch.testing.assert_close(v, alex["features." + k.split(".", 1)[1]], rtol=0, atol=0)
    assert model.lin0.model[1].weight.abs().sum() > 0  # lpips's packaged linear weights
    _cache_alexnet({"features.0.weight": alex["features.0.weight"]})
    with pytest.raises(ConfigError, match="is not torchvision's alex backbone"):
        load_lpips("alex")


def test_lpips_backbone_that_would_run_code_is_refused_unrun(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    _cache_alexnet({"features.0.weight": torch.zeros(1), "payload": RunsCode()})
    with pytest.raises(ConfigError, match="could run code when loaded; refusing"):
        load_lpips("alex")
    assert not (tmp_path / "ran").exists()


def test_paired_sets_must_match(pair):
    with pytest.raises(ConfigError, match="differ in image size"):
        paired_distance(pair[0], images(6, size=16), extractor=StubExtractor(), **QUIET)
    with pytest.raises(ConfigError, match="n=7 but"):
        paired_distance(pair[0], pair[1], n=7, extractor=StubExtractor(), **QUIET)
    with pytest.raises(ConfigError, match="distance='l2'"):
        paired_distance(pair[0], pair[1], distance="l2", **QUIET)
