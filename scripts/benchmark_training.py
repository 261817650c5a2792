"""Benchmark: training step time of a routed model (γ = 0.5) against the same model dense, beside the
FLOP ratio, and whether the data loader ever holds a step up.

Each step is the training loop's own (train.py): the batch from BatchPrefetcher over memory-mapped
latents (a thread reads ahead into pinned memory on a GPU), flow.draw, the flow-matching loss under
bf16 autocast, backward, AdamW (fused on a GPU), the EMA update. Dense and routed steps alternate
in rounds and the median is reported. It prints
  fwd GMACs/img   the paper's count (fvcore) at the training γ: 114.4 dense, 67.5 routed at XL/2
  step s          median seconds per step
  images/s        batch / step time
  dense / routed  the time ratio beside the FLOP ratio (target: time >= 0.9 x FLOPs)
  loader wait     the time the loop waited for its batch, as a share of the step (target: ~0)
Random weights and random latents: time does not depend on them.

Embedded default (CPU):   python scripts/benchmark_training.py
Paper scale (GPU):        python scripts/benchmark_training.py --model SiT-XL/2 --input-size 32 --route 2:24 \
                              --num-classes 1000 --batch 256 --device cuda --bf16 --markdown training.md
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_sampling import add_model_arguments
from sparse_guidance import performance as P
from sparse_guidance.flops import FlopCounter
from sparse_guidance.flow import draw, ema_update, make_ema, training_loss
from sparse_guidance.models import build_model
from sparse_guidance.train import BatchPrefetcher


class MemmapLatents(torch.utils.data.Dataset):
    """Random latents in a memory-mapped .npy (as data/latents.py's shards are read): item -> (z, label)."""

    def __init__(self, folder: Path, n: int, shape: tuple, num_classes: int):
        path = folder / "latents.npy"
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *shape))
        arr[:] = np.random.default_rng(0).standard_normal(arr.shape, dtype=np.float32)
        arr.flush()
        self.latents = np.load(path, mmap_mode="r")
        self.labels = np.random.default_rng(1).integers(0, num_classes, n)

    def __len__(self):
        return len(self.latents)

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.latents[i])), int(self.labels[i])


def build(a, gamma: float):
    torch.manual_seed(0)
    return build_model(a.model, sparsity="routing", routes=[a.route], train_gamma=gamma, input_size=a.input_size,
                       num_classes=a.num_classes)


class Trainer:
    """One model's training steps, as train.train takes them (no checkpoints, no log)."""

    def __init__(self, a, gamma: float, data):
        self.a, self.gamma, self.device = a, gamma, a.device
        self.model = P.compile_blocks(build(a, gamma).to(a.device), a.compile)
        self.ema = make_ema(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4,
                                     **({"fused": True} if P.is_cuda(a.device) else {}))
        self.batches = iter(BatchPrefetcher(data, range(10 ** 9), 0, a.batch, slice(0, a.batch),
                                            depth=a.prefetch, pin=P.is_cuda(a.device)))

    def step(self) -> tuple[float, float]:
        """(seconds of the step, seconds of it spent waiting for the batch)."""
        P.synchronize(self.device)
        t0 = time.perf_counter()
        gen, xs, ys = next(self.batches)
        waited = time.perf_counter() - t0
        x, y = P.to_device(xs, self.device), P.to_device(ys, self.device)
        d = draw(self.model, x.shape, gamma=self.gamma, class_dropout=0.1, generator=gen)
        d = dataclasses.replace(d, **{k: None if v is None else P.to_device(v, self.device) for k, v in vars(d).items()})
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.a.bf16):
            loss = training_loss(self.model, x, y, gamma=self.gamma, draws=d)
        loss.backward()
        self.opt.step()
        ema_update(self.ema, self.model, 0.9999)
        P.synchronize(self.device)
        return time.perf_counter() - t0, waited


def measure(a) -> dict:
    P.configure_backends(a.device)
    gmacs = {name: FlopCounter(build(a, g))(g) for name, g in (("dense", 0.0), ("routed", a.gamma))}
    with tempfile.TemporaryDirectory() as tmp:
        data = MemmapLatents(Path(tmp), a.data_size, (4, a.input_size, a.input_size), a.num_classes)
        read = [time.perf_counter()]
        reader = BatchPrefetcher(data, range(3), 0, a.batch, slice(0, a.batch), depth=0)
        for _ in reader:
            read.append(time.perf_counter())
        read_s = float(np.median(np.diff(read)))  # reading one batch in the loop, without a thread
        trainers = {"dense": Trainer(a, 0.0, data), "routed": Trainer(a, a.gamma, data)}
        for t in trainers.values():
            for _ in range(a.warmup):
                t.step()
        times = {k: [] for k in trainers}
        waits = {k: [] for k in trainers}
        for _ in range(a.rounds):
            for k, t in trainers.items():
                for _ in range(a.steps):
                    s, w = t.step()
                    times[k].append(s)
                    waits[k].append(w)
    step = {k: float(np.median(v)) for k, v in times.items()}
    wait = {k: float(np.median(v)) for k, v in waits.items()}
    return {"gmacs": gmacs, "step": step, "wait": wait, "read_s": read_s}


def report(a, r: dict) -> str:
    dev = torch.cuda.get_device_name() if P.is_cuda(a.device) else f"{torch.get_num_threads()} CPU threads"
    lines = [f"{a.model}, route {a.route}, γ {a.gamma}, batch {a.batch}, {a.device} "
             f"{'bf16' if a.bf16 else 'fp32'}, compile {a.compile}, prefetch {a.prefetch}, {dev}", "",
             "| model | fwd GMACs/img | step s | images/s | loader wait / step |", "|---|---|---|---|---|"]
    for k in ("dense", "routed"):
        lines.append(f"| {k} | {r['gmacs'][k]:.4g} | {r['step'][k]:.4g} | {a.batch / r['step'][k]:.4g} | "
                     f"{100 * r['wait'][k] / r['step'][k]:.1f} % |")
    fr, tr = r["gmacs"]["dense"] / r["gmacs"]["routed"], r["step"]["dense"] / r["step"]["routed"]
    lines += ["", f"- dense / routed: time {tr:.3f}x, FLOPs {fr:.3f}x; target time >= 0.9 x FLOPs = {0.9 * fr:.3f}x: "
                  f"{'met' if tr >= 0.9 * fr else 'NOT met'} (efficiency {tr / fr:.2f})",
              f"- reading a batch in the loop (no thread) takes {r['read_s']:.4g} s = "
              f"{100 * r['read_s'] / r['step']['routed']:.1f} % of a routed step; with prefetch {a.prefetch} the loop "
              f"waited {100 * r['wait']['routed'] / r['step']['routed']:.1f} %", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median step is reported")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--data-size", type=int, default=4096, help="latents in the memory-mapped file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast, as the paper trains")
    p.add_argument("--compile", default="none", choices=P.COMPILE_MODES)
    p.add_argument("--prefetch", type=int, default=None, help="batches read ahead (default: 2 on a GPU, 0 on a CPU)")
    p.add_argument("--markdown", type=Path)
    a = p.parse_args(argv)
    a.prefetch = (2 if P.is_cuda(a.device) else 0) if a.prefetch is None else a.prefetch
    text = report(a, measure(a))
    print(text)
    if a.markdown:
        a.markdown.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
