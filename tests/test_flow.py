"""Flow matching (Eq. 1-2), training losses (dense/routed and masked, Eq. A4), class dropout, EMA."""
from __future__ import annotations

import pytest
import torch

from conftest import NUM_CLASSES, inputs, tiny
from sparse_guidance.flow import (ema_update, flow_matching_loss, interpolate, make_ema, masked_flow_matching_loss,
                                  token_mask_to_pixels, training_loss, velocity_target)
from sparse_guidance.models import LabelEmbedder, build_model, keep_to_mask, select_tokens
from sparse_guidance.errors import ConfigError

SMALL = dict(depth=2, hidden_size=64, num_heads=2, input_size=8, num_classes=4)


def toy_dataset(n=64, classes=4, seed=0):
    """n latents (4, 8, 8): one fixed pattern per class (piecewise constant over 2x2 patches)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, 4, 4, 4, generator=g).repeat_interleave(2, 2).repeat_interleave(2, 3)
    y = torch.arange(n) % classes
    return patterns[y].clone(), y


def train(model, steps, lr=1e-3, seed=0):
    x, y = toy_dataset()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        loss = training_loss(model, x, y, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------------------------------------
# Eq. 1-2
# ---------------------------------------------------------------------------------------------

def test_interpolate_endpoints_and_midpoint():
    x, z = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    assert torch.equal(interpolate(x, z, torch.zeros(3)), z)  # t = 0 is noise
    assert torch.equal(interpolate(x, z, torch.ones(3)), x)  # t = 1 is data
    torch.testing.assert_close(interpolate(x, z, torch.full((3,), 0.25)), 0.75 * z + 0.25 * x)
    t = torch.tensor([0.0, 0.5, 1.0])
    xt = interpolate(x, z, t)
    assert torch.equal(xt[0], z[0]) and torch.equal(xt[2], x[2])
    torch.testing.assert_close(xt[1], 0.5 * (x[1] + z[1]))


def test_velocity_target_is_time_derivative_of_path():
    x, z = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    v = velocity_target(x, z)
    torch.testing.assert_close(v, x - z)
    t, h = torch.full((2,), 0.3, dtype=torch.float64), 1e-6
    fd = (interpolate(x.double(), z.double(), t + h) - interpolate(x.double(), z.double(), t)) / h
    torch.testing.assert_close(fd.float(), v, rtol=1e-4, atol=1e-4)
    # integrating v from the noise end reaches the data end
    torch.testing.assert_close(z + v, x)


def test_token_mask_to_pixels():
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # 2x2 grid
    pix = token_mask_to_pixels(mask, patch_size=2, grid=2)
    assert pix.shape == (1, 1, 4, 4)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
    assert torch.equal(pix[0, 0], expected)


# ---------------------------------------------------------------------------------------------
# Class dropout
# ---------------------------------------------------------------------------------------------

def test_class_dropout_statistics():
    emb = LabelEmbedder(NUM_CLASSES, 4)
    y = torch.randint(0, NUM_CLASSES, (20000,), generator=torch.Generator().manual_seed(0))
    out = emb.drop(y, 0.1, torch.Generator().manual_seed(1))
    dropped = out == NUM_CLASSES
    assert 0.09 < dropped.float().mean().item() < 0.11
    assert torch.equal(out[~dropped], y[~dropped])  # the others are untouched
    again = emb.drop(y, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert not torch.equal(out, emb.drop(y, 0.1, torch.Generator().manual_seed(2)))
    assert torch.equal(emb.drop(y, 0.0), y)
    assert (emb.drop(y, 1.0, torch.Generator().manual_seed(0)) == NUM_CLASSES).all()
    assert torch.equal(emb.null(y), torch.full_like(y, NUM_CLASSES))
    assert emb.embedding_table.weight.shape == (NUM_CLASSES + 1, 4)


def test_training_loss_applies_class_dropout():
    """With class_dropout=1 every label the model sees is the null class."""
    seen = []
    m = tiny("routing")
    h = m.y_embedder.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    x, _, y = inputs(n=4)
    flow_matching_loss(m, x, y, class_dropout=1.0, generator=torch.Generator().manual_seed(0))
    flow_matching_loss(m, x, y, class_dropout=0.0, generator=torch.Generator().manual_seed(0))
    h.remove()
    assert (seen[0] == NUM_CLASSES).all()
    assert torch.equal(seen[1], y)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def test_flow_matching_loss_matches_manual():
    m = tiny("routing", train_gamma=0.5)
    x, _, y = inputs(n=4)
    loss = flow_matching_loss(m, x, y, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.rand(4, generator=g)
    z = torch.randn(x.shape, generator=g)
    y2 = m.y_embedder.drop(y, 0.1, g)
    with torch.no_grad():
        v = m(interpolate(x, z, t), t, y2, gamma=0.5, generator=g)  # default γ = train_gamma
    torch.testing.assert_close(loss.detach(), (v - (x - z)).pow(2).mean())


def _masked_by_hand(m, x, y, seed):
    """The draws of a masked step and the model's velocity, by hand: (t, z, x_t, v, pixel mask)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(4, generator=g)
    z = torch.randn(x.shape, generator=g)
    y2 = m.y_embedder.drop(y, 0.1, g)
    keep = select_tokens(4, m.num_tokens, 0.5, g)
    x_t = interpolate(x, z, t)
    with torch.no_grad():
        v = m(x_t, t, y2, keep=keep)
    mask = keep_to_mask(keep, 16).view(4, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    return t, z, x_t, v, mask


@pytest.mark.parametrize("target", ["noisy", "clean", "noisy_normalized"])
def test_masked_loss_matches_eq_a4(target):
    """Each MAE target against a hand computation: Eq. A4 as printed (noisy: (1-t)² ‖v_θ ⊙ M‖²),
    Eq. A1's clean data ((1-t)² ‖(v_θ - v*) ⊙ M‖²) and MaskDiT's code (D_θ = x_t + (1-t) v_θ against
    x_t normalised per 2×2×4 patch, the unbiased variance + 1e-6)."""
    m = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
    x, _, y = inputs(n=4)
    kw = {} if target == "noisy" else {"mae_target": target}  # noisy is the default
    loss = masked_flow_matching_loss(m, x, y, gamma=0.5, mae_weight=0.1, generator=torch.Generator().manual_seed(4),
                                     **kw)
    t, z, x_t, v, mask = _masked_by_hand(m, x, y, 4)
    w = (1 - t).view(-1, 1, 1, 1)
    vis = ((v - (x - z)).pow(2) * (1 - mask)).sum() / ((1 - mask).sum() * 4)
    if target == "noisy":
        per = (w * v).pow(2)
    elif target == "clean":
        per = (w * (v - (x - z))).pow(2)
    else:
        norm = torch.empty_like(x_t)
        for n in range(4):
            for i in range(0, 8, 2):
                for j in range(0, 8, 2):
                    patch = x_t[n, :, i:i + 2, j:j + 2]
                    norm[n, :, i:i + 2, j:j + 2] = (patch - patch.mean()) / (patch.var() + 1e-6).sqrt()
        per = (x_t + w * v - norm).pow(2)
    mae = (per * mask).sum() / (mask.sum() * 4)
    torch.testing.assert_close(loss.detach(), vis + 0.1 * mae)
    assert mae > 0 and vis > 0


def test_the_mae_targets_differ_and_a_bad_one_is_named():
    m = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
    x, _, y = inputs(n=4)
    values = {k: float(masked_flow_matching_loss(m, x, y, gamma=0.5, mae_target=k,
                                                 generator=torch.Generator().manual_seed(4)))
              for k in ("noisy", "noisy_normalized", "clean")}
    assert len(set(values.values())) == 3, values
    with pytest.raises(ConfigError, match="mae_target='x0'; choose one of noisy, noisy_normalized, clean"):
        masked_flow_matching_loss(m, x, y, gamma=0.5, mae_target="x0")


def test_training_loss_dispatches_on_sparsity():
    masked = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
    x, _, y = inputs(n=2)
    a = training_loss(masked, x, y, mae_weight=0.3, generator=torch.Generator().manual_seed(0))
    b = masked_flow_matching_loss(masked, x, y, mae_weight=0.3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    routed = tiny("routing")
    c = training_loss(routed, x, y, mae_weight=0.3, generator=torch.Generator().manual_seed(0))  # ignored
    d = flow_matching_loss(routed, x, y, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(c, d)


def test_routed_loss_falls_on_toy_problem():
    torch.manual_seed(0)
    m = build_model("SiT-T/2", sparsity="routing", routes=["0:1"], train_gamma=0.5, **SMALL)
    losses = train(m, steps=150)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)


def test_masked_loss_falls_on_toy_problem():
    torch.manual_seed(0)
    m = build_model("SiT-T/2", sparsity="masking", train_gamma=0.5, decoder_depth=1, decoder_width=64,
                    decoder_heads=2, **SMALL)
    losses = train(m, steps=100)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)


def test_routed_loss_gets_gradients_everywhere():
    m = tiny("routing", routes=("1:2",), train_gamma=0.5)
    x, _, y = inputs(n=4)
    flow_matching_loss(m, x, y, generator=torch.Generator().manual_seed(0)).backward()
    for name, p in m.named_parameters():
        if p.requires_grad and "y_embedder" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not m.pos_embed.requires_grad


# ---------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------

def test_ema_update():
    m = tiny("routing")
    ema = make_ema(m)
    assert all(not p.requires_grad for p in ema.parameters())
    assert not ema.training
    old = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema_update(ema, m, decay=0.9)
    new_model = m.state_dict()
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, 0.9 * old[k] + 0.1 * new_model[k])
        assert not torch.allclose(v, old[k])
    # decay 1 keeps the EMA, decay 0 copies the model
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema_update(ema, m, decay=1.0)
    assert all(torch.equal(before[k], v) for k, v in ema.state_dict().items())
    ema_update(ema, m, decay=0.0)
    assert all(torch.allclose(new_model[k], v) for k, v in ema.state_dict().items())


def test_ema_is_a_copy():
    m = tiny("routing")
    ema = make_ema(m)
    with torch.no_grad():
        m.blocks[0].attn.qkv.weight.add_(1.0)
    assert not torch.equal(ema.blocks[0].attn.qkv.weight, m.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("gamma", [1.0, -0.5])
def test_losses_reject_bad_gamma(gamma):
    from sparse_guidance import ConfigError
    m = tiny("routing")
    x, _, y = inputs(n=2)
    with pytest.raises(ConfigError):
        flow_matching_loss(m, x, y, gamma=gamma)
    with pytest.raises(ConfigError):
        build_model("SiT-T/2", sparsity="routing", routes=["0:1"], train_gamma=gamma, **SMALL)
