"""GenEval's rules with the detector by construction (metrics/geneval.py), on real scene renders."""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from sparse_guidance import ConfigError
from sparse_guidance.data import build_codec
from sparse_guidance.data.scenes import Scenes, make_scene, relative_position, render
from sparse_guidance.metrics import geneval as G


@pytest.fixture(scope="module")
def classifier():
    return G.train_shape_classifier()


@pytest.fixture(scope="module")
def real():
    return Scenes("test", n=350, seed=0, output="uint8")


def test_real_renders_score_near_one_and_mismatched_captions_do_not(classifier, real):
    scores = G.check_detector(classifier, n=350)
    assert all(scores[t] >= 0.95 for t in G.GENEVAL_TAGS) and scores["overall"] >= 0.98, scores
    shuffled = list(real.scenes)
    random.Random(0).shuffle(shuffled)
    wrong = G.geneval_scores(real.images.numpy(), shuffled, classifier)
    assert wrong["overall"] < 0.3, wrong
    assert sum(wrong["n"].values()) == 350


def test_the_shape_classifier_names_rendered_shapes(classifier):
    x, y = G.shape_examples(500, seed=11, flip_prob=0.0)
    assert (classifier(x).argmax(1) == y).float().mean() > 0.98


def scene(tag, seed=0):
    s = make_scene(np.random.default_rng(seed), tag)
    return s, render(s["objects"])


@pytest.mark.parametrize("tag", G.GENEVAL_TAGS)
def test_each_rule_fails_when_the_image_breaks_it(classifier, tag):
    s, img = scene(tag, seed=3)
    assert G.evaluate(G.detect(img, classifier), s)[0], s["prompt"]
    broken = copy.deepcopy(s["objects"])
    if tag == "counting":  # one object fewer than the prompt's number
        broken = broken[:-1]
    elif tag in ("colors", "color_attr"):
        broken[0]["color"] = "white" if broken[0]["color"] != "white" else "black"
    elif tag == "position":  # swap the two objects' places
        for k in ("cx", "cy", "box"):
            broken[0][k], broken[1][k] = broken[1][k], broken[0][k]
    else:  # an object missing
        broken = broken[:-1]
    ok, why = G.evaluate(G.detect(render(broken), classifier), s)
    assert not ok and why, (s["prompt"], broken)


def test_counting_excludes_one_object_too_many():
    meta = {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}]}
    circle = {"box": [0, 0, 8, 8], "color": "red", "confidence": 0.99}
    assert G.evaluate({"circle": [circle] * 2}, meta)[0]
    assert G.evaluate({"circle": [circle] * 3}, meta) == (False, "expected circle<3, found 3")
    unsure = {**circle, "confidence": 0.5}  # above GenEval's 0.3, below its counting threshold 0.9
    assert not G.evaluate({"circle": [circle, unsure]}, meta)[0]


def test_relative_position_follows_geneval():
    assert relative_position([0, 10, 8, 18], [20, 10, 28, 18]) == {"left of"}
    assert relative_position([20, 0, 28, 8], [20, 20, 28, 28]) == {"above"}
    assert relative_position([0, 0, 8, 8], [1, 1, 9, 9]) == set()  # closer than the threshold: no relation
    assert relative_position([0, 0, 8, 8], [20, 20, 28, 28]) == {"left of", "above"}  # a diagonal: both


def test_specks_are_not_objects_and_colours_are_named(classifier):
    img = render([{"shape": "square", "color": "blue", "cx": 16.0, "cy": 16.0, "r": 5.0}])
    img[1:3, 1:3] = (220, 30, 30)  # a 4-pixel red speck
    found = G.detect(img, classifier)
    assert list(found) == ["square"] and [o["color"] for o in found["square"]] == ["blue"]
    assert found["square"][0]["confidence"] > G.COUNTING_THRESHOLD


def test_bad_inputs_say_what_is_expected(classifier):
    with pytest.raises(ConfigError, match=r"uint8 \(H, W, 3\)"):
        G.detect(np.zeros((32, 32)), classifier)
    with pytest.raises(ConfigError, match="one per image"):
        G.geneval_scores(np.zeros((2, 32, 32, 3), np.uint8), [], classifier)


def test_noise_finds_almost_no_objects(classifier, real):
    """Decoded Gaussian latents (what an untrained model samples): blobs of saturated black and white
    pixels, which the classifier's clutter class rejects."""
    z = torch.randn(350, 12, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = ((build_codec("space-to-depth", image_channels=3).decode(z) + 1) * 127.5).round().clamp(0, 255)
    scores = G.geneval_scores(noise.to(torch.uint8).permute(0, 2, 3, 1).numpy(), real.scenes, classifier)
    assert scores["overall"] < 0.15, scores
