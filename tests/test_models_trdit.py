"""TR-DiT (models/trdit.py, llama.py, text.py): Llama-style blocks, axial RoPE, prompt conditions,
TREAD routing with gathered positions, the 2.5B parameter count, and the sampler, guidance and FLOP
counter taking it unchanged."""
from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from conftest import randomize
from script_helpers import load_script
from sparse_guidance import ConfigError
from sparse_guidance import throughput as TP
from sparse_guidance.flops import FlopCounter, recipe_gflops
from sparse_guidance.models import on_meta
from sparse_guidance.models.llama import apply_rope, axial_rope_angles, grid_positions, swiglu_hidden
from sparse_guidance.models.sit import TimestepEmbedder
from sparse_guidance.models.sparsity import gather_tokens, scatter_tokens
from sparse_guidance.models.trdit import FREQUENCY_SIZE, TRDIT_SIZES, build_trdit
from sparse_guidance.sampling import sample

PROMPTS, LEN, TEXT = 5, 6, 16


def tiny_trdit(routes=("1:2",), seed=0, **kw):
    """Depth 4, width 32, 2 heads (head width 16), 8x8 latents -> 16 tokens, a bank of 5 prompts."""
    model = build_trdit("TR-DiT-T", depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=4,
                        num_prompts=PROMPTS, text_dim=TEXT, text_len=LEN, routes=list(routes), **kw).eval()
    randomize(model, std=0.3, seed=seed)  # large enough for attention to be far from uniform
    for m in model.modules():
        if isinstance(m, nn.RMSNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(PROMPTS + 1, LEN, dtype=torch.bool)
    mask[:, 4:] = False  # two padding tokens per prompt
    mask[-1, 1:] = False  # the empty prompt: its start token only
    model.y_embedder.set_bank(torch.randn(PROMPTS + 1, LEN, TEXT, generator=g), mask)
    return model


def batch(n=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 8, 8, generator=g), torch.rand(n, generator=g), torch.randint(0, PROMPTS, (n,), generator=g)


@torch.no_grad()
def forward_with_positions_not_gathered(model, x, t, y, keep):
    """The wrong routing: tokens gathered, but each kept token given the angle of position k (the
    first K positions), as if the positional indices were not masked with the tokens."""
    n = x.shape[0]
    tokens = model.x_embedder(x).flatten(2).transpose(1, 2)
    angles = model.rope_angles.expand(n, -1, -1)
    t_emb = model.t_embedder(TimestepEmbedder.frequencies(t, FREQUENCY_SIZE))
    t6 = model.t_block(torch.nn.functional.silu(t_emb)).view(n, 6, -1)
    context, mask = model.y_embedder(y)
    (route,) = model.routes
    for i, block in enumerate(model.blocks):
        if i == route.start:
            saved, tokens = tokens, gather_tokens(tokens, keep)
            first = angles[:, :keep.shape[1]]
        tokens = block(tokens, first if route.start <= i <= route.end else angles, t6, context, mask)
        if i == route.end:
            tokens = scatter_tokens(saved, keep, tokens)
    shift, scale = (model.final_table[None] + t_emb[:, None]).unbind(1)
    out = model.final_linear(model.final_norm(tokens) * (1 + scale[:, None]) + shift[:, None])
    return model.unpatchify(out)


@torch.no_grad()
def test_a_permuted_token_order_with_gathered_positions_equals_the_dense_forward():
    model = tiny_trdit(routes=("1:2",))
    x, t, y = batch()
    dense = model(x, t, y)
    perm = torch.stack([torch.randperm(model.num_tokens, generator=torch.Generator().manual_seed(i))
                        for i in range(3)])  # (N, T): every token kept, in another order
    assert torch.allclose(model(x, t, y, keep=perm), dense, atol=1e-5)
    wrong = forward_with_positions_not_gathered(model, x, t, y, perm)
    assert (wrong - dense).abs().max() > 1e-2  # the first K positions instead: not the dense model
    assert torch.allclose(forward_with_positions_not_gathered(model, x, t, y, perm.sort(1).values), dense,
                          atol=1e-5)  # (the helper itself is the dense model when the order is kept)


@torch.no_grad()
def test_gamma_zero_is_dense_and_routing_drops_tokens():
    model = tiny_trdit()
    x, t, y = batch()
    assert torch.equal(model(x, t, y, gamma=0.0), model(x, t, y))
    routed = model(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0))
    assert routed.shape == (3, 4, 8, 8) and (routed - model(x, t, y)).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="has no routes"):
        tiny_trdit(routes=())(x, t, y, gamma=0.5)


