"""Figure A1: sampling throughput (images/s) of Sparse Guidance over (γ_strong, γ_weak), beside CFG's.

Each cell times a few Euler steps of the guided velocity (both branches, as sampling.sample runs
them) after a warm-up, the best of a few repeats, and reports images/s at ``sampling_steps`` steps (time per step is the same
at every step for a constant γ). Cells are γ_strong < γ_weak on a grid of ``grid_step`` (0.05: 190
cells; Eq. 6 needs a capacity gap, so the recipe refuses γ_strong = γ_weak). Throughput does not
depend on the weights: the workflow measures the trained embedded model (text_to_image.throughput),
scripts/benchmark_t2i_throughput.py any TR-DiT size with random weights (the 2.5B one on a GPU).

    rows = measure(model, batches=[8], timed_steps=3, sampling_steps=50, device="cpu")
    print(summary_markdown(rows)); fig = heatmap(rows, title="Fig. A1")
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .figures import heatmaps
from .guidance import resolve_recipe
from .sampling import guided_velocity, resolve_conditions

CFG_SETTING = ("CFG (ω 1.8)", {"preset": "cfg", "omega": 1.8})
PAPER_SETTINGS = {  # App. B.2
    "SG (HPSv3 setting: ω 1.8, γ 0.1/0.8)": {"preset": "sg", "omega": 1.8, "gamma_strong": 0.1, "gamma_weak": 0.8},
    "CFG+SG (GenEval setting: ω 2.5, γ 0.2/0.7)": {"preset": "cfg+sg", "omega": 2.5, "gamma_strong": 0.2,
                                                   "gamma_weak": 0.7},
}


def sg_recipe(gamma_strong: float, gamma_weak: float) -> dict:
    return {"preset": "sg", "omega": 1.8, "gamma_strong": gamma_strong, "gamma_weak": gamma_weak}


def grid_cells(grid_step: float) -> list[tuple[float, float]]:
    """(γ_strong, γ_weak) with γ_strong < γ_weak on 0, step, ..., < 1."""
    n = int(round(1 / grid_step))
    gammas = [round(i * grid_step, 4) for i in range(n)]
    return [(gs, gw) for gs in gammas for gw in gammas if gs < gw]


def seconds_per_step(model, recipe, batch: int, steps: int, device, dtype, prompts: int, repeats: int = 3) -> float:
    """Seconds of one guided Euler step of ``batch`` images: the mean over ``steps`` after a warm-up,
    the best of ``repeats`` such runs (a short timing is easily slowed by the machine, never sped up)."""
    device = torch.device(device)
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
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(steps):
                guided_velocity(model, r, x, t, conds, i, steps, g)
            sync()
            best = min(best, (time.perf_counter() - t0) / steps)
    return best


def measure(model, batches=(8,), timed_steps: int = 3, sampling_steps: int = 50, grid_step: float = 0.05,
            device="cpu", dtype=torch.float32, progress=None, repeats: int = 3) -> list[dict]:
    """Every setting per batch size: CFG, the paper's two SG settings, every SG grid cell; rows of
    batch, setting, gamma_strong, gamma_weak, seconds_per_step, images_per_s, ratio_to_cfg (CFG's time
    ÷ this one's: > 1 is faster than CFG). ``progress``: a callable(done, total) or None."""
    prompts = model.cond_embedder.num_classes
    cells = grid_cells(grid_step)
    settings = [CFG_SETTING, *PAPER_SETTINGS.items(), *((f"SG γ {gs:g}/{gw:g}", sg_recipe(gs, gw)) for gs, gw in cells)]
    rows, total = [], len(settings) * len(batches)
    for batch in batches:
        cfg = None
        for name, recipe in settings:
            s = seconds_per_step(model, recipe, batch, timed_steps, device, dtype, prompts, repeats)
            cfg = s if cfg is None else cfg
            rows.append({"batch": batch, "setting": name, "gamma_strong": recipe.get("gamma_strong"),
                         "gamma_weak": recipe.get("gamma_weak"), "seconds_per_step": s,
                         "images_per_s": batch / (s * sampling_steps), "ratio_to_cfg": cfg / s})
            if progress is not None:
                progress(len(rows), total)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per batch: CFG, the paper's two settings and the fastest grid cell."""
    out = []
    for batch in dict.fromkeys(r["batch"] for r in rows):
        mine = [r for r in rows if r["batch"] == batch]
        best = max(mine[3:], key=lambda r: r["images_per_s"])
        out += [*mine[:3], {**best, "setting": f"fastest grid cell ({best['setting']})"}]
    return out


def summary_markdown(rows: list[dict]) -> str:
    lines = ["| batch | setting | images/s | × CFG |", "|---:|---|---:|---:|"]
    lines += [f"| {r['batch']} | {r['setting']} | {r['images_per_s']:.3f} | {r['ratio_to_cfg']:.2f} |"
              for r in summary(rows)]
    return "\n".join(lines)


def heatmap(rows: list[dict], title: str = ""):
    """Time per image relative to CFG's over (γ_strong, γ_weak), one panel per batch size; the box marks
    the fastest cell."""
    cells = [{**r, "time_vs_cfg": 1 / r["ratio_to_cfg"]} for r in rows if r["setting"].startswith("SG γ")]
    values = np.array([c["time_vs_cfg"] for c in cells])
    # a timing the machine slowed (a stall) must not wash out the scale: colours stop at the 95th
    # percentile (at least 1, CFG's time), the printed numbers stay the measured ones
    clip = (float(values.min()), float(max(1.0, np.percentile(values, 95))))
    fig = heatmaps(cells, value="time_vs_cfg", facet="batch", value_label="time per image ÷ CFG's",
                   fmt="{:.2f}", panel_size=4.5, title=title, clip=clip)
    small = len({r["gamma_strong"] for r in cells}) > 8
    for ax in fig.axes[:-1]:
        ax.tick_params(axis="x", labelrotation=90)
        for t in ax.texts:
            t.set_fontsize(4 if small else 7)
    return fig
