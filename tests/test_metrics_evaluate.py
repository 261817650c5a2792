"""evaluate_npz with a cheap stand-in extractor: ADM references, caches, FID@N, IS honesty, bad input, CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from metrics_helpers import StubExtractor, frechet_scipy, images, inception_score_adm, prc_bruteforce
from sparse_guidance import ConfigError
from sparse_guidance.metrics import build_reference, evaluate_npz, gaussian_stats, inspect_npz, load_reference
from sparse_guidance.metrics import __main__ as cli
from sparse_guidance.metrics.features import features_of
from sparse_guidance.metrics.npz import iter_npz_batches, to_rgb_nchw

QUIET = dict(progress=False)


def direct(imgs, logits=False):
    """Stub features computed straight from the images, bypassing the pipeline."""
    return {k: v.numpy().astype(np.float64) for k, v in StubExtractor(logits).extract(to_rgb_nchw(imgs)).items()}


def spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


@pytest.fixture
def samples(tmp_path):
    x = images(8, seed=1)
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=x)
    return path, x


@pytest.fixture
def adm_ref(tmp_path):
    """An ADM-style reference batch for the stub's dimensions: arr_0, mu, sigma, mu_s, sigma_s."""
    x = images(6, seed=2)
    rng = np.random.default_rng(3)
    path = tmp_path / "VIRTUAL_fake.npz"
    np.savez(path, arr_0=x, mu=rng.normal(size=12) * 0.1, sigma=spd(12, 4) * 0.01,
             mu_s=rng.normal(size=9) * 0.1, sigma_s=spd(9, 5) * 0.01)
    return path, x


def test_adm_reference_is_loaded_and_used(samples, adm_ref, tmp_path):
    (s_path, s), (r_path, r) = samples, adm_ref
    ext = StubExtractor()
    out = evaluate_npz(s_path, r_path, extractor=ext, cache_dir=tmp_path / "cache", **QUIET)
    ref = np.load(r_path)
    f, fr = direct(s), direct(r)
    assert out["fid"] == pytest.approx(frechet_scipy(*gaussian_stats(f["pool"]), ref["mu"], ref["sigma"]), rel=1e-6)
    assert out["sfid"] == pytest.approx(frechet_scipy(*gaussian_stats(f["spatial"]), ref["mu_s"], ref["sigma_s"]),
                                        rel=1e-6)
    # precision/recall against the reference images' own features (ADM: arr_0), k = 3
    p, rc = prc_bruteforce(f["pool"], fr["pool"])
    assert (out["prec"], out["rec"]) == pytest.approx((p, rc), abs=1e-6)
    assert out["fid_n"] == out["sfid_n"] == out["prec_n"] == 8 and out["prec_ref_n"] == out["ref_n"] == 6
    assert out["prec_k"] == 3 and out["extractor"] == "stub" and out["ref_stats"].startswith("precomputed")
    assert ext.images == 8 + 6  # every image read once


def test_no_logits_means_no_inception_score_and_says_why(samples):
    out = evaluate_npz(samples[0], metrics=("is",), extractor=StubExtractor(logits=False), **QUIET)
    assert out["is_mean"] is None and out["is_std"] is None
    assert "no Inception logits" in out["is_note"]
    assert "fid" not in out and "inception_score" not in out


def test_inception_score_from_logits(samples):
    s_path, s = samples
    out = evaluate_npz(s_path, metrics=["is"], extractor=StubExtractor(logits=True), is_split_size=4, **QUIET)
    assert out["is_mean"] == pytest.approx(inception_score_adm(direct(s, logits=True)["logits"], 4), rel=1e-6)
    assert out["is_n"] == 8 and out["is_splits"] == 2 and "is_note" not in out


def test_fid_at_n_uses_the_first_n_and_records_n(samples, adm_ref, tmp_path):
    (s_path, s), (r_path, _) = samples, adm_ref
    ext = StubExtractor()
    out = evaluate_npz(s_path, r_path, n=5, metrics="fid", extractor=ext, cache_dir=tmp_path, **QUIET)
    ref = np.load(r_path)
    assert out["fid_n"] == out["n"] == 5
    assert out["fid"] == pytest.approx(frechet_scipy(*gaussian_stats(direct(s[:5])["pool"]), ref["mu"],
                                                     ref["sigma"]), rel=1e-6)
    assert ext.images == 5
    evaluate_npz(s_path, r_path, n=8, metrics="fid", extractor=ext, cache_dir=tmp_path, **QUIET)
    assert ext.images == 8  # only the 3 missing rows were extracted
    evaluate_npz(s_path, r_path, n=6, metrics="fid", extractor=ext, cache_dir=tmp_path, **QUIET)
    assert ext.images == 8


