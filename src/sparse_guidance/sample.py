"""Sample a checkpoint with any guidance recipe and write ADM's .npz (one purpose, one command).

    python -m sparse_guidance.sample --checkpoint SiT-XL-2-256x256.pt --recipe cfg --omega 1.5 \\
        --num-samples 50000 --out samples/sit-cfg.npz
    python -m sparse_guidance.sample --checkpoint imagenet256-ckpt-best_with_guidance.pt \\
        --recipe sg --omega 2.5 --gamma-strong 0.5 --gamma-weak 0.9 --out samples/maskdit-sg.npz
    torchrun --nproc_per_node=8 -m sparse_guidance.sample --checkpoint ... --out ...   # 8 GPUs

The checkpoint's format (ours, sit, dit, maskdit, tread-edm, tread-rf: models/formats.py) and its
architecture are read from the file; each format's prediction (velocity, DiT's ε, EDM's F) is
converted to our velocity (models/adapters.py), so every recipe of guidance.PRESETS applies. The
samples are drawn by the workflow's own code path (sample_set.draw): sample i starts from noise of
(seed, i), batches are kept as they finish (a killed run continues), and the set is decoded (the SD
VAE by default) to uint8 images with their class labels (arr_0, arr_1), beside a .json of the
settings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from . import sample_set
from .data import build_codec
from .errors import ConfigError
from .guidance import ALIASES, PRESETS, preset, resolve_recipe
from .io import digest, file_hash, write_json
from .models.formats import FORMATS, load_pretrained
from .performance import COMPILE_MODES, compile_blocks, configure_backends

EPILOG = """\
recipes: {presets} (aliases: {aliases}); or a YAML/JSON file holding one recipe, either a full
  {{name, omega, strong, weak}} or {{preset: <name>, <its arguments>}} (guidance.py).
  AG, SG_FID and AG+SG guide with an auxiliary network: pass --aux-checkpoint (e.g. an early snapshot).
  γ > 0 on a dense checkpoint needs TREAD routes at inference: --routes 2:24 (blocks 2..24 of 28).
formats: {formats}.

examples:
  python -m sparse_guidance.sample --checkpoint SiT-XL-2-256x256.pt --recipe cfg --omega 1.5 --out cfg.npz
  python -m sparse_guidance.sample --checkpoint DiT-XL-2-256x256.pt --recipe cfg --omega 1.5 --guided-channels 3 --out dit.npz
  python -m sparse_guidance.sample --checkpoint maskdit.pt --format maskdit --recipe sg --omega 2.5 --out maskdit-sg.npz
  torchrun --nproc_per_node=8 -m sparse_guidance.sample --checkpoint ... --num-samples 50000 --out ...
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sparse_guidance.sample", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample a checkpoint (ours, SiT, DiT, MaskDiT or TREAD) with a guidance recipe and write "
                    "ADM's .npz (arr_0: uint8 images (N, H, W, 3), arr_1: class labels).",
        epilog=EPILOG.format(presets=", ".join(PRESETS), aliases=", ".join(f"{k}={v}" for k, v in ALIASES.items()),
                             formats=", ".join(f"{k} ({v[1]})" for k, v in FORMATS.items())))
    g = p.add_argument_group("network")
    g.add_argument("--checkpoint", required=True, help="the checkpoint file to sample")
    g.add_argument("--format", choices=list(FORMATS), help="its format (default: read from its keys)")
    g.add_argument("--model", help="a registered model to check the weights against, e.g. SiT-XL/2 "
                                   "(default: read from the weights)")
    g.add_argument("--num-heads", type=int, help="attention heads (default: the registered model's; the weights "
                                                 "do not show them)")
    g.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA (default) or raw weights")
    g.add_argument("--routes", nargs="+", default=[], metavar="START:END",
                   help="TREAD routes for γ > 0 (blocks, both inclusive; routing has no weights)")
    g.add_argument("--aux-checkpoint", help="the auxiliary network of AG / SG_FID / AG+SG")
    g.add_argument("--aux-format", choices=list(FORMATS), help="its format (default: read from its keys)")
    g.add_argument("--aux-routes", nargs="+", default=None, metavar="START:END",
                   help="the auxiliary network's routes (default: --routes)")
    r = p.add_argument_group("guidance")
    r.add_argument("--recipe", default="cfg", help="a preset (below) or a recipe file (.yaml/.json); default cfg")
    r.add_argument("--omega", type=float, help="guidance scale ω (default: the preset's)")
    r.add_argument("--gamma-strong", type=float, help="γ of the strong branch (sg, cfg+sg, ag+sg)")
    r.add_argument("--gamma-weak", type=float, help="γ of the weak branch (sg, cfg+sg, ag+sg)")
    r.add_argument("--guided-channels", type=int,
                   help="guide only the first K latent channels (3: DiT's and SiT's published CFG); default all")
    s = p.add_argument_group("sampling")
    s.add_argument("--num-samples", type=int, default=50_000)
    s.add_argument("--batch-size", type=int, default=125, help="samples per batch and process")
    s.add_argument("--steps", type=int, default=40, help="ODE steps (the paper: 40 Euler steps)")
    s.add_argument("--solver", choices=["euler", "heun"], default="euler")
    s.add_argument("--seed", type=int, default=0, help="sample i starts from the noise of (seed, i)")
    s.add_argument("--labels", choices=sample_set.LABELS, default="balanced",
                   help="class i mod K (balanced, default) or uniform random classes")
    s.add_argument("--no-bf16", dest="bf16", action="store_false", help="sample in fp32 (default: bf16 autocast)")
    s.add_argument("--compile", default="none", choices=COMPILE_MODES,
                   help="torch.compile the transformer blocks (dynamic token counts; a GPU's speed-up, default none)")
    s.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available; torchrun: its local GPU)")
    o = p.add_argument_group("output")
    o.add_argument("--codec", default="sd-vae-ft-ema", choices=["sd-vae-ft-ema", "space-to-depth"],
                   help="the latents' decoder: the SD VAE (ImageNet, default) or space-to-depth (Fashion-MNIST)")
    o.add_argument("--vae-path", help="a local folder with the SD VAE (AutoencoderKL.save_pretrained); "
                                      "default: the Hugging Face cache")
    o.add_argument("--out", required=True, help="the .npz to write (a .json of the settings goes beside it)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def recipe_of(a) -> dict:
    """The recipe dict of the arguments: a preset with --omega/--gamma-* as its arguments, or a file."""
    args = {k: v for k, v in (("omega", a.omega), ("gamma_strong", a.gamma_strong), ("gamma_weak", a.gamma_weak))
            if v is not None}
    path = Path(a.recipe)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"recipe file {a.recipe!r} does not exist.")
        if args:
            raise ConfigError("--omega/--gamma-* set a preset's arguments; write them into the recipe file instead.")
        import yaml
        spec = yaml.safe_load(path.read_text())
    else:
        spec = preset(a.recipe, **args)
    if a.guided_channels is not None:
        spec = {**spec, "guided_channels": a.guided_channels} if isinstance(spec, dict) else spec
    return resolve_recipe(spec, num_steps=a.steps).to_dict()


