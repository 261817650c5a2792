"""Benchmark: wall-clock time per image of every Table 2 method, beside its FLOP ratio.

For each batch size, each method samples `--steps` Euler steps (the whole sampler: its γ schedule
included) from the same noise and labels; the median of `--repeats` runs, interleaved. It prints:
  GMACs/img/step   the paper's count (fvcore: linear and convolution MACs of every branch)
  FLOPs vs CFG     CFG's count over the method's (how much cheaper it should be)
  time vs CFG      CFG's time per image over the method's (how much cheaper it is)
  efficiency       time ratio / FLOP ratio (1.0: time falls exactly with FLOPs)
  images/s         at `--steps` steps
and, against the issue's targets: CFG over SG_FLOPS in time at least 0.9 x its FLOP ratio, SG_FID
over CFG within 10 % of its FLOP ratio, and unguided throughput as a fraction of this device's
measured matrix-product peak (counted as 2 x (linear MACs + attention MACs): QKᵀ and AV, 2·K²·D MACs
a block, which the paper's count leaves out). AG and SG_FID use a second network of the same size
(an early checkpoint's stand-in). Random weights: time does not depend on them.

Embedded default (CPU):   python scripts/benchmark_sampling.py
Paper scale (GPU):        python scripts/benchmark_sampling.py --model SiT-XL/2 --input-size 32 --route 2:24 \
                              --num-classes 1000 --batch 64 256 --device cuda --dtype bf16 --markdown sampling.md
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sparse_guidance import performance as P
from sparse_guidance.flops import TABLE2, FlopCounter, recipe_gflops
from sparse_guidance.guidance import resolve_recipe
from sparse_guidance.models import build_model
from sparse_guidance.sampling import sample

METHODS = [(label.lstrip("+"), preset) for label, _, preset in TABLE2]  # (Table 2's name, recipe preset)
METHODS[0] = ("unguided", "unguided")


def random_model(a, seed: int):
    torch.manual_seed(seed)
    model = build_model(a.model, sparsity="routing", routes=[a.route], train_gamma=0.5, input_size=a.input_size,
                        num_classes=a.num_classes).eval()
    with torch.no_grad():  # random weights everywhere (adaLN-Zero init would make blocks trivial)
        for prm in model.parameters():
            if prm.requires_grad:
                prm.normal_(0, 0.02)
    return model


def attention_gmacs(model) -> float:
    """QKᵀ and AV of a dense forward, per image: 2·T²·D multiply-accumulates a block (GMACs)."""
    return 2 * model.num_tokens ** 2 * model.hidden_size * model.depth / 1e9


def time_sampling(models, recipe, noise, y, steps, device, dtype) -> float:
    """Seconds of one whole sampling call."""
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        P.synchronize(device)
        t0 = time.perf_counter()
        sample(models, recipe, noise, y, steps=steps, generator=torch.Generator().manual_seed(0))
        P.synchronize(device)
    return time.perf_counter() - t0


def measure(a) -> dict:
    main, aux = random_model(a, 0), random_model(a, 1)
    gmacs = {name: recipe_gflops({"main": FlopCounter(main), "aux": FlopCounter(aux)},
                                 resolve_recipe(p, num_steps=a.steps), a.steps) for name, p in METHODS}
    attn = attention_gmacs(main)
    P.configure_backends(a.device)
    models = {"main": P.compile_blocks(main.to(a.device), a.compile),
              "aux": P.compile_blocks(aux.to(a.device), a.compile)}
    peak = P.matmul_peak_tflops(a.device, torch.bfloat16 if a.dtype == "bf16" else torch.float32,
                                size=a.peak_size) if a.peak else None
    out = {"gmacs": gmacs, "attention_gmacs": attn, "peak_tflops": peak, "batches": {}}
    for batch in a.batch:
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(batch, main.in_channels, a.input_size, a.input_size, generator=g).to(a.device)
        y = torch.randint(0, a.num_classes, (batch,), generator=g).to(a.device)
        for _, p in METHODS:  # warm-up: every kernel, every token count of the schedules (compiled too)
            time_sampling(models, p, noise, y, a.steps if a.compile != "none" else 2, a.device, a.dtype)
        times = {name: [] for name, _ in METHODS}
        for _ in range(a.repeats):
            for name, p in METHODS:
                times[name].append(time_sampling(models, p, noise, y, a.steps, a.device, a.dtype))
        out["batches"][batch] = {name: sorted(v)[len(v) // 2] / batch for name, v in times.items()}  # s / image
    return out


def report(a, res: dict) -> str:
    gm, lines = res["gmacs"], []
    head = (f"{a.model}, route {a.route}, {a.input_size}x{a.input_size} latents, {a.steps} Euler steps, "
            f"{a.device} {a.dtype}, compile {a.compile}"
            + (f", {torch.cuda.get_device_name()}" if P.is_cuda(a.device) else f", {torch.get_num_threads()} threads"))
    lines += [head, ""]
    for batch, sec in res["batches"].items():
        lines += [f"batch {batch}", "",
                  "| method | GMACs/img/step | FLOPs vs CFG | s/img | time vs CFG | efficiency | images/s |",
                  "|---|---|---|---|---|---|---|"]
        for name, _ in METHODS:
            fr, tr = gm["CFG"] / gm[name], sec["CFG"] / sec[name]
            lines.append(f"| {name} | {gm[name]:.4g} | {fr:.3f} | {sec[name]:.4g} | {tr:.3f} | {tr / fr:.2f} | "
                         f"{1 / sec[name]:.4g} |")
        fr_sg, tr_sg = gm["CFG"] / gm["SG_FLOPS"], sec["CFG"] / sec["SG_FLOPS"]
        fr_fid, tr_fid = gm["SG_FID"] / gm["CFG"], sec["SG_FID"] / sec["CFG"]
        lines += ["", f"- CFG / SG_FLOPS: time {tr_sg:.3f}x, FLOPs {fr_sg:.3f}x; target time >= 0.9 x FLOPs = "
                      f"{0.9 * fr_sg:.3f}x: {'met' if tr_sg >= 0.9 * fr_sg else 'NOT met'}",
                  f"- SG_FID / CFG: time {tr_fid:.3f}x, FLOPs {fr_fid:.3f}x; target within 10 %: "
                  f"{'met' if abs(tr_fid / fr_fid - 1) <= 0.10 else 'NOT met'} ({100 * (tr_fid / fr_fid - 1):+.1f} %)"]
        if res["peak_tflops"]:
            flops_img = 2 * (gm["unguided"] + res["attention_gmacs"]) * 1e9  # one forward, attention included
            achieved = flops_img * a.steps / sec["unguided"] / 1e12  # sec: one image over all steps
            frac = achieved / res["peak_tflops"]
            lines.append(f"- unguided: {achieved:.3g} TFLOP/s (2 x (linear + attention MACs)) = {100 * frac:.0f} % of "
                         f"the measured {a.dtype} matrix-product peak {res['peak_tflops']:.3g} TFLOP/s; target >= 40 %: "
                         f"{'met' if frac >= 0.40 else 'NOT met'}")
        lines.append("")
    return "\n".join(lines)


def add_model_arguments(p: argparse.ArgumentParser):
    """The benchmarked model (defaults: the embedded SiT-T/2; SiT-XL/2 --input-size 32 --route 2:24
    --num-classes 1000 is the paper's), shared with benchmark_training.py."""
    p.add_argument("--model", default="SiT-T/2")
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--route", default="1:6")
    p.add_argument("--num-classes", type=int, default=10)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--steps", type=int, default=40, help="Euler steps of each timed sampling call")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", default="none", choices=P.COMPILE_MODES, help="compile the blocks (performance.py)")
    p.add_argument("--peak", action=argparse.BooleanOptionalAction, default=None,
                   help="measure the matrix-product peak (default: on a GPU)")
    p.add_argument("--peak-size", type=int, default=8192)
    p.add_argument("--markdown", type=Path, help="also write the report here")
    a = p.parse_args(argv)
    a.peak = P.is_cuda(a.device) if a.peak is None else a.peak
    text = report(a, measure(a))
    print(text)
    if a.markdown:
        a.markdown.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
