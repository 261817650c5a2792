"""HPSv3 (Ma et al., 2025; PyPI ``hpsv3``) on a folder of images, run in HPSv3's own environment:
it imports only the standard library, torch and hpsv3 (not this package), so the cluster's HPSv3
environment runs this file by its path. metrics/external.py writes its input and reads its output.

    <hpsv3 env>/bin/python src/sparse_guidance/metrics/hpsv3_job.py items.json scores.json \\
        --checkpoint /weights/HPSv3.safetensors --config /weights/HPSv3_7B.yaml --device cuda

items.json: [{"image": path, "prompt": text}, ...]; scores.json: {"scores": [μ per item], ...}:
HPSv3's reward is a (μ, σ) pair per image; the score is μ, the first output (as in HPSv3's README).
Without --checkpoint/--config the inferencer loads its defaults (the Hugging Face cache: pre-download
it on a login node, then set HF_HUB_OFFLINE=1; README, text-to-image track).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items")
    p.add_argument("out")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args(argv)
    import torch
    from hpsv3 import HPSv3RewardInferencer

    with open(a.items) as f:
        items = json.load(f)
    kwargs = {k: v for k, v in (("config_path", a.config), ("checkpoint_path", a.checkpoint)) if v}
    inferencer = HPSv3RewardInferencer(device=a.device, **kwargs)
    scores = []
    with torch.no_grad():
        for i in range(0, len(items), a.batch_size):
            batch = items[i:i + a.batch_size]
            rewards = inferencer.reward(prompts=[b["prompt"] for b in batch], image_paths=[b["image"] for b in batch])
            scores += [float(r[0]) for r in rewards]  # (μ, σ) per image: μ
            print(f"HPSv3: {len(scores)}/{len(items)} images", file=sys.stderr, flush=True)
    tmp = f"{a.out}.tmp"
    with open(tmp, "w") as f:
        json.dump({"scores": scores, "checkpoint": a.checkpoint, "config": a.config, "device": a.device}, f)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
