"""Test helpers of the text-to-image track at the paper's scale: small (image, caption) webdataset
shards as img2dataset writes them, and stand-ins for the scorers' own environments with the real
packages' interfaces (hpsv3's HPSv3RewardInferencer(...).reward(prompts=, image_paths=) -> (μ, σ)
per image; GenEval's evaluation/evaluate_images.py <images> --outfile --model-path -> results.jsonl).
The stand-ins test our side of the exchange, not HPSv3's or GenEval's models."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import sys
import textwrap

import numpy as np
from PIL import Image

FAKE_HPSV3 = textwrap.dedent('''
    import numpy as np
    from PIL import Image
    import torch

    class HPSv3RewardInferencer:
        def __init__(self, device="cuda", config_path=None, checkpoint_path=None):
            assert device == "cpu", device

        def reward(self, prompts, image_paths):  # μ: mean pixel / 255 + words / 10; σ: 1
            return [torch.tensor([np.asarray(Image.open(p)).mean() / 255 + len(t.split()) / 10, 1.0])
                    for t, p in zip(prompts, image_paths)]
''')

FAKE_GENEVAL = textwrap.dedent('''
    import argparse, json, os
    import numpy as np
    from PIL import Image
    p = argparse.ArgumentParser()
    p.add_argument("imagedir"); p.add_argument("--outfile"); p.add_argument("--model-path")
    a = p.parse_args()
    assert os.path.isdir(a.model_path)
    with open(a.outfile, "w") as out:
        for folder in sorted(os.listdir(a.imagedir)):
            meta = json.load(open(os.path.join(a.imagedir, folder, "metadata.jsonl")))
            for name in sorted(os.listdir(os.path.join(a.imagedir, folder, "samples"))):
                img = np.asarray(Image.open(os.path.join(a.imagedir, folder, "samples", name)))
                out.write(json.dumps({"tag": meta["tag"], "prompt": meta["prompt"], "correct": bool(img.mean() > 127),
                                      "filename": name}) + "\\n")
''')


def fake_scorers(root) -> dict:
    """Stand-in environments under root: a package hpsv3 (put root/env on PYTHONPATH) and a GenEval
    clone with a detector folder. Returns the metrics settings that point at them."""
    root = Path(root)
    (root / "env" / "hpsv3").mkdir(parents=True)
    (root / "env" / "hpsv3" / "__init__.py").write_text(FAKE_HPSV3)
    (root / "geneval" / "evaluation").mkdir(parents=True)
    (root / "geneval" / "evaluation" / "evaluate_images.py").write_text(FAKE_GENEVAL)
    (root / "geneval" / "models").mkdir()
    return {"hpsv3": {"python": sys.executable, "device": "cpu", "batch_size": 4},
            "geneval_official": {"python": sys.executable, "repo": str(root / "geneval"),
                                 "detector": str(root / "geneval" / "models")}}


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, captions, per_shard=4, size=(40, 48), seed=0, scores=None, missing=(), score_field="aesthetic"):
    """Tar shards 00000.tar, ... of PNG images (random colours, lossless) with .txt captions and .json
    metadata (``score_field`` from ``scores``); sample keys k000000, ... . Samples in ``missing`` get no
    caption (negative index: no image). Returns (pattern, {key: (image array, caption)})."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng, samples = np.random.default_rng(seed), {}
    n_shards = -(-len(captions) // per_shard)
    for s in range(n_shards):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for i in range(s * per_shard, min((s + 1) * per_shard, len(captions))):
                key = f"k{i:06d}"
                arr = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                if -i - 1 not in missing:
                    _add(tar, f"{key}.png", buf.getvalue())
                if i not in missing:
                    _add(tar, f"{key}.txt", captions[i].encode())
                meta = {"key": key, "caption": None}
                if scores is not None:
                    meta[score_field] = scores[i]
                _add(tar, f"{key}.json", json.dumps(meta).encode())
                samples[key] = (arr, captions[i])
    return str(folder / ("{00000..%05d}.tar" % (n_shards - 1))), samples
