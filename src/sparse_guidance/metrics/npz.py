"""ADM-format image sets: validation and streaming reads (hashes and atomic writes: io.py).

The format (ADM's evaluator, openai/guided-diffusion ``evaluations/evaluator.py``): an ``.npz`` whose
key ``arr_0`` holds uint8 images, NHWC, RGB. Grey sets, (N, H, W) or (N, H, W, 1), are accepted and
repeated to 3 channels. Like ADM's reader, ``iter_npz_batches`` streams ``arr_0`` from the zip member
batch by batch, so a 50k x 256² x 3 sample set (9.8 GB) never sits in memory whole.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.utils.data

from ..errors import ConfigError

IMAGES_KEY = "arr_0"


@dataclass(frozen=True)
class ImageSetInfo:
    """What the header of an image array says: (N, H, W) grey or (N, H, W, C) with C in {1, 3}."""

    path: Path | None
    shape: tuple

    @property
    def num(self) -> int:
        return int(self.shape[0])


def check_images(shape, dtype, where: str) -> None:
    """Raise ConfigError unless (shape, dtype) is an ADM image array: uint8, (N,H,W[,1|3]), N >= 1."""
    shape, dtype = tuple(shape), np.dtype(dtype)
    if dtype != np.uint8:
        hint = " (floats in [0, 1]: (x * 255).round().clip(0, 255).astype(np.uint8))" if dtype.kind == "f" else ""
        raise ConfigError(f"{where} has dtype {dtype}; ADM image sets are uint8 in [0, 255]{hint}.")
    if len(shape) == 4 and shape[-1] not in (1, 3):
        if shape[1] in (1, 3):
            raise ConfigError(f"{where} has shape {shape}, which looks NCHW; ADM image sets are NHWC: "
                              "store x.transpose(0, 2, 3, 1).")
        raise ConfigError(f"{where} has shape {shape}: {shape[-1]} channels; expected 1 (grey) or 3 (RGB), "
                          "NHWC (drop an alpha channel with x[..., :3]).")
    if len(shape) not in (3, 4):
        raise ConfigError(f"{where} has shape {shape}; expected (N, H, W, 3) RGB or (N, H, W) / (N, H, W, 1) grey.")
    if shape[0] < 1 or min(shape[1:3]) < 1:
        raise ConfigError(f"{where} has shape {shape}: no images.")


def _open_member(zf: zipfile.ZipFile, path: Path, key: str):
    names = zf.namelist()
    if f"{key}.npy" not in names:
        keys = sorted(n[:-4] for n in names if n.endswith(".npy"))
        raise ConfigError(f"{str(path)!r} has no key {key!r} (it has {keys}); ADM image sets store the images as "
                          f"np.savez(path, {key}=images).")
    return zf.open(f"{key}.npy")


CORRUPT = (zipfile.BadZipFile, zlib.error, OSError, EOFError)  # bad CRC, damaged or truncated deflate stream


def _read_header(f, path: Path):
    """(shape, fortran_order, dtype) of a .npy stream, or None for a header version we do not stream."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        return None
    except CORRUPT as e:
        raise ConfigError(f"{str(path)!r} is corrupt ({type(e).__name__}: {e}); re-create it.") from e
    except Exception as e:  # a garbled header: ValueError, or SyntaxError / TokenError from NumPy's parser
        raise ConfigError(f"{str(path)!r} is corrupt: arr_0 is not a valid .npy member ({type(e).__name__}: {e}); "
                          "re-create it.") from e


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ConfigError(f"image set {str(path)!r} does not exist; check the path (ADM format: .npz with arr_0).")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"{str(path)!r} is not a readable .npz (zip) file ({type(e).__name__}: {e}); "
                          "re-create it with np.savez(path, arr_0=images).") from e


