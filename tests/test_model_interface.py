"""A token-sparse model of one's own: what the sampler, the FLOP counter and training need of it
(models/interface.py), and the error that names a missing attribute where the model enters."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from conftest import inputs, tiny
from sparse_guidance.errors import ConfigError
from sparse_guidance.flops import FlopCounter
from sparse_guidance.models import (REQUIREMENTS, build_trdit, check_model_interface, gather_tokens,
                                    scatter_tokens, select_tokens)
from sparse_guidance.models.adapters import EDMDenoiser
from sparse_guidance.models.interface import MASKING, USES
from sparse_guidance.sampling import sample
from sparse_guidance.train import train

TRAIN = dict(steps=1, batch_size=2, ckpt_every=1, log_every=1, save_steps=[])


class MyModel(nn.Module):
    """A user's own routed model: the whole interface by hand, the work done by a tiny SiT's parts."""

    def __init__(self):
        super().__init__()
        self.net = tiny("routing", routes=("1:2",))
        self.cond_embedder = self.net.y_embedder  # num_classes, null(y), random(y, generator)
        self.in_channels, self.input_size, self.num_tokens = 4, 8, 16
        self.train_gamma = 0.5

    def forward(self, x, t, y, gamma=0.0, generator=None, keep=None):
        return self.net(x, t, y, gamma=gamma, generator=generator, keep=keep)  # (N, C, H, W)


class Embedder(nn.Module):
    """A condition embedder with only the methods given."""

    def __init__(self, num_classes=10, **methods):
        super().__init__()
        self.num_classes = num_classes
        for name, fn in methods.items():
            setattr(self, name, fn)


def without(model: MyModel, attr: str) -> MyModel:
    """``model`` lacking ``attr`` ("a" or "cond_embedder.b")."""
    if attr.startswith("cond_embedder."):
        inner = attr.split(".", 1)[1]
        emb = model.cond_embedder
        methods = {"null": emb.null, "random": emb.random}
        methods.pop(inner, None)
        del model.cond_embedder
        model.cond_embedder = Embedder(**methods)
        if inner == "num_classes":
            del model.cond_embedder.num_classes
    else:
        delattr(model, attr)
    return model


def enter(use: str, model, tmp_path):
    """Give ``model`` to the entry point of ``use``."""
    if use in ("sampling", "forward"):
        return sample(model, "cfg", torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), steps=1)
    if use == "flops":
        return FlopCounter(model)(0.5)
    return train(model, [(torch.randn(4, 8, 8), 1)] * 4, TRAIN, tmp_path / "run", progress=False)


CASES = [(use, attr, purpose) for use in ("sampling", "flops", "training")
         for attr, purpose in REQUIREMENTS[use] if attr != "parameters"]


@pytest.mark.parametrize("use, attr, purpose", CASES, ids=[f"{u}-{a}" for u, a, _ in CASES])
def test_a_missing_attribute_is_named_with_what_it_is_for(use, attr, purpose, tmp_path):
    with pytest.raises(ConfigError) as e:
        enter(use, without(MyModel(), attr), tmp_path)
    msg = str(e.value)
    assert f"has no attribute {attr!r}" in msg and purpose in msg and use in msg
    assert not (tmp_path / "run" / "last.pt").exists()  # refused before anything is written


def test_own_model_samples_counts_and_trains(tmp_path):
    """The whole interface and nothing else: every entry point takes it, with the SiT's numbers."""
    model = MyModel()
    noise, y = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2])
    got = sample(model, "sg", noise, y, steps=2, generator=torch.Generator().manual_seed(1))
    ref = sample(model.net, "sg", noise, y, steps=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(got, ref)  # bit-identical to the SiT it wraps
    assert FlopCounter(model)(0.5) == FlopCounter(model.net)(0.5)
    train(model, [(torch.randn(4, 8, 8), 1)] * 4, TRAIN, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "last.pt").exists()


def test_registered_models_and_adapters_meet_every_use():
    models = [tiny("routing"), tiny("none"), tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2),
              EDMDenoiser(tiny("routing")),
              build_trdit("TR-DiT-T", input_size=8, in_channels=4, num_prompts=3, routes=["1:2"], train_gamma=0.5)]
    for model in models:
        for use in USES:
            assert check_model_interface(model, use) is model


def test_forward_without_the_keywords_is_refused(tmp_path):
    class NoGamma(MyModel):
        def forward(self, x, t, y):
            return self.net(x, t, y)

    for use, word in (("sampling", "'gamma'"), ("flops", "'keep'"), ("training", "'keep'")):
        with pytest.raises(ConfigError, match=rf"takes no keyword argument\(s\) [^;]*{word}.*Add them"):
            enter(use, NoGamma(), tmp_path)


def test_a_module_without_forward_and_a_non_callable_are_refused():
    with pytest.raises(ConfigError, match="cannot be called"):
        check_model_interface(nn.Module(), "sampling")
    with pytest.raises(ConfigError, match="cannot be called"):
        check_model_interface(types.SimpleNamespace(cond_embedder=None), "sampling")
    with pytest.raises(ConfigError, match="unknown model use 'sample'"):
        check_model_interface(MyModel(), "sample")


def test_aux_model_needs_only_a_forward():
    """AutoGuidance's aux model runs a branch; the conditions come from the main model."""
    main = MyModel()
    aux = MyModel()
    del aux.cond_embedder
    x = sample({"main": main, "aux": aux}, "autoguidance", torch.randn(2, 4, 8, 8), torch.tensor([0, 3]), steps=1)
    assert x.shape == (2, 4, 8, 8)
    with pytest.raises(ConfigError, match="'main' .* has no attribute 'cond_embedder'"):
        sample({"main": aux, "aux": main}, "autoguidance", torch.randn(2, 4, 8, 8), torch.tensor([0, 3]), steps=1)


def test_masking_training_needs_patch_size_and_grid(tmp_path):
    for attr, purpose in MASKING:
        model = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
        delattr(model, attr)
        with pytest.raises(ConfigError, match=f"has no attribute '{attr}', which training needs"):
            enter("training", model, tmp_path)


def test_token_primitives_are_exported_from_models():
    x, _, _ = inputs()
    tokens = torch.randn(3, 16, 8)                                         # (N, T, D)
    keep = select_tokens(3, 16, 0.25, torch.Generator().manual_seed(0))  # (N, K) kept indices
    assert keep.shape == (3, 12) and x.shape[0] == 3
    kept = gather_tokens(tokens, keep)                                     # (N, K, D)
    assert torch.equal(scatter_tokens(torch.zeros_like(tokens), keep, kept).gather(
        1, keep[..., None].expand(-1, -1, 8)), kept)
    assert torch.equal(scatter_tokens(tokens, keep, kept), tokens)
