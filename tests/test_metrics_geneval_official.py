"""The official GenEval's formats (djghosh13/geneval): our samples written in the folder layout its
evaluation/evaluate_images.py reads, and its results.jsonl read back as its summary_scores.py
scores it. GenEval itself (mmdet, Mask2Former, CLIP, a GPU) does not run here: the round trip uses
the scenes' exact detector in its place, writing results.jsonl in GenEval's own record form."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sparse_guidance.data.scenes import evaluation_prompts, render
from sparse_guidance.errors import ConfigError
from sparse_guidance.metrics import geneval_official as G
from sparse_guidance.metrics.geneval import detect, evaluate, geneval_scores, train_shape_classifier


@pytest.fixture(scope="module")
def prompts():
    return [{k: v for k, v in p.items() if k != "objects"} | {"_objects": p["objects"]}
            for p in evaluation_prompts(prompts_per_tag=2, seed=0)]


def samples_npz(tmp_path, prompts, per_prompt=3):
    """Real renders of each prompt, the sampler's order (prompt i mod K), as our ADM npz."""
    k = len(prompts)
    labels = np.array([i % k for i in range(k * per_prompt)])
    images = np.stack([render(prompts[p]["_objects"]) for p in labels])
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=images, arr_1=labels)
    return path, images, labels


def test_export_writes_geneval_layout(tmp_path, prompts):
    meta = [{k: v for k, v in p.items() if k != "_objects"} for p in prompts]
    path, images, labels = samples_npz(tmp_path, prompts)
    written = G.export(path, meta, tmp_path / "images")
    assert written == {n: 3 for n in range(len(meta))}
    for n, m in enumerate(meta):
        folder = tmp_path / "images" / f"{n:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == m
        pngs = sorted((folder / "samples").iterdir())
        assert [p.name for p in pngs] == ["0000.png", "0001.png", "0002.png"]
        first = np.flatnonzero(labels == n)[0]
        assert np.array_equal(np.asarray(Image.open(pngs[0])), images[first])  # lossless, in order


def test_results_read_back_as_geneval_scores_them(tmp_path, prompts):
    """Our detector plays Mask2Former: it judges the exported PNGs and writes GenEval's records; read_results
    gives the per-tag accuracy and the mean over tags that geneval_scores gives on the same images."""
    meta = [{k: v for k, v in p.items() if k != "_objects"} for p in prompts]
    path, images, labels = samples_npz(tmp_path, prompts, per_prompt=2)
    G.export(path, meta, tmp_path / "images")
    clf = train_shape_classifier(n=2000, steps=300)
    records = []
    for folder in sorted((tmp_path / "images").iterdir()):
        m = json.loads((folder / "metadata.jsonl").read_text())
        for png in sorted((folder / "samples").iterdir()):
            ok, reason = evaluate(detect(np.asarray(Image.open(png)), clf), m)
            records.append({"filename": str(png), "tag": m["tag"], "prompt": m["prompt"], "correct": ok,
                            "reason": reason, "metadata": json.dumps(m), "details": "{}"})
    with open(tmp_path / "results.jsonl", "w") as f:
        pd.DataFrame(records).to_json(f, orient="records", lines=True)
    got = G.read_results(tmp_path / "results.jsonl")
    want = geneval_scores(images, [meta[p] for p in labels], clf)
    for tag in want["n"]:
        assert got[tag] == pytest.approx(want[tag]) and got["n"][tag] == want["n"][tag]
    assert got["overall"] == pytest.approx(np.mean([want[t] for t in want["n"]]))  # GenEval: every tag present
    assert G.main(["read", str(tmp_path / "results.jsonl"), str(tmp_path / "scores.json")]) == 0
    assert json.loads((tmp_path / "scores.json").read_text())["overall"] == pytest.approx(got["overall"])


def test_bad_inputs_are_named(tmp_path, prompts):
    meta = [{k: v for k, v in p.items() if k != "_objects"} for p in prompts]
    path, _, _ = samples_npz(tmp_path, prompts)
    with pytest.raises(ConfigError, match="prompt indices up to"):
        G.export(path, meta[:3], tmp_path / "a")
    np.savez(tmp_path / "few.npz", arr_0=np.zeros((2, 32, 32, 3), np.uint8), arr_1=np.array([0, 0]))
    with pytest.raises(ConfigError, match="have no image"):
        G.export(tmp_path / "few.npz", meta, tmp_path / "b")
    (tmp_path / "m.jsonl").write_text('{"prompt": "a photo of a cat"}\n')
    with pytest.raises(ConfigError, match="a prompt needs tag, prompt, include"):
        G.read_metadata(tmp_path / "m.jsonl")
    (tmp_path / "r.jsonl").write_text('{"filename": "x"}\n')
    with pytest.raises(ConfigError, match="not GenEval's results.jsonl"):
        G.read_results(tmp_path / "r.jsonl")
