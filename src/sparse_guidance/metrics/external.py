"""The text-to-image track's scorers at the paper's scale, each run in its own environment as a
child process of the evaluate job (they pin other versions of torch, transformers, mmdet):

- ``hpsv3``: HPSv3 (Table 4): metrics/hpsv3_job.py with the HPSv3 environment's python; the
  score per category (the prompts' tags: HPSv3's benchmark categories) and overall, the mean over
  every image.
- ``geneval_official``: GenEval's own evaluation/evaluate_images.py (Table 5; Mask2Former and
  CLIP) on our samples in its folder layout (geneval_official.export), read back with
  geneval_official.read_results.

The settings (``metrics.hpsv3``, ``metrics.geneval_official``) name the environments' python, the
scorer's files and weights (pre-downloaded; README, text-to-image track). Work files go to
``work_dir`` and are kept, so a scorer's inputs and raw outputs can be inspected.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import atomic_open
from . import geneval_official

HPSV3_JOB = Path(__file__).with_name("hpsv3_job.py")


def _run(cmd: list[str], what: str, log: Path):
    try:
        with open(log, "w") as f:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    except OSError as e:
        raise ConfigError(f"{what}: cannot run {cmd[0]!r} ({e}); set the python of its environment.") from e
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise ConfigError(f"{what} failed (exit {done.returncode}; log {str(log)!r}):\n{tail}")


def _python(spec: dict, name: str) -> str:
    if not spec.get("python"):
        raise ConfigError(f"metrics.{name}.python is not set: give the python of {name}'s own environment "
                          "(README, text-to-image track).")
    return str(spec["python"])


def hpsv3_scores(images: np.ndarray, prompts: list[str], tags: list[str], spec: dict, work_dir) -> dict:
    """HPSv3's μ of each image (uint8 (N, H, W, 3)) against its prompt -> {tag: mean, ..., "overall":
    the mean over all images, "n": {tag: images}, "name"}."""
    from PIL import Image

    if not len(images) == len(prompts) == len(tags):
        raise ConfigError(f"HPSv3: {len(images)} images, {len(prompts)} prompts and {len(tags)} tags; give one each.")
    work = Path(work_dir)
    (work / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i, (img, prompt) in enumerate(zip(images, prompts)):
        path = work / "images" / f"{i:06d}.png"
        with atomic_open(path) as f:
            Image.fromarray(np.asarray(img)).save(f, format="PNG")
        items.append({"image": str(path.resolve()), "prompt": prompt})
    (work / "items.json").write_text(json.dumps(items))
    # run from a copy beside its inputs: run from its folder, this package's metrics modules (evaluate,
    # stats, ...) would be top-level modules of HPSv3's environment
    shutil.copyfile(HPSV3_JOB, work / HPSV3_JOB.name)
    cmd = [_python(spec, "hpsv3"), str(work / HPSV3_JOB.name), str(work / "items.json"), str(work / "scores.json"),
           "--device", spec.get("device", "cuda"), "--batch-size", str(spec.get("batch_size", 8))]
    for flag in ("checkpoint", "config"):
        if spec.get(flag):
            cmd += [f"--{flag}", str(spec[flag])]
    _run(cmd, "HPSv3", work / "hpsv3.log")
    scores = np.asarray(json.loads((work / "scores.json").read_text())["scores"], np.float64)
    if len(scores) != len(items) or not np.isfinite(scores).all():
        raise ConfigError(f"HPSv3 gave {len(scores)} scores for {len(items)} images (or NaN); see {str(work)!r}.")
    by_tag: dict[str, list[float]] = {}
    for s, t in zip(scores, tags):
        by_tag.setdefault(t, []).append(float(s))
    return {**{t: float(np.mean(v)) for t, v in by_tag.items()}, "overall": float(scores.mean()),
            "n": {t: len(v) for t, v in by_tag.items()}, "name": "HPSv3"}


def geneval_official_scores(images: np.ndarray, prompts, metadata: list[dict], spec: dict, work_dir) -> dict:
    """GenEval's own scripts on images uint8 (N, H, W, 3) drawn for the prompts of indices ``prompts``
    (N,) of ``metadata`` -> its scores per tag."""
    repo = Path(str(spec.get("repo") or "")).expanduser()
    script = repo / "evaluation" / "evaluate_images.py"
    if not spec.get("repo") or not script.is_file():
        raise ConfigError(f"metrics.geneval_official.repo={spec.get('repo')!r} holds no evaluation/evaluate_images.py; "
                          "give a clone of djghosh13/geneval.")
    if not spec.get("detector"):
        raise ConfigError("metrics.geneval_official.detector is not set: give the folder with GenEval's Mask2Former "
                          "weights (its evaluation/download_models.sh).")
    work = Path(work_dir)
    geneval_official.export_arrays(images, prompts, metadata, work / "images")
    cmd = [_python(spec, "geneval_official"), str(script), str(work / "images"), "--outfile",
           str(work / "results.jsonl"), "--model-path", str(spec["detector"])]
    _run(cmd, "GenEval", work / "geneval.log")
    return geneval_official.read_results(work / "results.jsonl")