def test_sample_features_are_cached_by_content_and_extractor(samples, tmp_path):
    s_path, s = samples
    ext = StubExtractor()
    a = features_of(s_path, ext, cache_dir=tmp_path / "c", **QUIET)
    b = features_of(s_path, ext, cache_dir=tmp_path / "c", **QUIET)
    assert ext.calls == 1 and np.array_equal(a["pool"], b["pool"])
    np.testing.assert_allclose(a["pool"], direct(s)["pool"], rtol=1e-6)
    np.savez(s_path, arr_0=s[::-1])  # new content, same name
    c = features_of(s_path, ext, cache_dir=tmp_path / "c", **QUIET)
    assert ext.calls == 2 and np.array_equal(c["pool"], a["pool"][::-1])
    other = StubExtractor(tag="b")  # another extractor id gets its own cache
    features_of(s_path, other, cache_dir=tmp_path / "c", **QUIET)
    assert other.calls == 1
    assert len(list((tmp_path / "c").glob("*.features.npz"))) == 3


def test_default_cache_sits_beside_the_npz(samples):
    s_path, _ = samples
    features_of(s_path, StubExtractor(), **QUIET)
    assert len(list((s_path.parent / ".metrics-cache").glob("samples.*.features.npz"))) == 1


def test_build_reference_caches_and_recomputes_on_change(tmp_path):
    x = images(10, seed=7)
    ext = StubExtractor()
    path = build_reference(x, tmp_path, extractor=ext, name="fmnist", pr_n=6, **QUIET)
    mtime = path.stat().st_mtime_ns
    assert ext.calls == 1 and path.name.startswith("fmnist-") and path.name.endswith(".ref.npz")
    with np.load(path) as z:
        mu, sigma = gaussian_stats(direct(x)["pool"])
        np.testing.assert_allclose(z["mu"], mu, rtol=1e-6)
        np.testing.assert_allclose(z["sigma"], sigma, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(z["mu_s"], gaussian_stats(direct(x)["spatial"])[0], rtol=1e-6)
        assert z["pool"].shape == (6, 12) and int(z["ref_n"]) == 10 and str(z["extractor_id"]) == ext.extractor_id
    assert build_reference(x, tmp_path, extractor=ext, name="fmnist", pr_n=6, **QUIET) == path
    assert ext.calls == 1 and path.stat().st_mtime_ns == mtime  # second call: nothing recomputed
    changed = x.copy()
    changed[0, 0, 0, 0] ^= 1
    assert build_reference(changed, tmp_path, extractor=ext, name="fmnist", pr_n=6, **QUIET) != path
    assert ext.calls == 2
    assert build_reference(x, tmp_path, extractor=StubExtractor(tag="b"), name="fmnist", pr_n=6, **QUIET) != path
    assert build_reference(x, tmp_path, extractor=ext, name="fmnist", pr_n=5, **QUIET) != path


def test_evaluate_against_a_built_reference_reads_no_reference_images(samples, tmp_path):
    s_path, s = samples
    ref_imgs = images(10, seed=8)
    ext = StubExtractor()
    ref = build_reference(ref_imgs, tmp_path / "refs", extractor=ext, **QUIET)
    ext.images = 0
    out = evaluate_npz(s_path, ref, extractor=ext, cache_dir=tmp_path / "c", **QUIET)
    assert ext.images == 8  # the samples only: P/R uses the stored reference features
    fr = direct(ref_imgs)
    assert out["fid"] == pytest.approx(frechet_scipy(*gaussian_stats(direct(s)["pool"]),
                                                     *gaussian_stats(fr["pool"])), rel=1e-5)
    assert (out["prec"], out["rec"]) == pytest.approx(prc_bruteforce(direct(s)["pool"], fr["pool"]), abs=1e-6)
    assert out["ref_n"] == 10


def test_images_only_reference_gets_cached_statistics(samples, tmp_path):
    s_path, s = samples
    ref_imgs = images(9, seed=9, grey=True)  # e.g. a Fashion-MNIST split written as an ADM set
    r_path = tmp_path / "fmnist_test.npz"
    np.savez(r_path, arr_0=ref_imgs)
    ext = StubExtractor()
    out = evaluate_npz(s_path, r_path, extractor=ext, cache_dir=tmp_path / "c", **QUIET)
    assert out["ref_stats"].startswith("computed from fmnist_test.npz") and out["ref_n"] == 9
    fr = direct(np.repeat(ref_imgs[..., None], 3, axis=-1))
    assert out["sfid"] == pytest.approx(frechet_scipy(*gaussian_stats(direct(s)["spatial"]),
                                                      *gaussian_stats(fr["spatial"])), rel=1e-5)
    calls = ext.calls
    again = evaluate_npz(s_path, r_path, extractor=ext, cache_dir=tmp_path / "c", **QUIET)
    assert ext.calls == calls and again["fid"] == out["fid"]


def test_grey_sets_are_repeated_to_rgb(tmp_path):
    g = images(4, seed=10, grey=True)
    ext = StubExtractor()
    rgb = features_of(np.repeat(g[..., None], 3, axis=-1), ext, **QUIET)
    for x in (g, g[..., None]):
        path = tmp_path / f"grey{x.ndim}.npz"
        np.savez(path, arr_0=x)
        assert np.array_equal(features_of(path, ext, **QUIET)["spatial"], rgb["spatial"])


def test_streaming_reads_match_the_array(tmp_path):
    x = images(11, size=5, seed=11)
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, arr_0=x, arr_1=np.arange(11))
        assert inspect_npz(path).shape == (11, 5, 5, 3)
        got = np.concatenate(list(iter_npz_batches(path, start=3, stop=10, batch_size=4)))
        assert np.array_equal(got, x[3:10])


