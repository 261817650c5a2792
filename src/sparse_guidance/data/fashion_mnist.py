"""Fashion-MNIST, the embedded default dataset: 60k train + 10k test 28×28 grey images, 10 classes,
padded to 32×32 (2 black pixels each side) for the space-to-depth codec (-> 4×16×16 latents).

Where the files come from, first match wins:
  1. ``root`` if given (a folder with the four IDX files, gzipped or not);
  2. Debian's ``dataset-fashion-mnist`` package: /usr/share/datasets/fashion-mnist/;
  3. with download=True, the dataset's public release, into ``root`` (or ~/.cache/sparse_guidance).

Every file is checked against the MD5 of its decompressed IDX payload (see PAYLOAD_MD5).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DOWNLOAD_DIR = Path("~/.cache/sparse_guidance/fashion-mnist")
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
OUTPUTS = ("float", "uint8")

# Checksums. The dataset's README publishes the MD5s of the .gz files (UPSTREAM_GZ_MD5). Debian's
# package re-compressed them (gzip header time 2020-06-05), so its .gz files have other MD5s
# (DEBIAN_GZ_MD5, checked here against the package's own md5sums) while the decompressed IDX bytes
# are identical: both decompress to PAYLOAD_MD5, the MD5s of the raw IDX files that other loaders
# publish. We therefore verify the payload, which holds for either source and for unzipped copies.
UPSTREAM_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
DEBIAN_GZ_MD5 = {  # dataset-fashion-mnist 0.0~git20200523.55506a9-1
    "train-images-idx3-ubyte": "cf8536b0aa1a6ac5fa3f23001093305c",
    "train-labels-idx1-ubyte": "10bea18fdb374794d4bb42e356e600c9",
    "t10k-images-idx3-ubyte": "f78720b4224f21cce2f2ccf2d7a94c9a",
    "t10k-labels-idx1-ubyte": "0d30e22e447f3c33dab9ed536400ac01",
}
PAYLOAD_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
HINT = ("Install Debian's copy (`apt-get install dataset-fashion-mnist`, files in /usr/share/datasets/fashion-mnist/) "
        "or pass download=True to fetch the dataset's public release.")


def _file_in(folder: Path, name: str) -> Path | None:
    """folder/name.gz, else folder/name (an unzipped copy), else None."""
    for p in (folder / f"{name}.gz", folder / name):
        if p.is_file():
            return p
    return None


def _has_split(folder: Path, split: str) -> bool:
    return all(_file_in(folder, n) for n in SPLITS[split][:2])


def _fetch(url: str, dest: Path):
    """Download url to dest (no checks; the caller verifies). Replaced in tests: they never download."""
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)


def download_fashion_mnist(folder: str | Path, split: str = "train") -> Path:
    """Fetch the split's missing files into folder from the public release, each verified before it is
    moved into place (temp file + os.replace); ConfigError if a download fails or does not verify."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLITS[split][:2]:
        if _file_in(folder, name):
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.gz.", suffix=".tmp")
        os.close(fd)
        try:
            try:
                _fetch(BASE_URL + name + ".gz", Path(tmp))
            except OSError as e:
                raise ConfigError(f"downloading {BASE_URL + name}.gz into {str(folder)!r} failed ({e}); "
                                  "check the network, or install `apt-get install dataset-fashion-mnist`.") from e
            read_idx(tmp, name)  # verifies the payload checksum
            os.replace(tmp, folder / f"{name}.gz")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return folder


