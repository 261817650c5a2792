"""Figure A1: text-to-image sampling throughput (images/s) of Sparse Guidance over (γ_strong, γ_weak),
beside CFG's, for TR-DiT with random weights (throughput does not depend on them).

The measurement is sparse_guidance.throughput (the workflow's figA1 target runs it on the trained
embedded model); this tool runs it on any TR-DiT size with random weights.

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

import torch

from sparse_guidance import throughput as TP
from sparse_guidance.figures import save_figure
from sparse_guidance.models import build_trdit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="TR-DiT-T")
    p.add_argument("--input-size", type=int, default=16, help="latent size (16: 32² RGB scenes; 64: 512² SD-VAE)")
    p.add_argument("--in-channels", type=int, default=12)
    p.add_argument("--route", default=None, help="start:end (default: 2:30 for 2.5B, 1:4 otherwise)")
    p.add_argument("--batch", type=int, nargs="+", default=[8])
    p.add_argument("--timed-steps", type=int, default=3, help="timed Euler steps per cell")
    p.add_argument("--repeats", type=int, default=3, help="timings per cell; the best is kept")
    p.add_argument("--sampling-steps", type=int, default=50, help="steps of one image (the paper: 50)")
    p.add_argument("--grid-step", type=float, default=0.05)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--out", default=None, help="CSV of every cell")
    p.add_argument("--plot", default=None, help="heatmap of time per image relative to CFG (PNG, PDF, CSV)")
    a = p.parse_args(argv)
    if a.timed_steps < 1 or a.sampling_steps < 1 or a.repeats < 1 or not 0 < a.grid_step < 1:
        p.error("--timed-steps, --repeats and --sampling-steps must be >= 1 and --grid-step in (0, 1).")
    device, dtype = torch.device(a.device), torch.bfloat16 if a.dtype == "bf16" else torch.float32
    route = a.route or ("2:30" if a.model == "TR-DiT-2.5B" else "1:4")
    torch.manual_seed(0)
    with torch.device(device):
        model = build_trdit(a.model, input_size=a.input_size, in_channels=a.in_channels, num_prompts=16,
                            routes=[route], train_gamma=0.5).eval()
    print(f"{a.model} route {route}, {model.num_tokens} image tokens, {a.device} {a.dtype}, "
          f"threads={torch.get_num_threads()}, {len(TP.grid_cells(a.grid_step))} SG cells, images/s at "
          f"{a.sampling_steps} steps")
    rows = TP.measure(model, a.batch, a.timed_steps, a.sampling_steps, a.grid_step, device, dtype, repeats=a.repeats)
    print(TP.summary_markdown(rows))
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {a.out} ({len(rows)} rows)")
    if a.plot:
        fig = TP.heatmap(rows, title=f"Fig. A1: {a.model}, {model.num_tokens} tokens, {a.device} {a.dtype}")
        print("wrote", ", ".join(str(x) for x in save_figure(fig, a.plot)))


if __name__ == "__main__":
    main()
