"""GPU fast paths: TF32, compiled transformer blocks, asynchronous host-to-device copies.

None of this changes the CPU path (the embedded default stays bit-reproducible there): TF32 is a
CUDA setting, blocks are compiled only when asked, and copies are pinned and asynchronous only
towards a CUDA device. Attention already takes PyTorch's scaled-dot-product kernels (flash in bf16
on a GPU, for any token count), so token sparsity needs no kernel of its own.

Why the blocks and not the whole forward: a forward's Python control flow depends on γ (which
routes run, how many tokens they keep), so compiling the forward would guard on γ and recompile for
every value SG_FID's cosine schedule visits. A block sees only tensors; compiled with a dynamic
token dimension it serves every K (and the doubled batch of CFG) with one graph, and the weights
keep their names (nn.Module.compile works in place), so checkpoints load as before.
"""
from __future__ import annotations

import time

import torch

from .errors import ConfigError

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def synchronize(device):
    """Wait for a CUDA device's queued work (timing); nothing elsewhere."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware: a CUDA GPU that supports bf16, or
    an x86 CPU with AVX512-BF16 or AMX (oneDNN's bf16 kernels). Other CPUs (AVX2, AVX-512 without
    BF16, ARM) convert bf16 in software; on an Ice Lake Xeon (AVX-512, no BF16) bf16 autocast made
    the embedded training step 2.26x and sampling 2.3x slower than fp32 (benchmark_training.py,
    benchmark_sampling.py; README, "Time on 2 CPU cores")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def check_bf16(setting, name: str = "bf16"):
    """ConfigError unless ``setting`` is true, false or "auto" (``name``: the config key, for the message)."""
    if not (isinstance(setting, bool) or setting == "auto"):
        raise ConfigError(f"{name}={setting!r}; choose true, false or auto.")


def use_bf16(setting, device) -> bool:
    """A config's ``bf16`` (true, false or "auto") on ``device``: auto is bf16 where it is native
    (native_bf16), fp32 elsewhere. The jobs record what it resolved to (samples/*.json, summary.json)."""
    check_bf16(setting)
    return native_bf16(device) if setting == "auto" else setting


def configure_backends(device) -> dict:
    """TF32 for the float32 matrix products and convolutions that run outside bf16 autocast, on CUDA
    only (a CPU has no TF32, and its results must not move). Returns what it set."""
    if not is_cuda(device):
        return {}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False  # many token counts: autotuning each shape would cost more
    return {"tf32": True}


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a backbone (SiT/DiT `blocks`, MaskDiT's `decoder_blocks`, TRDiT's
    `blocks`), unwrapping adapters (models/adapters.py keep the network as `.net`)."""
    net = getattr(model, "net", model)
    blocks = [b for name in ("blocks", "decoder_blocks") for b in getattr(net, name, [])]
    if not blocks:
        raise ConfigError(f"{type(net).__name__} has no `blocks` to compile; compile=none samples it uncompiled.")
    return blocks


def compile_blocks(model: torch.nn.Module, mode: str = "default", backend: str = "inductor",
                   dynamic: bool = True) -> torch.nn.Module:
    """Compile every transformer block of ``model`` in place (torch.compile with a dynamic token
    dimension, so every γ shares a graph); mode 'none' leaves it as it is. Returns ``model``."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}.")
    if mode == "none":
        return model
    kwargs = {} if mode == "default" else {"mode": mode}
    for block in transformer_blocks(model):
        block.compile(backend=backend, dynamic=dynamic, **kwargs)
    return model


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device``: through pinned memory without waiting (non_blocking) towards a CUDA device,
    so the host never synchronises with the GPU for it; a plain copy elsewhere."""
    if is_cuda(device) and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def matmul_peak_tflops(device, dtype=torch.bfloat16, size: int = 8192, repeats: int = 20) -> float:
    """Measured matrix-product throughput (TFLOP/s, 2 FLOPs per multiply-accumulate) of square
    ``size`` products: the peak a model's throughput is compared with (benchmark_sampling.py)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - t0) / 1e12
