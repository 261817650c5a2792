"""Test helper: small (image, caption) webdataset shards as img2dataset writes them."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, captions, per_shard=4, size=(40, 48), seed=0, scores=None, missing=()):
    """Tar shards 00000.tar, ... of PNG images (random colours, lossless) with .txt captions and .json
    metadata (``aesthetic`` from ``scores``); sample keys k000000, ... . Samples in ``missing`` get no
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
                    meta["aesthetic"] = scores[i]
                _add(tar, f"{key}.json", json.dumps(meta).encode())
                samples[key] = (arr, captions[i])
    return str(folder / ("{00000..%05d}.tar" % (n_shards - 1))), samples