def inspect_npz(path, key: str = IMAGES_KEY) -> ImageSetInfo:
    """Validate an ADM image set from its header alone (no image data is read)."""
    path = Path(path)
    with _open_zip(path) as zf, _open_member(zf, path, key) as f:
        header = _read_header(f, path)
    if header is None:  # unusual .npy version: let NumPy parse it
        arr = _load_member(path, key)
        shape, dtype = arr.shape, arr.dtype
    else:
        shape, _, dtype = header
    check_images(shape, dtype, f"{str(path)!r} ({key})")
    return ImageSetInfo(path, tuple(int(s) for s in shape))


def _load_member(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except Exception as e:
        raise ConfigError(f"{str(path)!r}: cannot read {key} ({type(e).__name__}: {e}); the file may be truncated "
                          "or corrupt: re-create it.") from e


def _read_exact(f, size: int, path: Path) -> bytearray:
    chunks, got = bytearray(), 0
    while got < size:
        try:
            b = f.read(min(size - got, 1 << 26))
        except CORRUPT as e:
            raise ConfigError(f"{str(path)!r} is corrupt ({type(e).__name__}: {e}); re-create it.") from e
        if not b:
            raise ConfigError(f"{str(path)!r} is truncated: arr_0 ends {size - got} bytes early; re-create it.")
        chunks += b
        got += len(b)
    return chunks


def iter_npz_batches(path, start: int = 0, stop: int | None = None, batch_size: int = 32,
                     key: str = IMAGES_KEY) -> Iterator[np.ndarray]:
    """Images [start, stop) of an ADM set in batches of raw uint8 arrays (B, H, W[, C]), streamed from the zip."""
    path = Path(path)
    info = inspect_npz(path, key)
    stop = info.num if stop is None else min(stop, info.num)
    row = int(np.prod(info.shape[1:]))  # bytes per image (uint8)
    with _open_zip(path) as zf, _open_member(zf, path, key) as f:
        header = _read_header(f, path)
        if header is None or header[1]:  # Fortran order or exotic header: load whole, slice
            arr = _load_member(path, key)
            for i in range(start, stop, batch_size):
                yield np.ascontiguousarray(arr[i:min(i + batch_size, stop)])
            return
        skip = start * row
        while skip > 0:  # zip members only read forwards
            skip -= len(_read_exact(f, min(skip, 1 << 26), path))
        for i in range(start, stop, batch_size):
            b = min(batch_size, stop - i)
            yield np.frombuffer(_read_exact(f, b * row, path), dtype=np.uint8).reshape(b, *info.shape[1:])


def to_rgb_nchw(batch: np.ndarray) -> torch.Tensor:
    """Raw uint8 images (B, H, W[, 1|3]) -> uint8 tensor (B, 3, H, W); grey is repeated to 3 channels."""
    x = torch.from_numpy(np.ascontiguousarray(batch))
    if x.ndim == 3:
        x = x[..., None]  # (B, H, W, 1)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)  # (B, H, W, 3)
    return x.permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)


def iter_array_batches(images: np.ndarray, start: int = 0, stop: int | None = None,
                       batch_size: int = 32) -> Iterator[np.ndarray]:
    """The same batches as iter_npz_batches, from an in-memory (already validated) array."""
    stop = len(images) if stop is None else min(stop, len(images))
    for i in range(start, stop, batch_size):
        yield images[i:min(i + batch_size, stop)]


def open_npz(path, what: str):
    """np.load an .npz (no pickles) or raise ConfigError naming the path; use as a context manager."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist; check the path.")
    try:
        obj = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ConfigError(f"{what} {str(path)!r} is not a readable .npz ({type(e).__name__}: {e}); "
                          "re-create it.") from e
    if not hasattr(obj, "files"):  # a bare .npy
        raise ConfigError(f"{what} {str(path)!r} is a .npy array, not an .npz; save it with np.savez(path, ...).")
    return obj


class ImageDataset(torch.utils.data.Dataset):
    """A uint8 image array (N, H, W[, 1|3]) as torch-fidelity input: items are uint8 tensors (3, H, W)."""

    def __init__(self, images: np.ndarray):
        images = np.asarray(images)
        check_images(images.shape, images.dtype, "image array")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_rgb_nchw(self.images[i:i + 1])[0]  # (3, H, W)
