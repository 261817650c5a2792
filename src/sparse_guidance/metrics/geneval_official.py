"""The official GenEval (Ghosh et al., djghosh13/geneval) on our samples: its folder layout out, its
results in. GenEval runs in its own environment (mmdet 2.x, Mask2Former Swin-S, open_clip ViT-L-14;
a GPU), so this module only converts; the cluster runs GenEval's own scripts in between.

    python -m sparse_guidance.metrics.geneval_official export samples.npz evaluation_metadata.jsonl geneval/images
    # in GenEval's environment (README, text-to-image track: how to install it and its weights offline):
    python <geneval>/evaluation/evaluate_images.py geneval/images --outfile geneval/results.jsonl \\
        --model-path <folder with mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth>
    python -m sparse_guidance.metrics.geneval_official read geneval/results.jsonl scores.json

The layout GenEval reads: ``<images>/<NNNNN>/metadata.jsonl`` (prompt N's line of
evaluation_metadata.jsonl) and ``<images>/<NNNNN>/samples/<KKKK>.png``. Our samples (ADM npz) carry
the prompt index of each image in ``arr_1`` (the sampler cycles through the prompts: i mod K), so
prompt N's images are those with arr_1 == N, in order. GenEval's score of a tag is the fraction of its
images judged correct, the overall score the mean over tags (its evaluation/summary_scores.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..data.prompt_sets import load_prompt_set
from ..errors import ConfigError
from ..io import atomic_open, write_json

SIX_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def read_metadata(path) -> list[dict]:
    """GenEval's evaluation_metadata.jsonl: one prompt per line ({tag, prompt, include, exclude, ...});
    read as the track's prompt sets read it (data/prompt_sets.py, format geneval)."""
    return load_prompt_set({"format": "geneval", "path": str(path)})


def export(samples, metadata: list[dict], out_dir) -> dict:
    """Write an ADM npz of samples (arr_0 uint8 NHWC, arr_1 prompt indices) in GenEval's layout
    (export_arrays); returns {prompt index: images written}."""
    with np.load(samples) as z:
        if "arr_1" not in z.files:
            raise ConfigError(f"{str(samples)!r} carries no prompt indices (arr_1); sample it with the workflow.")
        return export_arrays(z["arr_0"], z["arr_1"], metadata, out_dir, str(samples))


def export_arrays(images, prompts, metadata: list[dict], out_dir, what: str = "the samples") -> dict:
    """Images uint8 (N, H, W, 3) with their prompt indices (N,) in GenEval's layout under out_dir,
    which holds nothing else afterwards (GenEval scores every folder it finds). Every prompt needs
    at least one image. Returns {prompt index: images written}."""
    import shutil

    from PIL import Image

    prompts = np.asarray(prompts).astype(np.int64)
    if prompts.min() < 0 or prompts.max() >= len(metadata):
        raise ConfigError(f"{what} has prompt indices up to {prompts.max()}, the metadata {len(metadata)} "
                          "prompts: sample with the same evaluation_metadata.jsonl.")
    missing = sorted(set(range(len(metadata))) - set(prompts.tolist()))
    if missing:
        raise ConfigError(f"prompts {missing[:5]} have no image; draw at least one per prompt (GenEval: 4).")
    out, written = Path(out_dir), {}
    if out.exists():
        shutil.rmtree(out)  # images of an earlier export would be scored too
    for n, meta in enumerate(metadata):
        folder = out / f"{n:05d}" / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / f"{n:05d}" / "metadata.jsonl", "w") as f:
            json.dump(meta, f)
        for k, i in enumerate(np.flatnonzero(prompts == n)):
            with atomic_open(folder / f"{k:04d}.png") as f:
                Image.fromarray(images[i]).save(f, format="PNG")
        written[n] = int((prompts == n).sum())
    return written


def read_results(path) -> dict:
    """GenEval's results.jsonl (one image per line: tag, correct, ...) -> {tag: fraction correct, ...,
    "overall": the mean over the tags present (summary_scores.py), "n": {tag: images}}."""
    import pandas as pd

    df = pd.read_json(path, orient="records", lines=True)
    if not {"tag", "correct"} <= set(df.columns):
        raise ConfigError(f"{str(path)!r} is not GenEval's results.jsonl (it needs the columns tag and correct).")
    scores = {tag: float(g["correct"].mean()) for tag, g in df.groupby("tag", sort=False)}
    return {**scores, "overall": float(np.mean(list(scores.values()))),
            "n": {tag: int(len(g)) for tag, g in df.groupby("tag", sort=False)},
            "name": "GenEval (official: Mask2Former + CLIP)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="our samples -> GenEval's image folder")
    e.add_argument("samples")
    e.add_argument("metadata", help="GenEval's prompts/evaluation_metadata.jsonl (the prompts the samples were drawn for)")
    e.add_argument("out_dir")
    r = sub.add_parser("read", help="GenEval's results.jsonl -> our scores JSON")
    r.add_argument("results")
    r.add_argument("out")
    a = p.parse_args(argv)
    try:
        if a.cmd == "export":
            n = export(a.samples, read_metadata(a.metadata), a.out_dir)
            print(f"wrote {sum(n.values())} images of {len(n)} prompts to {a.out_dir}")
        else:
            scores = read_results(a.results)
            write_json(a.out, scores)
            print(json.dumps({k: v for k, v in scores.items() if k != "n"}, indent=1))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
