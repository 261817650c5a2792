"""A minutes-long CPU demo of Sparse Guidance on synthetic latents (no download).

Trains a tiny routed SiT on the toy dataset (toy.py) with the training loop of train.py
(resumable: rerun and it continues from results/demo/run/last.pt), then samples every guidance preset from the
same noise, and writes a sample grid (PNG) and a table (CSV and Markdown) with GFLOPs per step,
seconds and class accuracy under results/demo/.

    python -m sparse_guidance.demo [--steps 800] [--out results/demo]
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from .checkpoint import load_weights, read_checkpoint
from .flops import FlopCounter, recipe_gflops
from .flow import make_ema
from .models import build_model
from .sampling import sample
from .toy import class_accuracy, make_toy_latents
from .train import TrainConfig, checkpoint_path, train

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
    labels = torch.arange(a.samples) % 10
    rows, grids = [], []
    for name, spec in RECIPES.items():
        t0 = time.perf_counter()
        x = sample({"main": ema, "aux": aux}, spec, noise, labels, steps=a.sampling_steps,
                   generator=torch.Generator().manual_seed(a.seed))
        sec = time.perf_counter() - t0
        rows.append({"recipe": name, "gflops_per_step": round(recipe_gflops({"main": counter, "aux": counter}, spec,
                                                                           a.sampling_steps), 4),
                     "seconds": round(sec, 2), "class_accuracy": round(class_accuracy(x, labels), 3)})
        grids.append(x[:10])
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
