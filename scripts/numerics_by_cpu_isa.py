"""Which CPU kernels the embedded numbers depend on: the same bf16 training steps and sampling run
under each oneDNN instruction-set cap (ONEDNN_MAX_CPU_ISA), twice each, in fresh processes.

    python scripts/numerics_by_cpu_isa.py                      # AVX2, AVX512_CORE, AVX512_CORE_BF16, ALL
    python scripts/numerics_by_cpu_isa.py --isa AVX2 ALL --steps 50

Prints, per cap, whether two runs agree bit for bit, and how far the weights and samples of each
cap are from the uncapped (ALL) run. A cap above what the CPU has acts as ALL (oneDNN takes the best
the CPU supports up to the cap), so rows that print 0 against ALL run the same kernels. The embedded
model (SiT-T/2, routed 1:6 at γ 0.5) on random latents, bf16 autocast as the training and sampling
stages use it; the token subsets, noise and data come from seeded generators. Under AVX2 (no bf16
instructions) the bf16 products run on a slow path: keep --steps and --batch small there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, torch
from sparse_guidance import build_model
from sparse_guidance.flow import training_loss
from sparse_guidance.guidance import preset
from sparse_guidance.sampling import sample
steps, out, batch, n, sample_steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
torch.set_num_threads(2)
model = build_model("SiT-T/2", input_size=16, in_channels=4, num_classes=10, sparsity="routing", routes=["1:6"],
                    train_gamma=0.5)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
data = torch.Generator().manual_seed(1)
for _ in range(steps):
    x = torch.randn(batch, 4, 16, 16, generator=data)
    y = torch.randint(0, 10, (batch,), generator=data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_loss(model, x, y, generator=data)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
model.eval()
noise = torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(2))
labels = torch.arange(n) % 10
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    x = sample(model, preset("sg", omega=2.5, gamma_strong=0.5, gamma_weak=0.9), noise, labels, steps=sample_steps,
               generator=torch.Generator().manual_seed(3))
torch.save({"weights": torch.cat([p.detach().flatten().float() for p in model.parameters()]),
            "samples": x.float(), "loss": float(loss.detach())}, out)
"""


def run(isa: str, args, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    if isa != "ALL":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    else:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    subprocess.run([sys.executable, "-c", CHILD, str(args.steps), str(out), str(args.batch), str(args.samples),
                    str(args.sample_steps)], env=env, check=True)
    import torch
    return torch.load(out, weights_only=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isa", nargs="+", default=["AVX2", "AVX512_CORE", "AVX512_CORE_BF16", "ALL"])
    ap.add_argument("--steps", type=int, default=30, help="AdamW steps before sampling (default 30)")
    ap.add_argument("--batch", type=int, default=128, help="training batch (default 128, the embedded run's)")
    ap.add_argument("--samples", type=int, default=16, help="images sampled (default 16)")
    ap.add_argument("--sample-steps", type=int, default=20, help="Euler steps (default 20)")
    args = ap.parse_args()
    import torch
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    print(f"{cpu}; flags: {', '.join(have)}; torch {torch.__version__}; {args.steps} steps at batch {args.batch}, "
          f"{args.samples} samples x {args.sample_steps} steps, bf16\n")
    with tempfile.TemporaryDirectory() as tmp:
        res = {isa: [run(isa, args, Path(tmp) / f"{isa}-{k}.pt") for k in range(2)] for isa in args.isa}
    ref = res.get("ALL", res[args.isa[-1]])[0]
    rows = []
    for isa, (a, b) in res.items():
        repeat = torch.equal(a["weights"], b["weights"]) and torch.equal(a["samples"], b["samples"])
        dw = (a["weights"] - ref["weights"]).abs().max().item()
        dx = (a["samples"] - ref["samples"]).abs().max().item()
        rows.append({"isa": isa, "repeat_bit_equal": repeat, "max_dweight_vs_ALL": dw, "max_dsample_vs_ALL": dx,
                     "loss": a["loss"]})
    print("| ONEDNN_MAX_CPU_ISA | two runs bit-equal | max abs Δ weights vs ALL | max abs Δ samples vs ALL | last loss |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['isa']} | {'yes' if r['repeat_bit_equal'] else 'NO'} | {r['max_dweight_vs_ALL']:.3g} | "
              f"{r['max_dsample_vs_ALL']:.3g} | {r['loss']:.6f} |")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
