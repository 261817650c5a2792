"""Fashion-MNIST reader on Debian's files: counts, padding, labels, checksums, corrupt/missing files,
and the download path (with the network call replaced by a local copy: tests never download)."""
from __future__ import annotations

import gzip
import hashlib
import re
import shutil

import pytest
import torch

from data_helpers import fmnist_test, fmnist_train  # noqa: F401 (fixtures)
from sparse_guidance import ConfigError
from sparse_guidance.data import FASHION_MNIST_CLASSES, FashionMNIST, load_fashion_mnist, read_idx
from sparse_guidance.data import fashion_mnist as fm

TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def copy_test_split(dest):
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        shutil.copy(fm.DEBIAN_DIR / f"{name}.gz", dest / f"{name}.gz")
    return dest


def test_counts_shapes_and_labels(fmnist_train, fmnist_test):
    assert (len(fmnist_train), len(fmnist_test)) == (60000, 10000)
    x, y = fmnist_train[123]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert x.min() >= -1 and x.max() <= 1
    for ds, per_class in ((fmnist_train, 6000), (fmnist_test, 1000)):  # both splits are balanced
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        assert torch.bincount(ds.labels).tolist() == [per_class] * 10
    assert len(FASHION_MNIST_CLASSES) == 10 and fmnist_train.classes[9] == "Ankle boot"


def test_padding_is_two_black_pixels_each_side(fmnist_test):
    raw, _ = load_fashion_mnist("test")
    assert raw.shape == (10000, 28, 28)
    imgs = fmnist_test.images  # (N, 32, 32) uint8
    assert imgs.shape == (10000, 32, 32)
    assert torch.equal(imgs[:, 2:30, 2:30], torch.from_numpy(raw))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert imgs[:, border].max() == 0
    x, _ = fmnist_test[0]
    assert (x[0, :2] == -1).all() and (x[0, :, -2:] == -1).all()
    u8 = FashionMNIST("test", output="uint8")[0][0]
    assert u8.dtype == torch.uint8 and torch.equal(u8.float() / 127.5 - 1, x)


def test_debian_checksums():
    """Debian re-gzipped the files: the .gz MD5s differ from the published ones, the IDX payloads
    are the published raw files (computed here, independently of the reader)."""
    for name in fm.PAYLOAD_MD5:
        gz = (fm.DEBIAN_DIR / f"{name}.gz")
        if not gz.is_file():
            pytest.skip("Debian's Fashion-MNIST is not installed")
        raw = gz.read_bytes()
        assert hashlib.md5(raw).hexdigest() == fm.DEBIAN_GZ_MD5[name] != fm.UPSTREAM_GZ_MD5[name]
        assert hashlib.md5(gzip.decompress(raw)).hexdigest() == fm.PAYLOAD_MD5[name]


def test_unzipped_copy_reads_the_same(tmp_path, fmnist_test):
    for name in TEST_FILES:
        (tmp_path / name).write_bytes(gzip.decompress((fm.DEBIAN_DIR / f"{name}.gz").read_bytes()))
    ds = FashionMNIST("test", root=tmp_path)
    assert torch.equal(ds.images, fmnist_test.images) and torch.equal(ds.labels, fmnist_test.labels)


@pytest.mark.parametrize("damage", ["flip", "truncate", "payload"])
def test_corrupt_file_raises_naming_the_path(tmp_path, damage, fmnist_test):
    folder = copy_test_split(tmp_path / "fm")
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    if damage == "flip":  # corrupt the deflate stream (or its CRC)
        data[len(data) // 2] ^= 0xFF
        data[len(data) // 2 + 1] ^= 0x55
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:  # a valid gzip whose content differs in one pixel: only the checksum catches it
        raw = bytearray(gzip.decompress(bytes(data)))
        raw[5000] ^= 0x01
        data = gzip.compress(bytes(raw), compresslevel=1)
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=re.escape(str(path))) as e:
        FashionMNIST("test", root=folder)
    assert "apt-get install" in str(e.value)
    if damage == "payload":  # the file parses; only the checksum rejects it
        assert "checksum" in str(e.value)
        assert read_idx(path, verify=False).shape == (10000, 28, 28)


def test_bad_idx_header_raises(tmp_path):
    path = tmp_path / "mystery-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # claims 5 bytes, holds 3
    with pytest.raises(ConfigError, match="holds 3 bytes"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ConfigError, match="not an unsigned-byte IDX"):
        read_idx(path)


def test_missing_folder_raises_with_apt_hint(tmp_path, monkeypatch):
    hint = r"apt-get install dataset-fashion-mnist.*download=True"
    with pytest.raises(ConfigError, match=r"missing from .*nowhere.*" + hint):
        FashionMNIST("test", root=tmp_path / "nowhere")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(ConfigError, match=r"no-debian.*apt-get install dataset-fashion-mnist"):
        FashionMNIST("test")
    with pytest.raises(ConfigError, match="split 'val'"):
        FashionMNIST("val")


def test_download_verifies_and_moves_into_place(tmp_path, monkeypatch, fmnist_test):
    urls = []

    def fake_fetch(url, dest):  # stands in for the network: copies Debian's file
        urls.append(url)
        shutil.copy(fm.DEBIAN_DIR / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(fm, "_fetch", fake_fetch)
    ds = FashionMNIST("test", root=tmp_path / "dl", download=True)
    assert urls == [fm.BASE_URL + f"{n}.gz" for n in TEST_FILES]
    assert torch.equal(ds.labels, fmnist_test.labels)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [f"{n}.gz" for n in TEST_FILES]

    monkeypatch.setattr(fm, "_fetch", lambda url, dest: dest.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(4))))
    with pytest.raises(ConfigError, match="checksum"):
        FashionMNIST("test", root=tmp_path / "bad", download=True)
    assert list((tmp_path / "bad").iterdir()) == []  # nothing unverified is left in place

    def offline(url, dest):
        raise OSError("no network")

    monkeypatch.setattr(fm, "_fetch", offline)
    with pytest.raises(ConfigError, match="downloading .*failed.*apt-get"):
        FashionMNIST("test", root=tmp_path / "offline", download=True)
