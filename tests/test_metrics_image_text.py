"""The scene-text score (metrics/image_text.py): trained on real pairs, it prefers an image's own
caption on held-out scenes."""
from __future__ import annotations

import importlib.util
import random

import pytest

from sparse_guidance import ConfigError
from sparse_guidance.data import Scenes
from sparse_guidance.data import text_encoders as TE
from sparse_guidance.metrics.image_text import NAME, scene_text_scores, train_scene_text_scorer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None
                                or importlib.util.find_spec(TE.MINILM_PACKAGE) is None,
                                reason=f"needs transformers and {TE.MINILM_PACKAGE} ({TE.HINT})")


@pytest.fixture(scope="module")
def trained():
    encoder = TE.TextEncoder("minilm")
    train = Scenes("train", n=1000, seed=0)
    scorer = train_scene_text_scorer(train, TE.prompt_bank(encoder, train.captions), steps=150)
    test = Scenes("test", n=140, seed=0)
    return scorer, test, TE.prompt_bank(encoder, test.captions), train, encoder


def test_held_out_images_score_higher_with_their_own_captions(trained):
    scorer, test, bank, _, _ = trained
    tags = [s["tag"] for s in test.scenes]
    own = scene_text_scores(scorer, test.images, test.targets, tags, bank)
    shuffled = list(test.targets)
    random.Random(0).shuffle(shuffled)
    other = scene_text_scores(scorer, test.images, shuffled, tags, bank)
    assert own["overall"] - other["overall"] > 0.2, (own, other)
    assert set(own["n"]) == set(tags) and sum(own["n"].values()) == 140
    assert NAME == "scene-text score"  # the name tables use: never HPSv3


def test_a_bank_of_other_captions_or_mismatched_counts_are_refused(trained):
    scorer, test, bank, train, _ = trained
    with pytest.raises(ConfigError, match="not that of these scenes' captions"):
        train_scene_text_scorer(train, bank, steps=1)
    with pytest.raises(ConfigError, match="one of each per image"):
        scene_text_scores(scorer, test.images[:3], test.targets[:2], ["colors"] * 3, bank)
