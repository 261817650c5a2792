"""The Fashion-MNIST classifier as a feature network: training on the real data, determinism, the
weights file, the extractor protocol, Fréchet distances in its features and the 'acc' metric.

One model (300 steps of 64, about 6 s on one thread; it reaches about 87 % test accuracy) is shared
by the module."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics_helpers import StubExtractor
from sparse_guidance import ConfigError
from sparse_guidance.metrics import evaluate_npz, gaussian_stats, resolve_extractor
from sparse_guidance.metrics.classifier import (ClassifierExtractor, FashionClassifier, classifier_accuracy,
                                                load_classifier, save_classifier, train_classifier)
from sparse_guidance.metrics.npz import to_rgb_nchw
from sparse_guidance.metrics.stats import frechet_distance

QUIET = dict(progress=False)


def _split(split: str):
    from sparse_guidance.data.fashion_mnist import DEBIAN_DIR, FashionMNIST, _has_split

    if not _has_split(DEBIAN_DIR, split):
        pytest.skip(f"Debian's Fashion-MNIST is not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)")
    ds = FashionMNIST(split, output="uint8")
    return ds.images.numpy(), ds.labels.numpy()  # (N, 32, 32) uint8, (N,) int64


@pytest.fixture(scope="module")
def train_data():
    return _split("train")


@pytest.fixture(scope="module")
def test_data():
    return _split("test")


@pytest.fixture(scope="module")
def trained(train_data, tmp_path_factory):
    """(model, weights path): 300 steps of 64 on the training split, saved once."""
    x, y = train_data
    model = train_classifier(x, y, steps=300, batch_size=64, lr=2e-3, seed=0, **QUIET)
    path = save_classifier(model, tmp_path_factory.mktemp("clf") / "classifier.pt", {"steps": 300, "note": "test"})
    return model, path


def rgb(images: np.ndarray) -> torch.Tensor:
    return to_rgb_nchw(images)  # (N, 32, 32) grey -> uint8 (N, 3, 32, 32)


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_reaches_clearly_above_chance_test_accuracy(trained, test_data):
    model, _ = trained
    x, y = test_data
    acc = classifier_accuracy(model, x, y)
    assert acc > 0.80, acc  # measured 0.871 (chance: 0.10)
    assert not model.training


def test_same_seed_gives_identical_weights_and_leaves_the_global_rng_alone(train_data):
    x, y = train_data[0][:2000], train_data[1][:2000]
    rng = torch.random.get_rng_state()
    a = train_classifier(x, y, steps=12, batch_size=32, seed=3, augment=True, **QUIET)
    b = train_classifier(torch.from_numpy(x), torch.from_numpy(y), steps=12, batch_size=32, seed=3, augment=True,
                         **QUIET)
    c = train_classifier(x, y, steps=12, batch_size=32, seed=4, augment=True, **QUIET)
    assert torch.equal(torch.random.get_rng_state(), rng)
    sa, sb, sc = state(a), state(b), state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])
    with pytest.raises(ConfigError, match="uint8"):
        train_classifier(x.astype(np.float32), y, steps=1, **QUIET)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 10\)"):
        train_classifier(x, y + 5, steps=1, **QUIET)


def test_save_load_round_trip_gives_identical_features(trained, test_data):
    model, path = trained
    x = torch.from_numpy(test_data[0][:64])
    loaded = load_classifier(path)
    assert isinstance(loaded, FashionClassifier) and not loaded.training
    assert loaded.meta == {"steps": 300, "note": "test"}
    with torch.no_grad():
        want, got = model.features(x), loaded.features(x)
    assert set(got) == {"pool", "spatial", "logits"}
    assert all(torch.equal(want[k], got[k]) for k in want)
    ext = ClassifierExtractor(path)  # uint8 RGB in, the same features out
    feats = ext.extract(rgb(x.numpy()))
    assert all(torch.equal(want[k], feats[k]) for k in want)


def test_missing_or_damaged_weights_raise_config_error_naming_the_fix(trained, tmp_path):
    _, path = trained
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:len(data) // 2])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 10)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    for bad in (cut, junk, other):
        for load in (load_classifier, ClassifierExtractor):
            with pytest.raises(ConfigError, match="classifier stage") as e:
                load(bad)
            assert str(bad) in str(e.value) and "delete" in str(e.value)
    with pytest.raises(ConfigError, match="do not exist.*classifier stage"):
        load_classifier(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="needs weights_path.*classifier stage"):
        resolve_extractor("classifier", device="cpu")


def test_extractor_id_follows_the_weights(trained, tmp_path):
    model, path = trained
    ext = ClassifierExtractor(path)
    same = save_classifier(model, tmp_path / "copy.pt", {"steps": 300, "note": "test"})
    assert ClassifierExtractor(same).extractor_id == ext.extractor_id  # same bytes: cached features reused
    changed = load_classifier(path)
    with torch.no_grad():
        changed.head.bias[0] += 1e-3
    save_classifier(changed, tmp_path / "copy.pt", {"steps": 300, "note": "test"})
    new = ClassifierExtractor(tmp_path / "copy.pt")
    assert new.extractor_id != ext.extractor_id and new.sha1 in new.extractor_id


def test_extractor_protocol_and_feature_shapes(trained, test_data):
    _, path = trained
    ext = resolve_extractor("classifier", weights_path=path, device="cpu")
    assert isinstance(ext, ClassifierExtractor)
    assert ext.to("cpu") is ext and ext.eval() is ext and ext.device == torch.device("cpu")
    assert ext.has_logits and ext.resize is None and "not Inception" in ext.label
    x = rgb(test_data[0][:10])
    f = ext.extract(x)
    assert {k: tuple(v.shape) for k, v in f.items()} == {"pool": (10, 128), "spatial": (10, 512), "logits": (10, 10)}
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in f.values())
    assert (f["pool"] >= 0).all()  # after a ReLU, like Inception's pool3
    # RGB -> grey is the channel mean: a grey image and its RGB copy give the same features
    with torch.no_grad():
        assert torch.equal(ext.net.features(torch.from_numpy(test_data[0][:10]))["pool"], f["pool"])
    with pytest.raises(ConfigError, match="does not resize"):
        ext.extract(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        ext.extract(x.float())


def test_frechet_distance_separates_real_images_from_noise(trained, test_data):
    _, path = trained
    ext = ClassifierExtractor(path)
    x = test_data[0]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1000, 32, 32), dtype=np.uint8)
    flat = x[2000:3000].reshape(1000, -1)
    shuffled = np.stack([r[rng.permutation(flat.shape[1])] for r in flat]).reshape(1000, 32, 32)  # same pixels
    feats = {name: ext.extract(rgb(imgs)) for name, imgs in
             (("ref", x[:1000]), ("real", x[1000:2000]), ("noise", noise), ("shuffled", shuffled))}
    for key in ("pool", "spatial"):
        ref = gaussian_stats(feats["ref"][key].numpy())
        fd = {k: frechet_distance(*gaussian_stats(feats[k][key].numpy()), *ref) for k in ("real", "noise", "shuffled")}
        # measured pool: 3.0 vs 409 / 442; spatial: 11.8 vs 713 / 709
        assert fd["noise"] > 20 * fd["real"] and fd["shuffled"] > 20 * fd["real"], (key, fd)


def test_acc_metric_through_evaluate_npz(trained, test_data, tmp_path):
    _, path = trained
    x, y = test_data[0][:500], test_data[1][:500]
    images = np.repeat(x[..., None], 3, axis=-1)  # (N, 32, 32, 3) uint8 NHWC, grey repeated to RGB
    good, shuffled, unlabelled, reference = (tmp_path / f"{k}.npz" for k in ("good", "shuffled", "none", "ref"))
    np.savez(good, arr_0=images, arr_1=y)
    np.savez(shuffled, arr_0=images, arr_1=np.random.default_rng(0).permutation(y))
    np.savez(unlabelled, arr_0=images)
    np.savez(reference, arr_0=test_data[0][5000:6000])
    common = dict(extractor="classifier", weights_path=path, device="cpu", cache_dir=tmp_path / "cache", **QUIET)

    out = evaluate_npz(good, reference, metrics=["fid", "acc"], batch_size=250, pr_ref_n=100, **common)
    assert out["acc"] > 0.80 and out["acc_n"] == 500 and out["n"] == 500, out  # measured 0.87
    assert out["fid"] < 20 and out["extractor"].startswith("fashion-mnist-classifier")
    low = evaluate_npz(shuffled, metrics="acc", **common)["acc"]
    assert low < 0.25, low  # chance: 0.10
    first = evaluate_npz(good, metrics="acc", n=100, **common)  # the first n samples and their labels
    ext = ClassifierExtractor(path)
    want = float((ext.extract(rgb(x[:100]))["logits"].argmax(1).numpy() == y[:100]).mean())
    assert first["acc"] == want and first["acc_n"] == 100

    with pytest.raises(ConfigError, match="no class labels.*arr_1.*leave out 'acc'"):
        evaluate_npz(unlabelled, metrics="acc", **common)
    with pytest.raises(ConfigError, match="no logits.*extractor='classifier'"):
        evaluate_npz(good, metrics="acc", extractor=StubExtractor(logits=False), **QUIET)
    with pytest.raises(ConfigError, match="needs class labels"):
        evaluate_npz(images, metrics="acc", extractor=ext, **QUIET)
