"""A minutes-long CPU demo of Sparse Guidance on synthetic latents (no download): a one-purpose tool
over the library, as DiT's sample.py is.

Trains a tiny routed SiT on a toy dataset (below) with the training loop of train.py
(resumable: rerun and it continues from results/demo/run/last.pt), then samples every guidance preset from the
same noise, and writes a sample grid (PNG) and a table (CSV and Markdown) with GFLOPs per step,
seconds and class accuracy under results/demo/.

    python scripts/demo.py [--steps 800] [--out results/demo]
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

from sparse_guidance.checkpoint import load_weights, read_checkpoint
from sparse_guidance.flops import FlopCounter, recipe_gflops
from sparse_guidance.flow import make_ema
from sparse_guidance.models import build_model
from sparse_guidance.sampling import sample
from sparse_guidance.train import TrainConfig, checkpoint_path, train

# ---------------------------------------------------------------------------------------------
# The toy dataset: class k of K is a Gaussian bump at the k-th of K points on a ring in a C×S×S
# latent grid, with a class-specific sign pattern over channels, random amplitude and a small
# position jitter. Whether a sample put its bump at its class's position (class_accuracy) is a
# cheap, honest check that a conditional generator follows its condition.
# ---------------------------------------------------------------------------------------------

def ring_positions(num_classes: int, size: int) -> torch.Tensor:
    """(K, 2) bump centres (row, col) on a ring of radius size/3 around the grid centre."""
    ang = torch.arange(num_classes, dtype=torch.float32) * (2 * math.pi / num_classes)
    c, r = (size - 1) / 2, size / 3
    return torch.stack([c + r * torch.sin(ang), c + r * torch.cos(ang)], dim=1)


def channel_signs(num_classes: int, channels: int) -> torch.Tensor:
    """(K, C) ±1: channel c of class k has sign (-1)^(bit c of k)."""
    k = torch.arange(num_classes)[:, None]
    bits = (k >> torch.arange(channels)[None]) & 1
    return 1.0 - 2.0 * bits.float()


def make_toy_latents(n: int, num_classes: int = 10, channels: int = 4, size: int = 16,
                     generator: torch.Generator | None = None):
    """n latents (n, C, S, S) and labels (n,)."""
    y = torch.randint(0, num_classes, (n,), generator=generator)
    centre = ring_positions(num_classes, size)[y] + 0.7 * torch.randn(n, 2, generator=generator)
    amp = 2.0 + 0.3 * torch.randn(n, generator=generator)
    rows = torch.arange(size, dtype=torch.float32)
    d2 = (rows[None, :, None] - centre[:, 0, None, None]) ** 2 + (rows[None, None, :] - centre[:, 1, None, None]) ** 2
    bump = amp[:, None, None] * torch.exp(-d2 / (2 * 2.0 ** 2))  # (n, S, S)
    x = channel_signs(num_classes, channels)[y][:, :, None, None] * bump[:, None]
    x = x + 0.05 * torch.randn(x.shape, generator=generator)
    return x, y


def class_accuracy(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> float:
    """Fraction of samples whose strongest point (summed |x| over channels) lies nearest to the
    ring position of their own class."""
    size = x.shape[-1]
    energy = x.abs().sum(1).flatten(1)  # (n, S²)
    idx = energy.argmax(1)
    peak = torch.stack([idx // size, idx % size], 1).float()
    nearest = torch.cdist(peak, ring_positions(num_classes, size)).argmin(1)
    return (nearest == y.cpu()).float().mean().item()


NUM_CLASSES = 10  # the toy latents' classes (a ring of 10 positions)
RECIPES = {  # name -> recipe spec
    "unguided": "unguided",
    "CFG ω=2": {"preset": "cfg", "omega": 2.0},
    "ICG ω=2": {"preset": "icg", "omega": 2.0},
    "SG (0.5,0.9) ω=2.5": "sg_flops",
    "SG (0.2,0.7) ω=2": {"preset": "sg", "omega": 2.0, "gamma_strong": 0.2, "gamma_weak": 0.7},
    "CFG+SG ω=2": {"preset": "cfg+sg", "omega": 2.0},
    "AG ω=2": {"preset": "autoguidance", "omega": 2.0},
    "AG+SG ω=2": {"preset": "ag+sg", "omega": 2.0},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=800, help="training steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--samples", type=int, default=200, help="samples per recipe")
    p.add_argument("--sampling-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/demo")
    a = p.parse_args(argv)
    # before the training: the image grid shows one sample of each of the 10 classes per recipe
    for flag, v, low in (("--samples", a.samples, NUM_CLASSES), ("--steps", a.steps, 1), ("--batch", a.batch, 1),
                         ("--sampling-steps", a.sampling_steps, 1)):
        if v < low:
            p.error(f"{flag} {v}: give at least {low}" + (" (one sample per class for the grid)" if low > 1 else ""))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    data_x, data_y = make_toy_latents(4096, generator=gen)
    model = build_model("SiT-T/2", sparsity="routing", routes=["1:4"], train_gamma=0.5, input_size=16,
                        num_classes=10, depth=6, hidden_size=128, num_heads=4)
    early = max(1, a.steps // 8)  # an early snapshot: AutoGuidance's weak model
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch, lr=1e-3, ema_decay=0.99, save_steps=[early],
                      ckpt_every=max(1, a.steps // 4), log_every=max(1, a.steps // 20), seed=a.seed)
    _, ema = train(model, list(zip(data_x, data_y)), cfg, out / "run")
    aux = load_weights(make_ema(ema), read_checkpoint(checkpoint_path(out / "run", early)), "ema")

    counter = FlopCounter(ema)
    noise = torch.randn(a.samples, 4, 16, 16, generator=gen)
    labels = torch.arange(a.samples) % NUM_CLASSES
    rows, grids = [], []
    for name, spec in RECIPES.items():
        t0 = time.perf_counter()
        x = sample({"main": ema, "aux": aux}, spec, noise, labels, steps=a.sampling_steps,
                   generator=torch.Generator().manual_seed(a.seed))
        sec = time.perf_counter() - t0
        rows.append({"recipe": name, "gflops_per_step": round(recipe_gflops({"main": counter, "aux": counter}, spec,
                                                                           a.sampling_steps), 4),
                     "seconds": round(sec, 2), "class_accuracy": round(class_accuracy(x, labels), 3)})
        grids.append(x[:NUM_CLASSES])
        print(rows[-1])

    with open(out / "demo.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "demo.md", "w") as f:
        f.write("| recipe | GFLOPs/step | seconds | class accuracy |\n|---|---:|---:|---:|\n")
        for r in rows:
            f.write(f"| {r['recipe']} | {r['gflops_per_step']} | {r['seconds']} | {r['class_accuracy']} |\n")
    _save_grid(grids, list(RECIPES), out / "demo_grid.png")
    print(f"wrote {out}/demo.csv, demo.md, demo_grid.png")


def _save_grid(grids, names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(grids), 10, figsize=(10, 1.1 * len(grids)))
    for r, (g, name) in enumerate(zip(grids, names)):
        for c in range(10):
            ax = axes[r, c]
            ax.imshow(g[c, 0].numpy(), cmap="RdBu_r", vmin=-2.5, vmax=2.5)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(f"class {c}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