def find_fashion_mnist(root: str | Path | None = None, split: str = "train", download: bool = False) -> Path:
    """The folder to read the split from (see the module docstring for the order)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown Fashion-MNIST split {split!r}; choose one of {tuple(SPLITS)}.")
    if root is not None:
        folder = Path(root).expanduser()
        if _has_split(folder, split):
            return folder
        if download:
            return download_fashion_mnist(folder, split)
        raise ConfigError(f"Fashion-MNIST {split} files ({', '.join(n + '.gz' for n in SPLITS[split][:2])}) are "
                          f"missing from {str(folder)!r}. {HINT}")
    if _has_split(DEBIAN_DIR, split):
        return DEBIAN_DIR
    if download:
        return download_fashion_mnist(DEFAULT_DOWNLOAD_DIR, split)
    raise ConfigError(f"Fashion-MNIST not found: {str(DEBIAN_DIR)!r} is missing or incomplete and no root was given. "
                      f"{HINT}")


def read_idx(path: str | Path, name: str | None = None, verify: bool = True) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into a uint8 array; with verify, its payload must have the
    MD5 registered for ``name`` (default: the file name without .gz). ConfigError naming the path if
    the file is missing, truncated, not gzip/IDX or fails the checksum."""
    path = Path(path)
    name = name or path.name.removesuffix(".gz")
    fix = f"delete it and reinstall (`apt-get install --reinstall dataset-fashion-mnist`) or re-download it. {HINT}"
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError as e:
        raise ConfigError(f"Fashion-MNIST file {str(path)!r} does not exist. {HINT}") from e
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ConfigError(f"Fashion-MNIST file {str(path)!r} is corrupt ({type(e).__name__}: {e}); {fix}") from e
    if verify and name in PAYLOAD_MD5 and hashlib.md5(data).hexdigest() != PAYLOAD_MD5[name]:
        raise ConfigError(f"Fashion-MNIST file {str(path)!r} fails its checksum (MD5 of the IDX payload "
                          f"{hashlib.md5(data).hexdigest()}, expected {PAYLOAD_MD5[name]}); {fix}")
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ConfigError(f"Fashion-MNIST file {str(path)!r} is not an unsigned-byte IDX file; {fix}")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ConfigError(f"Fashion-MNIST file {str(path)!r} holds {len(data) - offset} bytes for shape {dims}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()  # writable


def load_fashion_mnist(split: str = "train", root: str | Path | None = None, download: bool = False,
                       verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of a split, checksums verified."""
    folder = find_fashion_mnist(root, split, download)
    img_name, lab_name, count = SPLITS[split]
    images = read_idx(_file_in(folder, img_name), img_name, verify)
    labels = read_idx(_file_in(folder, lab_name), lab_name, verify).astype(np.int64)
    if images.ndim != 3 or len(images) != count or labels.shape != (count,):
        raise ConfigError(f"Fashion-MNIST {split} in {str(folder)!r}: expected {count} images and labels, got shapes "
                          f"{images.shape} and {labels.shape}. {HINT}")
    return images, labels


class FashionMNIST(torch.utils.data.Dataset):
    """Fashion-MNIST padded to 32×32: item i -> (image (1, 32, 32), label in 0..9).

    pad: black pixels added on each side (2: 28 -> 32). output="float": float32 in [-1, 1] (background
    -1); "uint8": uint8 in [0, 255]. Attributes: classes (names), images (N, 32, 32) uint8, labels.
    """

    classes = CLASSES

    def __init__(self, split: str = "train", root: str | Path | None = None, download: bool = False,
                 pad: int = 2, output: str = "float", verify: bool = True):
        if output not in OUTPUTS:
            raise ConfigError(f"unknown output {output!r}; choose one of {OUTPUTS}.")
        if pad < 0:
            raise ConfigError(f"pad must be >= 0; got {pad}.")
        images, labels = load_fashion_mnist(split, root, download, verify)
        self.split, self.output = split, output
        self.images = torch.from_numpy(np.pad(images, ((0, 0), (pad, pad), (pad, pad))))  # (N, 32, 32) uint8
        self.labels = torch.from_numpy(labels)  # (N,)
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = self.images[index][None]  # (1, 32, 32) uint8
        if self.output == "float":
            x = x.float() / 127.5 - 1.0
        return x, int(self.labels[index])
