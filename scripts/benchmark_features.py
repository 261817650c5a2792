"""Benchmark: images/s of Inception feature extraction (pool3 + mixed_6/conv in one pass) at 299x299.

Times ``extractor.extract`` on random uint8 images (resize to 299 included), after one warm-up batch,
and prints images/s for each batch size. The offline TorchScript FID Inception is the default.

CPU (this machine):   python scripts/benchmark_features.py --images 64 --batch 32
GPU:                  python scripts/benchmark_features.py --images 2048 --batch 32 128 --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch

from sparse_guidance.metrics import resolve_extractor


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="timed images per batch size")
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--size", type=int, default=256, help="input resolution before the resize to 299 (ADM: 256)")
    p.add_argument("--extractor", default="offline", help="offline | inception-v3-compat | auto")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads on the CPU (default: torch's choice)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    ext = resolve_extractor(a.extractor, device=a.device)
    gen = torch.Generator().manual_seed(0)

    def sync():
        if str(a.device).startswith("cuda"):
            torch.cuda.synchronize()

    print(f"{ext.label} on {a.device} ({torch.get_num_threads()} CPU threads), {a.size}px -> 299px")
    for b in a.batch:
        x = torch.randint(0, 256, (b, 3, a.size, a.size), generator=gen, dtype=torch.uint8).to(a.device)
        ext.extract(x)  # warm-up
        sync()
        done, t0 = 0, time.perf_counter()
        while done < a.images:
            ext.extract(x)
            done += b
        sync()
        dt = time.perf_counter() - t0
        print(f"batch {b:4d}: {done / dt:8.1f} images/s  ({done} images in {dt:.1f} s)")


if __name__ == "__main__":
    main()
