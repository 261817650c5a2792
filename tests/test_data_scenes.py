"""The compositional scenes (data/scenes.py): every caption is true of its image, in GenEval's terms."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sparse_guidance import ConfigError
from sparse_guidance.data import LatentDataset, build_codec, encode_dataset
from sparse_guidance.data.scenes import (BACKGROUND, COLORS, NUMBERS, SHAPES, TAGS, Scenes, make_scene,
                                         relation_holds, render, shape_mask)

N = 700  # 100 scenes of each tag


@pytest.fixture(scope="module")
def scenes():
    return Scenes("train", n=N, seed=3)


def test_every_tag_writes_its_template(scenes):
    shape, color = "|".join(SHAPES), "|".join(COLORS)
    patterns = {
        "single_object": rf"a photo of an? ({shape})",
        "two_object": rf"a photo of an? ({shape}) and an? ({shape})",
        "counting": rf"a photo of ({'|'.join(NUMBERS[2:])}) ({shape})e?s",
        "colors": rf"a photo of an? ({color}) ({shape})",
        "position": rf"a photo of an? ({shape}) (left of|right of|above|below) an? ({shape})",
        "color_attr": rf"a photo of an? ({color}) ({shape}) and an? ({color}) ({shape})",
        "keywords": rf"(({color}) ({shape}))(, ({color}) ({shape})){{0,3}}",
    }
    assert {s["tag"] for s in scenes.scenes} == set(TAGS)
    for s in scenes.scenes:
        assert re.fullmatch(patterns[s["tag"]], s["prompt"]), s


def test_each_scene_shows_what_its_metadata_says(scenes):
    for s, img in zip(scenes.scenes, scenes.images.permute(0, 2, 3, 1).numpy()):
        objs = s["objects"]
        assert 1 <= len(objs) <= 4
        masks = [shape_mask(o["shape"], o["cx"], o["cy"], o["r"]) for o in objs]
        assert sum(m.astype(int) for m in masks).max() <= 1  # no two objects overlap
        for o, m in zip(objs, masks):
            assert m.sum() >= 12 and (img[m] == COLORS[o["color"]]).all()  # visible, in its own colour
        assert (img[~np.any(masks, axis=0)] == BACKGROUND).all()
        for want in s["include"]:  # GenEval's include rules: class counts, colours, relations
            of_class = [o for o in objs if o["shape"] == want["class"]]
            assert len(of_class) == want["count"], s
            if "color" in want:
                assert of_class[0]["color"] == want["color"], s
            if "position" in want:
                rel, ref = want["position"]
                other = [o for o in objs if o["shape"] == s["include"][ref]["class"]][0]
                assert relation_holds(of_class[0], rel, other), s
        for no in s["exclude"]:
            assert sum(o["shape"] == no["class"] for o in objs) < no["count"]


def test_captions_are_the_conditions(scenes):
    assert scenes.classes == scenes.captions == sorted(set(scenes.captions))
    assert [scenes.captions[y] for y in scenes.targets] == [s["prompt"] for s in scenes.scenes]
    x, y = scenes[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and -1 <= float(x.min()) and float(x.max()) <= 1
    assert y == scenes.targets[5]
    raw, _ = Scenes("train", n=8, seed=3, output="uint8")[5 % 8]
    assert raw.dtype == torch.uint8


def test_scenes_are_reproducible_and_splits_differ():
    a, b = Scenes("train", n=20, seed=1), Scenes("train", n=20, seed=1)
    assert torch.equal(a.images, b.images) and a.targets == b.targets
    assert not torch.equal(a.images, Scenes("test", n=20, seed=1).images)
    assert torch.equal(Scenes("train", n=30, seed=1).images[:20], a.images)  # scene i depends on i only
    one = make_scene(np.random.default_rng(0), "position")
    assert (render(one["objects"]) == render(one["objects"])).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split 'val'"), ({"n": 0}, "at least one image"), ({"tags": ["faces"]}, "scene tags"),
    ({"output": "png"}, "output='png'")])
def test_bad_arguments_name_the_choice(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Scenes(**{"n": 4, **kwargs})


def test_scenes_encode_to_latents_with_their_captions_as_classes(tmp_path):
    """The latent pipeline takes scenes unchanged: 3×32×32 RGB -> 12×16×16 through the lossless
    space-to-depth codec, caption indices as labels, the caption bank's size as num_classes."""
    ds = Scenes("train", n=24, seed=0)
    codec = build_codec("space-to-depth", image_channels=3)
    encode_dataset(ds, codec, tmp_path / "lat", shard_size=10, batch_size=8, progress=False)
    lat = LatentDataset(tmp_path / "lat")
    assert tuple(lat.latent_shape) == (12, 16, 16) and lat.num_classes == len(ds.captions) and len(lat) == 24
    z, y = lat[7]
    assert y == ds.targets[7]
    back = codec.decode(torch.as_tensor(np.asarray(z))[None].float())[0]
    assert torch.equal(((back + 1) * 127.5).round().to(torch.uint8), ds.images[7])  # lossless
