"""Benchmark: images/s of Inception feature extraction (pool3 + mixed_6/conv in one pass) at 299x299.

Times ``extractor.extract`` on random uint8 images (resize to 299 included), after one warm-up batch,
and prints images/s for each batch size. The offline TorchScript FID Inception is the default.

CPU (this machine):   python scripts/benchmark_features.py --images 64 --batch 32
Layouts compared:     python scripts/benchmark_features.py --threads 1 --batch 50 --size 32 --memory-format both
GPU:                  python scripts/benchmark_features.py --images 2048 --batch 32 128 --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch

from sparse_guidance.metrics import resolve_extractor
from sparse_guidance.metrics.inception import OfflineInception


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="timed images per batch size")
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--size", type=int, default=256, help="input resolution before the resize to 299 (ADM: 256)")
    p.add_argument("--extractor", default="offline", help="offline | inception-v3-compat | auto")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads on the CPU (default: torch's choice)")
    p.add_argument("--memory-format", choices=["channels_last", "contiguous", "both"], default="channels_last",
                   help="the offline Inception's layout (channels_last is what the pipeline uses); both: "
                        "time each and print the ratio and the largest feature difference")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory_format != "channels_last" and a.extractor != "offline":
        p.error("--memory-format applies to the offline Inception only")
    formats = ["contiguous", "channels_last"] if a.memory_format == "both" else [a.memory_format]
    rates, pools = {}, {}
    for fmt in formats:
        rates[fmt], pools[fmt] = time_extractor(a, fmt)
    if len(formats) == 2:
        for b in a.batch:
            diff = (pools["channels_last"][b] - pools["contiguous"][b]).abs().max().item()
            print(f"batch {b:4d}: channels_last / contiguous = {rates['channels_last'][b] / rates['contiguous'][b]:.2f}x "
                  f"images/s; largest pool3 difference {diff:.1e}")


def time_extractor(a, fmt):
    """images/s per batch size of one layout, and the pool3 features of each batch (for comparison)."""
    if a.extractor == "offline":
        layout = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[fmt]
        ext = OfflineInception(memory_format=layout).to(a.device).eval()
    else:
        ext = resolve_extractor(a.extractor, device=a.device)
    gen = torch.Generator().manual_seed(0)
    rates, pools = {}, {}

    def sync():
        if str(a.device).startswith("cuda"):
            torch.cuda.synchronize()

    print(f"{ext.label} on {a.device} ({torch.get_num_threads()} CPU threads), {a.size}px -> 299px, {fmt}")
    for b in a.batch:
        x = torch.randint(0, 256, (b, 3, a.size, a.size), generator=gen, dtype=torch.uint8).to(a.device)
        pools[b] = ext.extract(x)["pool"].float().cpu()  # warm-up
        sync()
        done, t0 = 0, time.perf_counter()
        while done < a.images:
            ext.extract(x)
            done += b
        sync()
        dt = time.perf_counter() - t0
        rates[b] = done / dt
        print(f"batch {b:4d}: {done / dt:8.1f} images/s  ({done} images in {dt:.1f} s)")
    return rates, pools


if __name__ == "__main__":
    main()
