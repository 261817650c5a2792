"""ImageNet-256 (paper scale): an ImageFolder-style train tree with ADM's center crop.

Layout: ``root/<synset>/<image>`` (ILSVRC2012 train, e.g. ``root/n01440764/n01440764_10026.JPEG``).
Labels follow the standard order: synset folder names sorted -> 0..K-1 (0..999 for ImageNet-1k),
the order DiT, SiT, MaskDiT and TREAD use (torchvision's ImageFolder).
Images are cropped as guided-diffusion's ``center_crop_arr`` does (ADM preprocessing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
OUTPUTS = ("uint8", "float")
IMAGENET_HINT = ("ImageNet-1k (ILSVRC2012) is not redistributable: register at https://image-net.org/download, "
                 "download ILSVRC2012_img_train.tar and extract it so that each class is a folder "
                 "root/<synset>/<image>.JPEG (1000 folders n01440764 ... n15075141).")


def center_crop_arr(image: Image.Image, size: int = 256) -> np.ndarray:
    """ADM's center crop (guided-diffusion ``center_crop_arr``) -> (size, size, C) uint8.

    1. While the short side is >= 2·size, halve both sides (integer division) with a BOX filter.
    2. Scale so the short side is exactly ``size`` (each side rounded) with BICUBIC.
    3. Crop the central size×size window (offset (side - size) // 2 on each axis).
    """
    if size < 1:
        raise ConfigError(f"crop size must be positive; got {size}.")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)  # (H, W, C)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(classes, samples) of an ImageFolder tree: classes = sorted sub-folder names (label = position),
    samples = (path, label) sorted by class then file name. ConfigError if the tree is missing or empty."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder {str(root)!r} does not exist. {IMAGENET_HINT}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ConfigError(f"image folder {str(root)!r} has no class sub-folders (root/<synset>/<image>). "
                          f"{IMAGENET_HINT}")
    samples, empty = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if _is_image(p))
        if not files:
            empty.append(name)
        samples.extend((p, label) for p in files)
    if empty:
        more = f" (+{len(empty) - 5} more)" if len(empty) > 5 else ""
        raise ConfigError(f"image folder {str(root)!r}: class folders without images ({', '.join(IMAGE_EXTENSIONS)}): "
                          f"{', '.join(empty[:5])}{more}; the extraction looks incomplete. {IMAGENET_HINT}")
    return classes, samples


class ImageNet(torch.utils.data.Dataset):
    """ImageFolder-style dataset with ADM's center crop: item i -> (image (3, size, size), label).

    output="uint8": uint8 CHW in [0, 255] (compact, for encoding); "float": float32 in [-1, 1].
    Attributes: classes (sorted synsets), class_to_idx, samples [(path, label)], targets.
    """

    def __init__(self, root: str | Path, image_size: int = 256, output: str = "uint8"):
        if output not in OUTPUTS:
            raise ConfigError(f"unknown output {output!r}; choose one of {OUTPUTS}.")
        self.root, self.image_size, self.output = Path(root).expanduser(), int(image_size), output
        self.classes, self.samples = list_image_folder(self.root)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> np.ndarray:
        """The cropped image as (size, size, 3) uint8; ConfigError naming an unreadable file."""
        path = self.samples[index][0]
        try:
            with Image.open(path) as im:
                return center_crop_arr(im.convert("RGB"), self.image_size)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ConfigError(f"cannot read image {str(path)!r} ({type(e).__name__}: {e}); "
                              "re-extract it or remove it from the folder.") from e

    def __getitem__(self, index: int):
        x = torch.from_numpy(np.ascontiguousarray(self.load(index).transpose(2, 0, 1)))  # (3, H, W) uint8
        if self.output == "float":
            x = x.float() / 127.5 - 1.0
        return x, self.samples[index][1]