# ---- bad input -------------------------------------------------------------------------------------------


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make, match", [
    (lambda p: p, "does not exist"),
    (lambda p: p.write_bytes(b"not a zip at all") and p, "not a readable .npz"),
    (lambda p: _write(p, images=images(2)), r"no key 'arr_0' \(it has \['images'\]\)"),
    (lambda p: _write(p, arr_0=images(2).astype(np.float32) / 255), "dtype float32"),
    (lambda p: _write(p, arr_0=images(2, size=8).transpose(0, 3, 1, 2)), "looks NCHW"),
    (lambda p: _write(p, arr_0=np.zeros((2, 8, 8, 4), np.uint8)), "4 channels"),
    (lambda p: _write(p, arr_0=np.zeros((2, 8), np.uint8)), "expected \\(N, H, W, 3\\)"),
    (lambda p: _write(p, arr_0=np.zeros((0, 8, 8, 3), np.uint8)), "no images"),
])
def test_bad_sample_sets_raise_config_error_naming_the_path(tmp_path, make, match):
    path = tmp_path / "bad.npz"
    path = make(path)
    with pytest.raises(ConfigError, match=match) as e:
        evaluate_npz(path, metrics="is", extractor=StubExtractor(), **QUIET)
    assert "bad.npz" in str(e.value)


def test_truncated_npz_raises_config_error(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez(path, arr_0=images(6))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cut.npz"):
        evaluate_npz(path, metrics="is", extractor=StubExtractor(), **QUIET)


def test_corrupt_image_bytes_raise_config_error(tmp_path):
    path = tmp_path / "flipped.npz"
    np.savez(path, arr_0=images(6))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside arr_0's data: the zip's CRC check catches it
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="flipped.npz' is corrupt"):
        evaluate_npz(path, metrics="is", extractor=StubExtractor(), **QUIET)


def test_bare_npy_reference_raises(tmp_path, samples):
    path = tmp_path / "ref.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ConfigError, match="is a .npy array"):
        load_reference(path, StubExtractor(), ("fid",))


