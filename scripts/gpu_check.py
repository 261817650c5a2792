"""The prepared GPU run (at most 8 minutes on one GPU): every speed figure of the performance issue, and
the CUDA code path seen working once. Writes a Markdown report (and each benchmark's table).

  1. environment: torch, CUDA, the GPU; flash attention in bf16 on the token counts sparsity makes
  2. sampling: benchmark_sampling.py at SiT-XL/2 (1024 -> 256 tokens), bf16, batch 64 and 256,
     40 Euler steps, every Table 2 method (time ratios beside FLOP ratios, images/s, % of peak)
  3. training: benchmark_training.py, SiT-XL/2 routed at γ 0.5 vs dense, batch 256, bf16
  4. DDP over NCCL: torchrun, one process, three steps of train.train (a tiny model)
  5. the SD-VAE decode on the GPU: sd-vae-ft-ema's architecture with random weights (diffusers)
  6. Inception features on the GPU: torch-fidelity's inception-v3-compat with random weights
  7. sampling with compiled blocks (torch.compile, dynamic token counts) at batch 64
Each step runs on its own: one that fails is reported and the next runs. Weights are random (no
download); time does not depend on them.

On the GPU machine (torch, torchvision, timm, transformers; no internet):
    bash scripts/gpu_wheels.sh        # here first: the few wheels it lacks, into gpu-wheels/
    python scripts/gpu_check.py --out gpu-report          # there, with gpu-wheels/ carried
Here, on the CPU at toy sizes (what the tests run):  python scripts/gpu_check.py --small --device cpu
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / ".gpu-site"


def install_wheels():
    """gpu-wheels/ into .gpu-site/ (once), which goes first on sys.path; src/ too (no install needed)."""
    wheels = sorted((ROOT / "gpu-wheels").glob("*.whl"))
    if wheels and not SITE.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                        str(SITE), *map(str, wheels)], check=False)
    for p in (ROOT / "src", SITE, ROOT / "scripts"):
        if p.exists() and str(p) not in sys.path:
            sys.path.insert(0, str(p))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(SITE),
                                                           os.environ.get("PYTHONPATH", "")) if p)


def environment(a) -> str:
    import torch
    import torch.nn.functional as F
    lines = [f"- torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}"]
    if not a.device.startswith("cuda"):
        return "\n".join(lines + [f"- device {a.device} (no GPU: the CUDA-only checks below run their CPU form)"])
    lines.append(f"- {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for k in (256, 129, 77):  # dense, and two token counts of SG's sparse branches
        q = torch.randn(8, 16, k, 72, device=a.device, dtype=torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, q, q)
    lines.append("- flash attention (bf16, head dim 72) ran at K = 256, 129, 77 tokens")
    return "\n".join(lines)


def sampling(a, compile_mode="none", batches=None) -> str:
    import benchmark_sampling
    size = ["--model", "SiT-T/2", "--input-size", "8", "--route", "1:4", "--num-classes", "10", "--steps", "4",
            "--peak-size", "256"] if a.small else \
        ["--model", "SiT-XL/2", "--input-size", "32", "--route", "2:24", "--num-classes", "1000", "--steps", "40"]
    batches = batches or (["4"] if a.small else ["64", "256"])
    return benchmark_sampling.main([*size, "--batch", *batches, "--repeats", "1", "--device", a.device,
                                    "--dtype", "bf16", "--compile", compile_mode, "--peak"])


def training(a) -> str:
    import benchmark_training
    size = ["--model", "SiT-T/2", "--input-size", "8", "--route", "1:4", "--num-classes", "10", "--batch", "8",
            "--steps", "1", "--rounds", "1", "--warmup", "1", "--data-size", "64"] if a.small else \
        ["--model", "SiT-XL/2", "--input-size", "32", "--route", "2:24", "--num-classes", "1000", "--batch", "256",
         "--steps", "4", "--rounds", "2", "--warmup", "2", "--data-size", "2048"]
    return benchmark_training.main([*size, "--device", a.device, "--bf16"])


def ddp_smoke(a) -> str:
    """torchrun with one process: NCCL on a GPU (gloo on the CPU), three steps of the training loop."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
               "--ddp-worker", tmp, "--device", a.device]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ)
        if p.returncode != 0:
            raise RuntimeError(f"torchrun failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return p.stdout.strip().splitlines()[-1]


def ddp_worker(out: str, device: str):
    import torch
    import torch.distributed as dist

    from sparse_guidance.checkpoint import read_checkpoint
    from sparse_guidance.models import build_model
    from sparse_guidance.train import train
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    torch.manual_seed(0)
    model = build_model("SiT-T/2", sparsity="routing", routes=["1:2"], train_gamma=0.5, input_size=8,
                        num_classes=10, depth=3, hidden_size=32, num_heads=2)
    data = [(torch.randn(4, 8, 8), i % 10) for i in range(32)]
    train(model, data, dict(steps=3, batch_size=8, lr=1e-3, ckpt_every=3, log_every=1, bf16=True), out,
          device=device, progress=False)
    step = read_checkpoint(Path(out) / "last.pt")["step"]
    print(f"DDP over {backend.upper()} ({dist.get_world_size()} process): 3 steps of train.train on {device}, "
          f"checkpoint at step {step}")
    dist.destroy_process_group()


def vae_decode(a) -> str:
    import torch
    from benchmark_encoding import SD_VAE_ARCH, TINY_ARCH, random_vae

    from sparse_guidance.data import SDVAECodec
    from sparse_guidance.performance import synchronize
    with tempfile.TemporaryDirectory() as tmp:
        random_vae(TINY_ARCH if a.small else SD_VAE_ARCH).save_pretrained(tmp)
        codec = SDVAECodec.from_pretrained(tmp).to(a.device)
        n, size = (2, 8) if a.small else (32, 32)
        z = torch.randn(n, 4, size, size, device=a.device)
        codec.decode(z[:2])  # warm-up
        synchronize(a.device)
        t0 = time.perf_counter()
        images = codec.decode(z)
        synchronize(a.device)
        dt = time.perf_counter() - t0
    return (f"SD-VAE decode ({'tiny' if a.small else 'sd-vae-ft-ema'} architecture, random weights) on "
            f"{images.device}: {n} latents 4x{size}x{size} -> {tuple(images.shape[1:])} in {dt:.3f} s "
            f"({n / dt:.1f} images/s)")


def inception(a) -> str:
    import numpy as np
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    from unittest import mock

    from sparse_guidance.metrics.inception import CompatInception
    from sparse_guidance.performance import synchronize
    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *x, **k: {}), \
            mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *x, **k: None):
        torch.manual_seed(0)
        weights = tf_inception.FeatureExtractorInceptionV3("random", ["2048"]).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(weights, Path(tmp) / "inception.pth")
        ext = CompatInception(Path(tmp) / "inception.pth").to(a.device).eval()
        n = 4 if a.small else 256
        images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 3, 256, 256), dtype=np.uint8))
        ext.extract(images[:2].to(a.device))
        synchronize(a.device)
        t0 = time.perf_counter()
        feats = ext.extract(images.to(a.device))
        synchronize(a.device)
        dt = time.perf_counter() - t0
    shapes = {k: tuple(v.shape) for k, v in feats.items()} if isinstance(feats, dict) else tuple(feats.shape)
    return f"Inception (inception-v3-compat, random weights) on {a.device}: {n} images 256² -> {shapes} in {dt:.3f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, default=Path("gpu-report"))
    p.add_argument("--small", action="store_true", help="toy sizes (a CPU check of the script itself)")
    p.add_argument("--skip", nargs="*", default=[], help="steps to leave out, e.g. compiled")
    p.add_argument("--ddp-worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    install_wheels()
    if a.ddp_worker:
        ddp_worker(a.ddp_worker, a.device)
        return 0
    steps = [("environment", environment), ("sampling", sampling), ("training", training), ("ddp", ddp_smoke),
             ("vae", vae_decode), ("inception", inception),
             ("compiled", lambda a: sampling(a, "default", ["4"] if a.small else ["64"]))]
    a.out.mkdir(parents=True, exist_ok=True)
    report, failed, t_all = ["# GPU check", ""], [], time.perf_counter()
    for name, fn in steps:
        if name in a.skip:
            continue
        t0 = time.perf_counter()
        try:
            text = fn(a)
            status = "ok"
        except Exception:
            text, status = "```\n" + traceback.format_exc()[-3000:] + "```", "FAILED"
            failed.append(name)
        report += [f"## {name}: {status} ({time.perf_counter() - t0:.0f} s)", "", text, ""]
        (a.out / "report.md").write_text("\n".join(report) + "\n")  # after every step: a timeout keeps the rest
        print(f"[{name}] {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    report.append(f"total {time.perf_counter() - t_all:.0f} s; failed: {', '.join(failed) or 'none'}")
    (a.out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    if importlib.util.find_spec("sparse_guidance") is None:
        sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
