"""The external scorers of the text-to-image track at the paper's scale (metrics/external.py): HPSv3
and GenEval's own scripts, each run as a child process with its environment's python. Here those
environments are stand-ins written by the test with the real packages' interfaces (hpsv3's
HPSv3RewardInferencer(...).reward(prompts=, image_paths=) -> (μ, σ) per image; GenEval's
evaluation/evaluate_images.py <images> --outfile --model-path -> results.jsonl): what is tested is
our side (files out, the command, scores in, failures named), not HPSv3's or GenEval's models."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sparse_guidance.errors import ConfigError
from sparse_guidance.metrics import external
from t2i_helpers import fake_scorers

def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_hpsv3_scores_are_the_mean_mu_per_category(tmp_path, monkeypatch):
    spec = {**fake_scorers(tmp_path)["hpsv3"], "checkpoint": "/w/HPSv3.safetensors", "batch_size": 2}
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "env"))
    images, prompts = _images(5), ["a cat", "a red car", "one", "two dogs", "a tall old tree"]
    tags = ["animals", "transportation", "others", "animals", "plants"]
    out = external.hpsv3_scores(images, prompts, tags, spec, tmp_path / "work")
    mu = images.reshape(5, -1).mean(1) / 255 + np.array([len(p.split()) for p in prompts]) / 10
    assert out["animals"] == pytest.approx((mu[0] + mu[3]) / 2) and out["plants"] == pytest.approx(mu[4])
    assert out["overall"] == pytest.approx(mu.mean()) and out["n"] == {"animals": 2, "transportation": 1,
                                                                       "others": 1, "plants": 1}
    assert len(json.loads((tmp_path / "work" / "items.json").read_text())) == 5  # kept for inspection


def test_a_failing_or_missing_scorer_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "nothing"))  # no hpsv3 to import
    with pytest.raises(ConfigError, match="(?s)HPSv3 failed .*No module named 'hpsv3'"):
        external.hpsv3_scores(_images(1), ["x"], ["others"], {"python": sys.executable}, tmp_path / "w")
    with pytest.raises(ConfigError, match="cannot run"):
        external.hpsv3_scores(_images(1), ["x"], ["others"], {"python": str(tmp_path / "no-python")}, tmp_path / "w")
    with pytest.raises(ConfigError, match="metrics.hpsv3.python is not set"):
        external.hpsv3_scores(_images(1), ["x"], ["others"], {}, tmp_path / "w")
    with pytest.raises(ConfigError, match="holds no evaluation/evaluate_images.py"):
        external.geneval_official_scores(_images(1), [0], [], {"python": sys.executable, "repo": str(tmp_path)},
                                         tmp_path / "w")


def test_geneval_official_runs_genevals_script_on_our_layout(tmp_path):
    spec = fake_scorers(tmp_path)["geneval_official"]
    images = np.concatenate([np.full((2, 8, 8, 3), 255, np.uint8), np.zeros((2, 8, 8, 3), np.uint8)])
    meta = [{"tag": "counting", "prompt": "two cats", "include": []}, {"tag": "colors", "prompt": "a red car",
                                                                        "include": []}]
    (tmp_path / "work" / "images" / "00007" / "samples").mkdir(parents=True)  # an earlier export's: removed
    out = external.geneval_official_scores(images, np.array([0, 1, 0, 1]), meta, spec, tmp_path / "work")  # i mod 2
    # prompt 0 got images 0 (white: correct) and 2 (black), prompt 1 images 1 (white) and 3 (black)
    assert out["counting"] == 0.5 and out["colors"] == 0.5 and out["overall"] == 0.5
    assert out["n"] == {"counting": 2, "colors": 2} and "official" in out["name"]