def test_axial_rope_is_a_rotation_that_depends_on_the_offset_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(pq, pk):
        aq = axial_rope_angles(torch.tensor([[pq]], dtype=torch.float32), 16)
        ak = axial_rope_angles(torch.tensor([[pk]], dtype=torch.float32), 16)
        return float((apply_rope(q, aq) * apply_rope(k, ak)).sum())

    rotated = apply_rope(q, axial_rope_angles(torch.tensor([[[3.0, 5.0]]]), 16))
    assert torch.allclose(rotated.norm(), q.norm())
    assert score((1, 2), (4, 7)) == pytest.approx(score((3, 0), (6, 5)), abs=1e-5)  # same (Δh, Δw)
    assert score((1, 2), (4, 7)) != pytest.approx(score((1, 2), (7, 4)), abs=1e-3)  # h and w are separate axes
    assert grid_positions(3).tolist()[:4] == [[0, 0], [0, 1], [0, 2], [1, 0]]
    with pytest.raises(ConfigError, match="divisible by 4"):
        axial_rope_angles(torch.zeros(1, 2), 6)


def test_llama_style_layers_have_no_biases():
    model = tiny_trdit()
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(m.bias is None for m in layers)
    assert sum(isinstance(m, nn.RMSNorm) for m in model.modules()) == 3 * 4 + 2 * 2 + 1  # blocks, refiner, final
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert swiglu_hidden(2048) == 5504 and swiglu_hidden(2048) >= 8 * 2048 / 3


def test_trdit_2p5b_has_2p5b_parameters_with_adaln_single():
    """Table A1 built on the meta device, the frozen text encoder apart: within 5 % of 2.5B. DiT's
    per-block adaLN-Zero (a D -> 6D linear with bias in each block instead of one shared) ≈ 3.3B."""
    with on_meta():
        model = build_trdit("TR-DiT-2.5B", routes=["2:30"], train_gamma=0.5)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 2.5e9 - 1) < 0.05, count
    d = TRDIT_SIZES["TR-DiT-2.5B"]["hidden_size"]
    per_block_adaln_zero = count - model.t_block.weight.numel() + model.depth * (6 * d * d + 6 * d)
    assert 3.2e9 < per_block_adaln_zero < 3.4e9, per_block_adaln_zero
    assert (model.depth, model.hidden_size, model.num_heads, model.routes[0].start, model.routes[0].end) == \
        (34, 2048, 16, 2, 30)


@torch.no_grad()
def test_prompts_are_conditions_like_class_labels():
    model = tiny_trdit()
    emb = model.cond_embedder
    y = torch.tensor([0, 3, 4])
    assert emb.num_classes == PROMPTS and emb.null(y).tolist() == [PROMPTS] * 3
    r = emb.random(y, torch.Generator().manual_seed(0))
    assert r.shape == y.shape and 0 <= int(r.min()) and int(r.max()) < PROMPTS
    assert emb.drop(y, 1.0).tolist() == [PROMPTS] * 3
    x, t, _ = batch()
    out = model(x, t, y)
    assert (out - model(x, t, torch.tensor([1, 3, 4]))).abs()[0].max() > 1e-3  # the prompt matters ...
    bank, mask = emb.bank.clone(), emb.bank_mask.clone()
    bank[:, 4:] += 100.0  # ... its padding tokens do not
    emb.set_bank(bank, mask)
    assert torch.allclose(model(x, t, y), out, atol=1e-6)


def test_a_bad_prompt_bank_says_what_it_must_be():
    emb = tiny_trdit().cond_embedder
    with pytest.raises(ConfigError, match=r"\(prompts \+ 1, 6, 16\)"):
        emb.set_bank(torch.zeros(3, LEN, 8), torch.ones(3, LEN, dtype=torch.bool))
    with pytest.raises(ConfigError, match="at least one real token"):
        emb.set_bank(torch.zeros(3, LEN, TEXT), torch.zeros(3, LEN, dtype=torch.bool))
    with pytest.raises(ConfigError, match="at least one prompt"):
        emb.set_bank(torch.zeros(1, LEN, TEXT), torch.ones(1, LEN, dtype=torch.bool))


