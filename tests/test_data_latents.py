"""Sharded latents: manifest, memory-mapped reading, flip doubling, and crash-safe resumable encoding."""
from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import torch

from data_helpers import fmnist_test, tiny_vae  # noqa: F401 (fixture)
from sparse_guidance import ConfigError
from sparse_guidance.data import LatentDataset, SDVAECodec, SpaceToDepthCodec, encode_dataset, read_manifest

N, SHARD, BATCH = 50, 10, 4  # 5 shards, each 4 + 4 + 2 images


class Images(torch.utils.data.Dataset):
    """N random uint8 RGB 16x16 images with labels k % 3; raises at index ``fail_at`` (a simulated kill)."""

    classes = ("a", "b", "c")

    def __init__(self, n=N, fail_at=None):
        self.x = torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        self.fail_at = fail_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise RuntimeError(f"killed at item {i}")
        return self.x[i], i % 3


class Counting(SDVAECodec):
    """The VAE codec in sample mode (stochastic), counting encode calls."""

    def __init__(self, vae):
        super().__init__(vae, name="tiny-vae")
        self.calls = 0

    def encode(self, images, generator=None):
        self.calls += 1
        return super().encode(images, generator)


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(blocks=(8, 16))  # 2x downsampling: 16x16 -> 4x8x8


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def encode(folder, codec, dataset=None, **kw):
    dataset = Images() if dataset is None else dataset
    return encode_dataset(dataset, codec, folder, shard_size=SHARD, batch_size=BATCH, progress=False, **kw)


def test_resume_after_kill_equals_uninterrupted_run(vae, tmp_path):
    full = encode(tmp_path / "full", Counting(vae))
    assert full.encoded == [0, 1, 2, 3, 4] and full.manifest["complete"]

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed at item 25"):  # dies inside shard 2
        encode(out, Counting(vae), Images(fail_at=25))
    m = read_manifest(out)
    assert not m["complete"] and [s["index"] for s in m["shards"]] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["labels-00000.npy", "labels-00001.npy", "manifest.json",
                                                     "shard-00000.npy", "shard-00001.npy"]
    with pytest.raises(ConfigError, match=rf"'{re.escape(str(out))}' is unfinished \(2 of 5 shards\)"):
        LatentDataset(out)

    # What a kill can leave: a temp file mid-write, and a shard renamed into place before its manifest entry.
    (out / ".shard-00002.npy.x1y2.tmp").write_bytes(b"half a shard")
    (out / "shard-00002.npy").write_bytes(b"not listed in the manifest")
    codec = Counting(vae)
    again = encode(out, codec)
    assert again.reused == [0, 1] and again.encoded == [2, 3, 4]
    assert codec.calls == 3 * 3  # 3 batches per shard, only the missing shards
    assert not list(out.glob(".*.tmp"))
    assert files(out) == files(tmp_path / "full")  # bit for bit, manifest included

    ds = LatentDataset(out)
    assert len(ds) == N and ds.latent_shape == (4, 8, 8)
    z, y = ds[27]
    assert y == 27 % 3 and torch.equal(z, torch.from_numpy(np.load(out / "shard-00002.npy")[7]))


def test_complete_folder_is_not_re_encoded(vae, tmp_path):
    encode(tmp_path, Counting(vae))
    codec = Counting(vae)
    report = encode(tmp_path, codec)
    assert report.encoded == [] and report.reused == [0, 1, 2, 3, 4] and codec.calls == 0


def test_damaged_shard_is_detected_and_re_encoded(vae, tmp_path):
    encode(tmp_path / "ref", Counting(vae))
    out = tmp_path / "lat"
    encode(out, Counting(vae))
    shard = out / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0xFF  # same size, different bytes
    shard.write_bytes(bytes(data))
    LatentDataset(out, verify="size")  # the cheap check (sizes, shapes) does not read the data...
    with pytest.raises(ConfigError, match=rf"shard 1 in '{re.escape(str(out))}'.*corrupt"):
        LatentDataset(out)  # ...the default, full check (as a job opens its inputs) does
    codec = Counting(vae)
    assert encode(out, codec).encoded == [1] and codec.calls == 3
    assert files(out) == files(tmp_path / "ref")

    (out / "labels-00003.npy").write_bytes(b"")  # truncated
    with pytest.raises(ConfigError, match=rf"shard 3 in '{re.escape(str(out))}'.*labels-00003.npy is corrupt"):
        LatentDataset(out)
    (out / "labels-00003.npy").write_bytes((tmp_path / "ref" / "labels-00003.npy").read_bytes())
    LatentDataset(out)
    (out / "shard-00004.npy").unlink()
    with pytest.raises(ConfigError, match=rf"shard 4 in '{re.escape(str(out))}'.*shard-00004.npy is missing"):
        LatentDataset(out)


def test_other_settings_refuse_to_mix_unless_overwrite(vae, tmp_path):
    encode(tmp_path, SpaceToDepthCodec(image_channels=3))
    with pytest.raises(ConfigError, match=r"another encoding .*flip: folder has False, asked True"):
        encode(tmp_path, SpaceToDepthCodec(image_channels=3), flip=True)
    with pytest.raises(ConfigError, match="codec"):
        encode(tmp_path, Counting(vae))
    report = encode(tmp_path, Counting(vae), overwrite=True)
    assert report.encoded == [0, 1, 2, 3, 4] and report.manifest["codec"]["name"] == "tiny-vae"


