"""Helpers shared by the data tests: a tiny random AutoencoderKL, an ImageFolder tree of generated images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Synset-like folder names, deliberately not in sorted order.
SYNSETS = ("n02102040", "n01440764", "n01443537")


def tiny_vae(blocks=(8, 8, 16, 16), seed: int = 0):
    """A diffusers AutoencoderKL with random weights, downsampling by 2^(len(blocks)-1) like the SD VAE
    (4 blocks -> 8x: 256x256 -> 4x32x32), small enough for a CPU test."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(blocks)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(blocks),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=256).eval()


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_image_folder(root, sizes=((300, 400), (512, 260)), per_class: int = 2):
    """root/<synset>/img_k.{png,jpg} with random-noise images of the given (width, height) sizes, plus a
    hidden folder and a non-image file that must be ignored. Returns {synset: [file names]}."""
    made = {}
    for c, synset in enumerate(SYNSETS):
        folder = root / synset
        folder.mkdir(parents=True)
        made[synset] = []
        for k in range(per_class):
            w, h = sizes[(c + k) % len(sizes)]
            name = f"img_{k}.{'png' if k % 2 == 0 else 'JPEG'}"
            noise_image(w, h, seed=10 * c + k).save(folder / name)
            made[synset].append(name)
        (folder / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    return made


def _debian_fashion_mnist(split: str):
    import pytest

    from sparse_guidance.data.fashion_mnist import DEBIAN_DIR, FashionMNIST, _has_split

    if not _has_split(DEBIAN_DIR, split):
        pytest.skip(f"Debian's Fashion-MNIST is not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)")
    return FashionMNIST(split)


def _fixture(scope="session"):
    import pytest

    return pytest.fixture(scope=scope)


@_fixture()
def fmnist_test():
    """Fashion-MNIST test split (10k) from Debian's package, padded to 32x32, float in [-1, 1]."""
    return _debian_fashion_mnist("test")


@_fixture()
def fmnist_train():
    return _debian_fashion_mnist("train")
