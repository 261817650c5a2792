"""Benchmark: seconds per sampling step for unguided, CFG and SG_FLOPS, beside the FLOP ratios.

Prints, for each recipe, wall-clock seconds per Euler step, its ratio to CFG, the GFLOPs ratio to
CFG (fvcore, the paper's convention), and how much of the FLOP saving shows up in wall-clock time:
    efficiency = (t_CFG / t_recipe) / (F_CFG / F_recipe)      (1.0 = time falls exactly with FLOPs)

Embedded default (CPU):   python scripts/benchmark_sampling.py
Paper scale (GPU):        python scripts/benchmark_sampling.py --model SiT-XL/2 --input-size 32 \
                              --route 2:24 --num-classes 1000 --batch 64 --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import time

import torch

from sparse_guidance.flops import FlopCounter, recipe_gflops
from sparse_guidance.guidance import resolve_recipe
from sparse_guidance.models import build_model
from sparse_guidance.sampling import guided_velocity, resolve_conditions

RECIPES = ["unguided", "cfg", "sg_flops"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="SiT-T/2")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--route", default="1:6")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps per recipe (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()

    torch.manual_seed(0)
    model = build_model(a.model, sparsity="routing", routes=[a.route], train_gamma=0.5,
                        input_size=a.input_size, num_classes=a.num_classes).eval()
    with torch.no_grad():  # random weights everywhere (adaLN-Zero init would make blocks trivial)
        for prm in model.parameters():
            if prm.requires_grad:
                prm.normal_(0, 0.02)
    counter = FlopCounter(model)
    flops = {r: recipe_gflops(counter, r) for r in RECIPES}
    model = model.to(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    gen = torch.Generator(device=a.device).manual_seed(0)
    x = torch.randn(a.batch, model.in_channels, a.input_size, a.input_size, device=a.device)
    y = torch.randint(0, a.num_classes, (a.batch,), device=a.device)
    t = torch.tensor(0.5, device=a.device)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(recipe, n):
        r = resolve_recipe(recipe, num_steps=40)
        conds = resolve_conditions(r, model.cond_embedder, y, gen)
        with torch.no_grad(), torch.autocast(a.device.split(":")[0], dtype=dtype, enabled=a.dtype == "bf16"):
            sync()
            t0 = time.perf_counter()
            for i in range(n):
                guided_velocity(model, r, x, t, conds, i, 40, gen)
            sync()
        return (time.perf_counter() - t0) / n

    times = {r: [] for r in RECIPES}
    for r in RECIPES:
        run(r, 2)  # warm-up
    for _ in range(a.repeats):
        for r in RECIPES:
            times[r].append(run(r, a.steps))
    sec = {r: sorted(v)[len(v) // 2] for r, v in times.items()}

    print(f"{a.model} route {a.route}, {a.input_size}x{a.input_size} latents ({model.num_tokens} tokens), "
          f"batch {a.batch}, {a.device} {a.dtype}, threads={torch.get_num_threads()}")
    print(f"{'recipe':<10}{'s/step':>10}{'time/CFG':>10}{'GFLOPs/img':>12}{'FLOPs/CFG':>11}{'efficiency':>12}")
    for r in RECIPES:
        tr, fr = sec[r] / sec["cfg"], flops[r] / flops["cfg"]
        print(f"{r:<10}{sec[r]:>10.4f}{tr:>10.3f}{flops[r]:>12.4f}{fr:>11.3f}{fr / tr:>12.2f}")


if __name__ == "__main__":
    main()