@torch.no_grad()
def test_a_fresh_model_predicts_zero():
    model = build_trdit("TR-DiT-T", input_size=8, in_channels=4, num_prompts=2, text_dim=TEXT, text_len=LEN)
    x, t, y = batch()
    assert model(x, t, y % 2).abs().max() == 0


def test_sampler_guidance_and_flop_counter_take_it_unchanged():
    model = tiny_trdit(routes=("1:2",), train_gamma=0.5)
    models = {"main": model, "aux": tiny_trdit(routes=("1:2",), seed=5)}  # SG_FID's earlier checkpoint
    noise, _, y = batch()
    for recipe in ("unguided", "cfg", "icg", "autoguidance", "sg_flops", "sg_fid"):
        out = sample(models, recipe, noise, y, steps=4, generator=torch.Generator().manual_seed(0))
        assert out.shape == noise.shape and torch.isfinite(out).all(), recipe
    with pytest.raises(ConfigError):
        sample(model, "cfg", noise, torch.tensor([0, 1, PROMPTS]), steps=2)  # ∅ is not a prompt to sample
    g = {r: recipe_gflops(FlopCounter(model), r, 8) for r in ("unguided", "cfg", "sg_flops")}
    assert g["cfg"] == pytest.approx(2 * g["unguided"]) and g["sg_flops"] < g["cfg"]


def test_trdit_trains_on_scene_latents_with_the_training_loop(tmp_path):
    """train.py takes TR-DiT unchanged: routed at γ 0.5, prompt dropout to ∅, EMA, checkpoints; the
    loss falls over 60 steps on 64 encoded scenes (captions as conditions, random prompt features)."""
    from sparse_guidance.data import LatentDataset, Scenes, build_codec, encode_dataset
    from sparse_guidance.train import TrainConfig, train
    scenes = Scenes("train", n=64, seed=0)
    encode_dataset(scenes, build_codec("space-to-depth", image_channels=3), tmp_path / "lat", progress=False)
    latents = LatentDataset(tmp_path / "lat")
    k = latents.num_classes
    torch.manual_seed(0)
    model = build_trdit("TR-DiT-T", depth=4, hidden_size=64, input_size=16, in_channels=12, num_prompts=k,
                        routes=["1:2"], train_gamma=0.5)
    g = torch.Generator().manual_seed(0)
    model.cond_embedder.set_bank(torch.randn(k + 1, 48, 384, generator=g), torch.ones(k + 1, 48, dtype=torch.bool))
    cfg = TrainConfig(steps=60, batch_size=16, lr=1e-3, ema_decay=0.9, ckpt_every=60, log_every=10)
    train(model, latents, cfg, tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [dict(zip(lines[0].split(","), r.split(","))) for r in lines[1:]]
    losses = [float(r["loss"]) for r in rows]
    assert "loss" in header and len(losses) == 6 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
    assert (tmp_path / "run" / "last.pt").exists()


def test_the_figure_a1_benchmark_writes_every_cell(tmp_path, capsys):
    """scripts/benchmark_t2i_throughput.py at a grid of 0.5 (one SG cell): CFG, the paper's two
    settings and the cell, each with images/s and its ratio to CFG."""
    bench = load_script("benchmark_t2i_throughput")
    bench.main(["--grid-step", "0.5", "--timed-steps", "1", "--batch", "2", "--out", str(tmp_path / "a1.csv"),
                "--plot", str(tmp_path / "a1")])
    assert (tmp_path / "a1.png").stat().st_size > 0 and (tmp_path / "a1.pdf").exists()
    rows = list(csv.DictReader(open(tmp_path / "a1.csv")))
    assert [r["setting"] for r in rows] == ["CFG (ω 1.8)", *TP.PAPER_SETTINGS, "SG γ 0/0.5"]
    assert float(rows[0]["ratio_to_cfg"]) == 1.0 and all(float(r["images_per_s"]) > 0 for r in rows)
    assert "| 2 | CFG (ω 1.8) |" in capsys.readouterr().out