def test_reference_without_needed_keys_raises(samples, tmp_path):
    s_path, _ = samples
    ext = StubExtractor()
    only_fid = _write(tmp_path / "only_fid.npz", mu=np.zeros(12), sigma=np.eye(12))
    assert evaluate_npz(s_path, only_fid, metrics="fid", extractor=ext, **QUIET)["fid"] > 0
    with pytest.raises(ConfigError, match=r"only_fid.npz.*lacks \['mu_s', 'sigma_s'\]"):
        evaluate_npz(s_path, only_fid, metrics="fid,sfid", extractor=ext, **QUIET)
    with pytest.raises(ConfigError, match="only_fid.npz.*precision/recall"):
        evaluate_npz(s_path, only_fid, metrics=("fid", "prec"), extractor=ext, **QUIET)
    wrong_dim = _write(tmp_path / "wrong.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ConfigError, match="different dimensions: 12 vs 2048"):
        evaluate_npz(s_path, wrong_dim, metrics="fid", extractor=ext, **QUIET)
    bad_sigma = _write(tmp_path / "bad_sigma.npz", mu=np.zeros(12), sigma=np.eye(11))
    with pytest.raises(ConfigError, match="bad_sigma.npz. mu/sigma: mu \\(12,\\) and sigma \\(11, 11\\)"):
        evaluate_npz(s_path, bad_sigma, metrics="fid", extractor=ext, **QUIET)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=9), "n=9 but .* holds only 8"),
    (dict(n=0), "positive integer"),
    (dict(metrics=("fid", "kid")), r"unknown \['kid'\]"),
    (dict(metrics=()), "none given"),
    (dict(reference=None), "need a reference"),
    (dict(extractor="resnet"), "unknown feature extractor 'resnet'"),
])
def test_bad_arguments_raise(samples, adm_ref, kwargs, match):
    args = dict(reference=adm_ref[0], extractor=StubExtractor(), progress=False) | kwargs
    with pytest.raises(ConfigError, match=match):
        evaluate_npz(samples[0], **args)


def test_compat_extractor_without_weights_raises(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ConfigError, match="inception-v3-compat needs torch-fidelity's weights"):
        evaluate_npz(samples[0], metrics="is", extractor="inception-v3-compat", **QUIET)
    with pytest.raises(ConfigError, match="missing.pth' do not exist"):
        evaluate_npz(samples[0], metrics="is", weights_path=tmp_path / "missing.pth", **QUIET)


# ---- command line ----------------------------------------------------------------------------------------


def test_cli_prints_the_result_as_json(samples, adm_ref, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sparse_guidance.metrics.evaluate.resolve_extractor", lambda *a, **k: StubExtractor())
    out_file = tmp_path / "result.json"
    rc = cli.main(["--samples", str(samples[0]), "--ref", str(adm_ref[0]), "--n", "5", "--metrics", "fid,sfid",
                   "--cache-dir", str(tmp_path / "c"), "--no-progress", "--out", str(out_file)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["fid_n"] == printed["sfid_n"] == 5 and printed["extractor"] == "stub"
    assert json.loads(out_file.read_text()) == printed


def test_cli_refuses_bad_arguments_before_any_work(samples, adm_ref, tmp_path, monkeypatch, capsys):
    """Each bad argument: exit 2 and one line naming it and the fix, before a feature is computed."""
    monkeypatch.setattr("sparse_guidance.metrics.evaluate.resolve_extractor",
                        lambda *a, **k: pytest.fail("features were computed"))
    (tmp_path / "afile").write_text("")
    base = ["--samples", str(samples[0]), "--ref", str(adm_ref[0]), "--no-progress"]
    cases = [(["--batch-size", "0"], "--batch-size 0: give a batch size >= 1"),
             (["--n", "0"], "--n 0: give a number of samples >= 1"),
             (["--out", str(tmp_path / "afile" / "r.json")], "is a file; give another --out"),
             (["--cache-dir", str(tmp_path / "afile" / "c")], "is a file; give another --cache-dir")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda, but no CUDA device is visible; use --device cpu"))
    for extra, needle in cases:
        assert cli.main([*base, *extra]) == 2, extra
        assert needle in capsys.readouterr().err, extra
    # a read-only folder beside the samples (root may write anywhere: the permission is simulated)
    real_access = os.access
    monkeypatch.setattr("os.access", lambda p, mode: False if str(p) == str(samples[0].parent) else real_access(p, mode))
    assert cli.main(base) == 2
    assert "is read-only; give a writable --cache-dir" in capsys.readouterr().err


def test_cli_names_a_corrupt_compressed_npz(tmp_path, capsys):
    np.savez_compressed(tmp_path / "c.npz", arr_0=images(8, seed=3))
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[200:260] = bytes(60)  # inside the deflate stream
    (tmp_path / "c.npz").write_bytes(bytes(data))
    assert cli.main(["--samples", str(tmp_path / "c.npz"), "--ref", str(tmp_path / "c.npz"), "--no-progress",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "c.npz' is corrupt" in err and "re-create it" in err and "Traceback" not in err


def test_cli_reports_config_errors(tmp_path, capsys):
    assert cli.main(["--samples", str(tmp_path / "none.npz"), "--ref", str(tmp_path / "r.npz")]) == 2
    assert "none.npz" in capsys.readouterr().err
    assert cli.main(["--samples", str(tmp_path / "none.npz")]) == 2
    assert "--ref" in capsys.readouterr().err
