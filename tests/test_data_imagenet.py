"""ImageNet path on generated images: synset order, ADM center crop, encoding through a tiny SD-VAE
stand-in into sharded latents (manifest, 0.18215 scale, flip doubling)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_helpers import SYNSETS, make_image_folder, tiny_vae
from sparse_guidance import ConfigError
from sparse_guidance.data import ImageNet, LatentDataset, SDVAECodec, center_crop_arr, encode_dataset


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet") / "train"
    made = make_image_folder(root, sizes=((300, 400), (512, 260), (1100, 700)), per_class=2)
    return root, made


def test_labels_follow_sorted_synsets(tree):
    root, made = tree
    ds = ImageNet(root)
    assert ds.classes == sorted(SYNSETS) == ["n01440764", "n01443537", "n02102040"]
    assert len(ds) == 6  # notes.txt and the hidden folder are ignored
    for path, label in ds.samples:
        assert path.parent.name == sorted(SYNSETS)[label]
        assert path.name in made[path.parent.name]
    assert ds.targets == [0, 0, 1, 1, 2, 2]
    x, y = ds[4]
    assert x.shape == (3, 256, 256) and x.dtype == torch.uint8 and y == 2


def test_float_output_is_scaled_uint8(tree):
    root, _ = tree
    u8, _ = ImageNet(root)[0]
    f, _ = ImageNet(root, output="float")[0]
    assert f.dtype == torch.float32 and f.min() >= -1 and f.max() <= 1
    assert torch.allclose(f, u8.float() / 127.5 - 1)


@pytest.mark.parametrize("size", [(300, 400), (512, 260), (1100, 700), (2048, 1024), (100, 80), (256, 256)])
def test_center_crop_size_and_solid_colour(size):
    colour = (200, 30, 90)
    out = center_crop_arr(Image.new("RGB", size, colour), 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.array(colour)).max() <= 1


@pytest.mark.parametrize("wide", [True, False])
def test_center_crop_keeps_the_centre_of_the_long_side(wide):
    """800x400 with white columns 200..600: the short side scales to 256 (factor 0.64), so the long
    side becomes 512 and the central 256 columns are exactly the white band; the black sides go."""
    a = np.zeros((400, 800, 3), np.uint8)
    a[:, 200:600] = 255
    img = Image.fromarray(a if wide else a.transpose(1, 0, 2).copy())
    out = center_crop_arr(img, 256).astype(int)
    inner = out[:, 4:-4] if wide else out[4:-4]  # bicubic rings a few pixels at the band's edges
    assert inner.min() >= 250
    # An off-centre band (columns 0..150 -> 0..96 after scaling) is cropped away entirely.
    b = np.zeros((400, 800, 3), np.uint8)
    b[:, :150] = 255
    assert center_crop_arr(Image.fromarray(b), 256).max() <= 5


def test_center_crop_halves_with_box_first():
    """Stripes 2 px black / 2 px white: the first 2x BOX halving (1024 -> 512) keeps 1 px stripes, the
    second (512 -> 256) averages every pair to flat grey, and the final bicubic step is the identity.
    A single bicubic resize 1024 -> 256 would leave visible stripes (108..147)."""
    a = ((np.arange(1024) // 2) % 2 * 255).astype(np.uint8)[None].repeat(1024, 0)
    out = center_crop_arr(Image.fromarray(a).convert("RGB"), 256)
    assert out.shape == (256, 256, 3)
    assert out.min() >= 127 and out.max() <= 128


def test_missing_or_empty_folders_raise(tmp_path):
    with pytest.raises(ConfigError, match=r"no-such-dir.*does not exist.*image-net.org"):
        ImageNet(tmp_path / "no-such-dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty.*no class sub-folders.*image-net.org"):
        ImageNet(tmp_path / "empty")
    (tmp_path / "partial" / "n01440764").mkdir(parents=True)
    (tmp_path / "partial" / "n01443537").mkdir(parents=True)
    Image.new("RGB", (300, 300)).save(tmp_path / "partial" / "n01440764" / "a.png")
    with pytest.raises(ConfigError, match="without images.*n01443537"):
        ImageNet(tmp_path / "partial")
    with pytest.raises(ConfigError, match="output"):
        ImageNet(tmp_path / "partial", output="uint16")


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "n01440764").mkdir()
    (tmp_path / "n01440764" / "broken.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageNet(tmp_path)
    with pytest.raises(ConfigError, match="broken.JPEG"):
        ds[0]


def test_encode_imagenet_through_tiny_sd_vae(tree, tmp_path):
    root, _ = tree
    ds = ImageNet(root)
    vae = tiny_vae()
    codec = SDVAECodec(vae, posterior="mean", name="tiny-vae")
    report = encode_dataset(ds, codec, tmp_path / "lat", shard_size=4, batch_size=3, flip=True, progress=False)
    m = json.loads((tmp_path / "lat" / "manifest.json").read_text())
    assert report.encoded == [0, 1] and m == report.manifest
    assert m["complete"] and m["flip"] and m["source_count"] == 6 and m["count"] == 12
    assert m["latent_shape"] == [4, 32, 32] and m["dtype"] == "float32"
    assert m["codec"]["name"] == "tiny-vae" and m["codec"]["scale_factor"] == m["scale_factor"] == 0.18215
    assert m["codec"]["posterior"] == "mean" and m["num_classes"] == 3
    assert m["class_histogram"] == [4, 4, 4]  # 2 images per class, each also flipped
    assert [s["count"] for s in m["shards"]] == [8, 4]  # shard 0: items 0..3 + their mirrors
    for s in m["shards"]:
        for key in ("latents", "labels"):
            assert hashlib.sha256((tmp_path / "lat" / s[key]).read_bytes()).hexdigest() == s["sha256"][key]

    lat = LatentDataset(tmp_path / "lat")
    assert len(lat) == 12 and lat.latent_shape == (4, 32, 32) and lat.scale_factor == 0.18215
    images = torch.stack([ds[i][0] for i in range(6)]).float() / 127.5 - 1  # (6, 3, 256, 256)
    with torch.no_grad():  # the VAE called directly, scaled by hand
        direct = vae.encode(images).latent_dist.mean * 0.18215
        mirrored = vae.encode(images.flip(-1)).latent_dist.mean * 0.18215
    order = [(0, False), (1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True),
             (4, False), (5, False), (4, True), (5, True)]
    for i, (src, flipped) in enumerate(order):
        z, y = lat[i]
        assert y == ds.targets[src]
        assert torch.allclose(z, (mirrored if flipped else direct)[src], atol=1e-5), (i, src, flipped)
    assert not torch.allclose(direct, mirrored, atol=1e-3)  # the flip is not a no-op on noise images
