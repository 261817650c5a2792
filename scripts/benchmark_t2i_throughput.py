"""Figure A1: text-to-image sampling throughput (images/s) of Sparse Guidance over (γ_strong, γ_weak),
beside CFG's, for TR-DiT with random weights (throughput does not depend on them).

Each cell times a few Euler steps of the guided velocity (both branches, as sampling.sample runs
them) after a warm-up, and reports images/s at --sampling-steps steps (time per step is the same at
every step for a constant γ). Cells are γ_strong < γ_weak on a grid of --grid-step (0.05: 190 cells;
Eq. 6 needs a capacity gap, so the recipe refuses γ_strong = γ_weak).

Embedded size (CPU):  python scripts/benchmark_t2i_throughput.py
The paper's model (GPU, bf16, 512² -> 64×64 latents, 1024 tokens; at most 6 minutes at batch 1 and 8):
  python scripts/benchmark_t2i_throughput.py --model TR-DiT-2.5B --input-size 64 --in-channels 4 \\
      --device cuda --dtype bf16 --batch 1 8 --timed-steps 2 --out figA1-h200.csv

Prints a Markdown table (CFG, the paper's two SG settings, the fastest cell); with --plot draws the
heatmap of time per image relative to CFG over (γ_strong, γ_weak); with --out writes every cell as CSV (batch, setting, gamma_strong, gamma_weak, seconds_per_step, images_per_s, ratio_to_cfg).
"""
from __future__ import annotations

import argparse
import csv
import time

import torch

from sparse_guidance.figures import heatmaps, save_figure
from sparse_guidance.guidance import resolve_recipe
from sparse_guidance.models import build_trdit
from sparse_guidance.sampling import guided_velocity, resolve_conditions

PAPER_SETTINGS = {  # App. B.2
    "SG (HPSv3 setting: ω 1.8, γ 0.1/0.8)": {"preset": "sg", "omega": 1.8, "gamma_strong": 0.1, "gamma_weak": 0.8},
    "CFG+SG (GenEval setting: ω 2.5, γ 0.2/0.7)": {"preset": "cfg+sg", "omega": 2.5, "gamma_strong": 0.2,
                                                   "gamma_weak": 0.7},
}


def sg_recipe(gamma_strong: float, gamma_weak: float) -> dict:
    return {"preset": "sg", "omega": 1.8, "gamma_strong": gamma_strong, "gamma_weak": gamma_weak}


def seconds_per_step(model, recipe, batch: int, steps: int, device, dtype, prompts: int) -> float:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, device=device)
    y = torch.randint(0, prompts, (batch,), device=device)
    t = torch.full((), 0.5, device=device)
    r = resolve_recipe(recipe, num_steps=steps)
    conds = resolve_conditions(r, model.cond_embedder, y, g)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        guided_velocity(model, r, x, t, conds, 0, steps, g)  # warm-up (allocations, kernels)
        sync()
        t0 = time.perf_counter()
        for i in range(steps):
            guided_velocity(model, r, x, t, conds, i, steps, g)
        sync()
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="TR-DiT-T")
    p.add_argument("--input-size", type=int, default=16, help="latent size (16: 32² RGB scenes; 64: 512² SD-VAE)")
    p.add_argument("--in-channels", type=int, default=12)
    p.add_argument("--route", default=None, help="start:end (default: 2:30 for 2.5B, 1:4 otherwise)")
    p.add_argument("--batch", type=int, nargs="+", default=[8])
    p.add_argument("--timed-steps", type=int, default=3, help="timed Euler steps per cell")
    p.add_argument("--sampling-steps", type=int, default=50, help="steps of one image (the paper: 50)")
    p.add_argument("--grid-step", type=float, default=0.05)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--out", default=None, help="CSV of every cell")
    p.add_argument("--plot", default=None, help="heatmap of time per image relative to CFG (PNG, PDF, CSV)")
    a = p.parse_args(argv)
    if a.timed_steps < 1 or a.sampling_steps < 1 or not 0 < a.grid_step < 1:
        p.error("--timed-steps and --sampling-steps must be >= 1 and --grid-step in (0, 1).")
    device, dtype = torch.device(a.device), torch.bfloat16 if a.dtype == "bf16" else torch.float32
    route = a.route or ("2:30" if a.model == "TR-DiT-2.5B" else "1:4")
    torch.manual_seed(0)
    with torch.device(device):
        model = build_trdit(a.model, input_size=a.input_size, in_channels=a.in_channels, num_prompts=16,
                            routes=[route], train_gamma=0.5).eval()
    n = int(round(1 / a.grid_step))
    gammas = [round(i * a.grid_step, 4) for i in range(n)]  # 0 .. 0.95 at 0.05
    cells = [(gs, gw) for gs in gammas for gw in gammas if gs < gw]
    rows = []
    print(f"{a.model} route {route}, {model.num_tokens} image tokens, {a.device} {a.dtype}, "
          f"threads={torch.get_num_threads()}, {len(cells)} SG cells, images/s at {a.sampling_steps} steps")
    for batch in a.batch:
        cfg = seconds_per_step(model, {"preset": "cfg", "omega": 1.8}, batch, a.timed_steps, device, dtype, 16)
        settings = [("CFG (ω 1.8)", {"preset": "cfg", "omega": 1.8}), *PAPER_SETTINGS.items(),
                    *((f"SG γ {gs:g}/{gw:g}", sg_recipe(gs, gw)) for gs, gw in cells)]
        for name, recipe in settings:
            s = cfg if name.startswith("CFG (") else seconds_per_step(model, recipe, batch, a.timed_steps, device,
                                                                       dtype, 16)
            rows.append({"batch": batch, "setting": name, "gamma_strong": recipe.get("gamma_strong"),
                         "gamma_weak": recipe.get("gamma_weak"), "seconds_per_step": s,
                         "images_per_s": batch / (s * a.sampling_steps), "ratio_to_cfg": cfg / s})
    print("| batch | setting | images/s | × CFG |\n|---:|---|---:|---:|")
    for batch in a.batch:
        mine = [r for r in rows if r["batch"] == batch]
        best = max(mine[3:], key=lambda r: r["images_per_s"])
        for r in [*mine[:3], best]:
            name = r["setting"] if r is not best else f"fastest grid cell ({r['setting']})"
            print(f"| {batch} | {name} | {r['images_per_s']:.3f} | {r['ratio_to_cfg']:.2f} |")
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {a.out} ({len(rows)} rows)")
    if a.plot:
        cells = [{**r, "time_vs_cfg": 1 / r["ratio_to_cfg"]}
                 for r in rows if r["setting"].startswith("SG γ")]  # lower is faster: the box marks the fastest
        fig = heatmaps(cells, value="time_vs_cfg", facet="batch", value_label="time per image ÷ CFG's",
                       fmt="{:.2f}", panel_size=4.5,
                       title=f"Fig. A1: {a.model}, {model.num_tokens} tokens, {a.device} {a.dtype}")
        for ax in fig.axes[:-1]:  # the fastest cell is boxed; a 20 x 20 grid needs smaller print
            ax.tick_params(axis="x", labelrotation=90)
            for t in ax.texts:
                t.set_fontsize(4)
        print("wrote", ", ".join(str(x) for x in save_figure(fig, a.plot)))


if __name__ == "__main__":
    main()
