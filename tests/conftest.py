"""Small shared fixtures: tiny models that keep the whole suite fast on a 2-core CPU."""
from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sparse_guidance.models import LabelEmbedder, build_model

# The tiny models here are far too small to gain from intra-op threads, and on a 2-core machine
# that is busy with anything else OpenMP's spinning threads slow every op down by orders of
# magnitude. One thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)
# The same for NumPy/SciPy's BLAS: with a busy neighbour on 2 cores, its spinning second thread turns
# the 3 s eigen-decomposition of a 2048² covariance (every FID) into 25 s.
threadpool_limits(1, user_api="blas")

# Tiny dimensions shared by most model tests: 8x8 latents with patch 2 -> 16 tokens.
TINY = dict(depth=4, hidden_size=32, num_heads=2, input_size=8, num_classes=10)
NUM_CLASSES = TINY["num_classes"]


@torch.no_grad()
def randomize(model: nn.Module, std: float = 0.05, seed: int = 0, keep_pos_embed: bool = True) -> nn.Module:
    """Replace the adaLN-Zero init (output identically zero) by random weights."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if keep_pos_embed and "pos_embed" in name:
            continue
        p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny(sparsity: str = "routing", routes=("1:2",), randomised: bool = True, seed: int = 0, **kw):
    args = {**TINY, **kw}
    if sparsity == "routing":
        args["routes"] = list(routes)
    model = build_model("SiT-T/2", sparsity=sparsity, **args).eval()
    return randomize(model, seed=seed) if randomised else model


def inputs(n: int = 3, seed: int = 1, size: int = 8, channels: int = 4, num_classes: int = NUM_CLASSES):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    t = torch.rand(n, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return x, t, y


@pytest.fixture
def routed_model():
    """Randomised SiT-T/2-sized routing model, depth 4, route 1:2, 16 tokens."""
    return tiny("routing", routes=("1:2",))


@pytest.fixture
def dense_model():
    return tiny("none")


@pytest.fixture
def masked_model():
    return tiny("masking", decoder_depth=2, decoder_width=32, decoder_heads=2)


@pytest.fixture
def batch():
    return inputs()


class ToyModel(nn.Module):
    """A stand-in for a SiT in the sampler: v = x·(scale + y) + gamma_gain·γ + offset.

    Records every call (batch size, γ, labels) so tests can check what the sampler asked for.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, scale: float = 1.0, gamma_gain: float = 1.0,
                 offset: float = 0.0, num_tokens: int = 16):
        super().__init__()
        self.cond_embedder = LabelEmbedder(num_classes, 4)
        self.num_tokens = num_tokens
        self.scale, self.gamma_gain, self.offset = scale, gamma_gain, offset
        self.calls: list[dict] = []

    def forward(self, x, t, y, gamma=0.0, generator=None, keep=None):
        self.calls.append(dict(batch=x.shape[0], gamma=gamma, y=y.clone(), t=t.clone()))
        return x * (self.scale + y.view(-1, 1, 1, 1).to(x.dtype)) + self.gamma_gain * gamma + self.offset


@pytest.fixture
def toy():
    return ToyModel()


@pytest.fixture
def toy_aux():
    return ToyModel(scale=2.0, gamma_gain=3.0, offset=0.25)
