"""A sample set: N samples of one guidance recipe, drawn in batches from seeded noise, decoded and
written as ADM's ``.npz`` (arr_0 uint8 (N, H, W, 3), arr_1 labels). The one code path of the
workflow's sampling stage (stages.sample_row) and of ``python -m sparse_guidance.sample``.

Sample i starts from noise drawn from (seed, i) alone, so every row of a table starts from the
same noise whatever the batch size or the number of processes. Each finished batch is kept in
``.<name>.parts/`` beside the output (with the key of the settings and weights that made it), so a
killed job continues where it stopped; with several processes (torchrun) each draws the batches
b ≡ rank (mod world) and rank 0 writes the file.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from .progress import tqdm

from .io import atomic_open, save_npz
from .sampling import sample

LABELS = ("balanced", "random")


def noise(shape, start: int, stop: int, seed: int) -> torch.Tensor:
    """Initial noise (stop − start, *shape) of samples [start, stop): sample i's from (seed, i) only."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
                        for i in range(start, stop)])


def labels(k: int, start: int, stop: int, seed: int, mode: str = "balanced") -> torch.Tensor:
    """Conditions of samples [start, stop) among k: balanced (i mod k) or uniform random from seed."""
    idx = torch.arange(start, stop)
    if mode == "balanced":
        return idx % k
    g = torch.Generator().manual_seed(seed * 7_919 + 17)
    return torch.randint(0, k, (stop,), generator=g)[start:stop]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded images (N, C, H, W) in [-1, 1] -> ADM layout: uint8 (N, H, W, 3); grey is repeated to RGB
    so that ADM's own evaluator reads the file too."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def parts_dir(out) -> Path:
    """Where the finished batches of ``out`` wait: ``.<stem>.parts/`` beside it."""
    p = Path(out)
    return p.with_name(f".{p.stem}.parts")


def _barrier(world: int):
    if world > 1:
        torch.distributed.barrier()


def draw(models, recipe, out, *, num_samples: int, batch_size: int, shape, num_conditions: int, seed: int,
         decode, key: str, label_mode: str = "balanced", steps: int = 40, solver: str = "euler", bf16: bool = True,
         device=None, progress: bool = True, rank: int = 0, world: int = 1, desc: str = "sampling") -> dict | None:
    """Draw ``num_samples`` samples of ``recipe`` with ``models`` and write ``out`` (ADM .npz).

    decode: latents (N, C, h, w) -> images in [-1, 1] (a codec's decode). key: a digest of everything
    the samples depend on (settings, weights, decoder); batches kept under another key are dropped.
    Returns (on rank 0; None elsewhere) sampling_seconds (the sampler alone, summed over batches),
    batches_resumed, num_samples and image_shape."""
    device = torch.device(device or "cpu")
    parts = parts_dir(out)
    key_file = parts / "key.txt"
    if rank == 0:
        if parts.exists() and (not key_file.exists() or key_file.read_text() != key):
            shutil.rmtree(parts)  # parts of another setting or other weights: start over
        parts.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
    _barrier(world)
    batches = range(0, num_samples, batch_size)
    mine = [(b, start) for b, start in enumerate(batches) if b % world == rank]
    resumed = 0
    for b, start in tqdm(mine, desc=desc, disable=not progress or rank != 0):
        part = parts / f"{b:06d}.npz"
        if part.exists():
            resumed += 1
            continue
        stop = min(start + batch_size, num_samples)
        x0 = noise(shape, start, stop, seed).to(device)
        y = labels(num_conditions, start, stop, seed, label_mode)
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + 7 * b + 1)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z = sample(models, recipe, x0, y.to(device), steps=steps, solver=solver, generator=gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0  # the sampler alone, not the decode
        with atomic_open(part) as f:
            np.savez(f, images=to_uint8(decode(z.float())), labels=y.numpy().astype(np.int64), seconds=np.array(seconds))
    resumed_all = resumed
    if world > 1:
        count = torch.tensor([resumed], device=device if device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(count)
        resumed_all = int(count.item())
    _barrier(world)
    if rank != 0:
        return None
    images, conds, total = [], [], 0.0
    for b in range(len(batches)):
        with np.load(parts / f"{b:06d}.npz") as z:
            images.append(z["images"])
            conds.append(z["labels"])
            total += float(z["seconds"])
    arr = np.concatenate(images)
    save_npz(out, arr_0=arr, arr_1=np.concatenate(conds))
    shutil.rmtree(parts)
    return {"num_samples": int(arr.shape[0]), "image_shape": list(arr.shape[1:]), "sampling_seconds": round(total, 2),
            "batches_resumed": resumed_all}
