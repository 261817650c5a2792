"""Benchmark: images per second of latent encoding (no download; random VAE weights).

  1. space-to-depth on Fashion-MNIST train (32×32 -> 4×16×16): the codec alone, and end to end
     through encode_dataset (dataset reads, batching, shard writes, checksums, manifest);
  2. a tiny random AutoencoderKL at 256×256 (the tests' stand-in for the SD VAE);
  3. with --sd-vae: the SD VAE's architecture (block_out_channels 128/256/512/512, 2 layers per
     block, 4 latent channels) with random weights at 256×256: the cost of encoding ImageNet.

    python scripts/benchmark_encoding.py [--sd-vae] [--device cuda] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from sparse_guidance.data import FashionMNIST, SDVAECodec, SpaceToDepthCodec, encode_dataset

SD_VAE_ARCH = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                   norm_num_groups=32)
TINY_ARCH = dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8)


def random_vae(arch: dict):
    from diffusers import AutoencoderKL

    n = len(arch["block_out_channels"])
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, sample_size=256, **arch).eval()


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(codec, images: torch.Tensor, batch: int, device: str, warmup: bool = True) -> float:
    """Images per second of codec.encode over ``images`` in batches (one warm-up batch first)."""
    gen = torch.Generator().manual_seed(0)
    if warmup:
        codec.encode(images[:batch].to(device), generator=gen)
    sync(device)
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        codec.encode(images[i:i + batch].to(device), generator=gen)
    sync(device)
    return len(images) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--fmnist-batch", type=int, default=1000)
    p.add_argument("--vae-images", type=int, default=16, help="256x256 images for the tiny VAE")
    p.add_argument("--vae-batch", type=int, default=8)
    p.add_argument("--sd-vae", action="store_true", help="also time the SD VAE architecture (random weights)")
    p.add_argument("--sd-vae-images", type=int, default=4)
    p.add_argument("--sd-vae-batch", type=int, default=2)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"device {a.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    ds = FashionMNIST("train")
    x = ds.images[:, None].float() / 127.5 - 1  # (60000, 1, 32, 32)
    s2d = SpaceToDepthCodec()
    r = rate(s2d, x, a.fmnist_batch, a.device)
    print(f"space-to-depth, Fashion-MNIST 32x32 -> 4x16x16, codec only:   {r:12,.0f} img/s")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        encode_dataset(ds, s2d, tmp, shard_size=10000, batch_size=a.fmnist_batch, device=a.device, progress=False)
        r = len(ds) / (time.perf_counter() - t)
        print(f"space-to-depth, Fashion-MNIST, encode_dataset end to end:    {r:12,.0f} img/s")

    imgs = torch.rand(a.vae_images, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tiny = SDVAECodec(random_vae(TINY_ARCH)).to(a.device)
    print(f"tiny AutoencoderKL {TINY_ARCH['block_out_channels']}, 256x256 -> 4x32x32:  "
          f"{rate(tiny, imgs, a.vae_batch, a.device):12,.1f} img/s")
    if a.sd_vae:
        sd = SDVAECodec(random_vae(SD_VAE_ARCH)).to(a.device)
        params = sum(p.numel() for p in sd.vae.encoder.parameters()) / 1e6
        r = rate(sd, imgs[:a.sd_vae_images], a.sd_vae_batch, a.device, warmup=a.device != "cpu")
        print(f"SD-VAE architecture (encoder {params:.1f}M params), 256x256:  {r:12,.2f} img/s"
              f"  -> ImageNet train (1,281,167 images): {1281167 / r / 3600:,.0f} h here (x2 with flips)")


if __name__ == "__main__":
    main()