def test_missing_manifest_and_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match=rf"'{re.escape(str(tmp_path))}' has no manifest.json"):
        LatentDataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{ truncated")
    with pytest.raises(ConfigError, match="unreadable"):
        LatentDataset(tmp_path)
    codec = SpaceToDepthCodec(image_channels=3)
    with pytest.raises(ConfigError, match="dtype 'bfloat16'"):
        encode(tmp_path / "x", codec, dtype="bfloat16")
    with pytest.raises(ConfigError, match="empty dataset"):
        encode(tmp_path / "x", codec, Images(n=0))
    with pytest.raises(ConfigError, match="verify"):
        LatentDataset(tmp_path, verify="md5")


def test_flip_doubles_and_mirrors_fashion_mnist(fmnist_test, tmp_path):
    codec = SpaceToDepthCodec()
    sub = torch.utils.data.Subset(fmnist_test, range(25))
    sub.classes = fmnist_test.classes
    report = encode_dataset(sub, codec, tmp_path, shard_size=10, batch_size=8, flip=True, dtype="float16",
                            progress=False)
    m = report.manifest
    assert m["count"] == 50 and [s["count"] for s in m["shards"]] == [20, 20, 10]
    assert m["codec"] == {"name": "space-to-depth", "image_channels": 1, "latent_channels": 4, "downsample": 2,
                          "scale_factor": 1.5, "shift": -0.56}
    labels = [fmnist_test[i][1] for i in range(25)]
    assert m["class_histogram"] == np.bincount(labels * 2, minlength=10).tolist() and m["num_classes"] == 10
    assert np.load(tmp_path / "shard-00000.npy").dtype == np.float16

    ds = LatentDataset(tmp_path)
    assert len(ds) == 50 and isinstance(ds._shard(0), np.memmap)
    for i, (src, flipped) in {0: (0, False), 10: (0, True), 19: (9, True), 40: (20, False), 47: (22, True)}.items():
        x = fmnist_test[src][0][None]
        expect = codec.encode(x.flip(-1) if flipped else x)[0]
        z, y = ds[i]
        assert y == labels[src] and z.dtype == torch.float32 and z.shape == (4, 16, 16)
        assert torch.allclose(z, expect, atol=2e-3)  # float16 storage
        assert torch.allclose(codec.decode(z[None])[0], x[0].flip(-1) if flipped else x[0], atol=2e-3)
    assert ds[-1][1] == ds[49][1]
    with pytest.raises(IndexError):
        ds[50]
    clone = pickle.loads(pickle.dumps(ds))  # what DataLoader workers get: no mapped arrays inside
    assert clone._arrays == {} and torch.equal(clone[33][0], ds[33][0])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=16)))
    assert batch[0].shape == (16, 4, 16, 16) and batch[1].shape == (16,)


def test_whole_fashion_mnist_test_split_encodes(fmnist_test, tmp_path):
    report = encode_dataset(fmnist_test, SpaceToDepthCodec(), tmp_path, shard_size=4000, batch_size=1000,
                            progress=False)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["count"] == 10000 and m["latent_shape"] == [4, 16, 16] and report.encoded == [0, 1, 2]
    assert m["class_histogram"] == [1000] * 10
    ds = LatentDataset(tmp_path, verify="sha256")
    assert np.array_equal(ds.labels, fmnist_test.labels.numpy())
    z = torch.from_numpy(np.concatenate([np.load(tmp_path / f"shard-0000{k}.npy") for k in range(3)]))
    assert abs(z.mean().item()) < 0.05 and 0.93 < z.std().item() < 1.07


class OffByOne(Images):
    """Labels 0..3 although the dataset names 3 classes: label 3 would train as the null class ∅."""

    def __getitem__(self, i):
        return self.x[i], i % 4


def test_labels_outside_the_classes_are_refused(vae, tmp_path):
    """At encoding (the dataset names 3 classes), and where latents are read (a manifest that names
    fewer classes than its shards hold)."""
    with pytest.raises(ConfigError, match=r"encoding shard 0: labels span 0..3, but the dataset names 3 classes"):
        encode(tmp_path / "a", Counting(vae), dataset=OffByOne())
    encode(tmp_path / "b", Counting(vae))
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({**manifest, "num_classes": 2}))
    with pytest.raises(ConfigError, match=r"labels span 0..2, not the classes 0..1 .*null class"):
        LatentDataset(tmp_path / "b")


class NaNCodec(SpaceToDepthCodec):
    def encode(self, images, generator=None):
        z = super().encode(images, generator)
        return z.index_fill(0, torch.tensor([1]), float("nan")) if len(z) > 1 else z


def test_non_finite_latents_are_refused_at_encoding(tmp_path):
    with pytest.raises(ConfigError, match=r"encoding shard 0 \(images 0..9\): the codec gave NaN or infinite"):
        encode(tmp_path, NaNCodec(factor=2, image_channels=3))
    assert not (tmp_path / "shard-00000.npy").exists()


def test_a_manifest_missing_a_key_is_named(vae, tmp_path):
    encode(tmp_path, Counting(vae))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["latent_shape"], manifest["shards"][2]["sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"lacks latent_shape, shards\[2\].sha256; .*re-encode"):
        LatentDataset(tmp_path)