def _check_routing(recipe, loaded: dict, steps: int):
    """A branch with γ > 0 needs a masked model or routes: say which flag gives them."""
    for b in recipe.branches:
        net = loaded[b.model].net
        if any(b.gamma_at(i, steps) > 0 for i in range(steps)) and net.sparsity != "masking" and not net.routes:
            flag = "--routes" if b.model == "main" else "--aux-routes"
            raise ConfigError(f"recipe {recipe.name!r} drops tokens (γ > 0) on the {b.model} network, which is "
                              f"dense ({loaded[b.model].format} checkpoint without routes): pass {flag} START:END, "
                              f"e.g. {flag} 2:24 for 28 blocks (TREAD's route in the paper).")


def _distributed():
    """(rank, world, local_rank) under torchrun (WORLD_SIZE > 1), after joining the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), world, local


def run(a) -> dict | None:
    """Sample as the arguments say; returns the settings written beside the .npz (rank 0)."""
    rank, world, local = _distributed()
    try:
        if a.device:
            device = torch.device(a.device)
        elif torch.cuda.is_available():
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if a.num_samples < 1 or a.batch_size < 1:
            raise ConfigError("--num-samples and --batch-size must be at least 1.")
        recipe_dict = recipe_of(a)
        recipe = resolve_recipe(recipe_dict, num_steps=a.steps)
        if "aux" in recipe.models and not a.aux_checkpoint:
            raise ConfigError(f"recipe {recipe.name!r} guides with an auxiliary network: pass --aux-checkpoint "
                              "(AutoGuidance and SG_FID use an early snapshot of the same run).")
        files = {"main": (a.checkpoint, a.format, a.routes)}
        if "aux" in recipe.models:
            files["aux"] = (a.aux_checkpoint, a.aux_format, a.routes if a.aux_routes is None else a.aux_routes)
        loaded = {k: load_pretrained(path, fmt, a.model if k == "main" else None, weights=a.weights,
                                     routes=routes, num_heads=a.num_heads, device=device)
                  for k, (path, fmt, routes) in files.items()}
        _check_routing(recipe, loaded, a.steps)
        configure_backends(device)
        for v in loaded.values():
            compile_blocks(v.model, a.compile)
        arch = loaded["main"].architecture
        if a.codec == "sd-vae-ft-ema":
            codec = build_codec(a.codec, **({"path": a.vae_path} if a.vae_path else {}))
        else:
            codec = build_codec(a.codec)
        codec = codec.to(device)
        settings = {"checkpoints": {k: {"path": str(path), "format": loaded[k].format, "sha256": file_hash(path),
                                        "architecture": loaded[k].architecture, "routes": list(routes)}
                                    for k, (path, _, routes) in files.items()},
                    "weights": a.weights, "recipe": recipe_dict, "num_samples": a.num_samples, "steps": a.steps,
                    "solver": a.solver, "seed": a.seed, "labels": a.labels, "bf16": a.bf16, "codec": a.codec,
                    "codec_weights": codec.weights_digest(),
                    **({"compile": a.compile} if a.compile != "none" else {})}  # compiled kernels round otherwise
        key = digest({**settings, "batch_size": a.batch_size})
        drawn = sample_set.draw(
            {k: v.model for k, v in loaded.items()}, recipe, a.out, num_samples=a.num_samples,
            batch_size=a.batch_size, shape=(arch["in_channels"], arch["input_size"], arch["input_size"]),
            num_conditions=arch["num_classes"], seed=a.seed, decode=codec.decode, key=key, label_mode=a.labels,
            steps=a.steps, solver=a.solver, bf16=a.bf16, device=device, progress=not a.quiet, rank=rank,
            world=world, desc=f"sampling {recipe.name}")
        if drawn is None:
            return None
        info = {**settings, **drawn, "processes": world, "device": str(device),
                "seconds_per_sample": round(drawn["sampling_seconds"] / drawn["num_samples"], 5)}
        write_json(Path(a.out).with_suffix(".json"), info)
        return info
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        info = run(a)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if info is not None:
        print(json.dumps({k: info[k] for k in ("num_samples", "image_shape", "sampling_seconds", "batches_resumed")}),
              f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
