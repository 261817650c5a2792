"""Backbone, routing (Eq. 5), masking (Eq. 4), token selection and bad model input."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import NUM_CLASSES, TINY, inputs, randomize, tiny
from sparse_guidance import ConfigError
from sparse_guidance.models import MODELS, build_model, keep_to_mask, num_kept, select_tokens
from sparse_guidance.models.sparsity import gather_tokens, scatter_tokens


def patch_slice(token: int, grid: int, p: int):
    """The (rows, cols) pixel slices covered by token ``token`` (row-major token order)."""
    r, c = divmod(token, grid)
    return slice(r * p, (r + 1) * p), slice(c * p, (c + 1) * p)


# ---------------------------------------------------------------------------------------------
# Registry and shapes
# ---------------------------------------------------------------------------------------------

def test_registry_has_all_sizes_and_patches():
    for family in ("SiT", "DiT"):
        for size in ("S", "B", "L", "XL"):
            for p in (2, 4, 8):
                assert f"{family}-{size}/{p}" in MODELS
                assert MODELS[f"{family}-{size}/{p}"]["patch_size"] == p
    assert (MODELS["SiT-B/4"]["depth"], MODELS["SiT-B/4"]["hidden_size"], MODELS["SiT-B/4"]["num_heads"]) == (12, 768, 12)
    assert (MODELS["SiT-L/8"]["depth"], MODELS["SiT-L/8"]["hidden_size"], MODELS["SiT-L/8"]["num_heads"]) == (24, 1024, 16)
    assert (MODELS["SiT-S/2"]["depth"], MODELS["SiT-S/2"]["hidden_size"], MODELS["SiT-S/2"]["num_heads"]) == (12, 384, 6)


def test_sit_xl2_dimensions_on_meta():
    with torch.device("meta"):
        m = build_model("SiT-XL/2")
    assert len(m.blocks) == 28 and m.depth == 28
    assert m.hidden_size == 1152 and m.x_embedder.proj.out_channels == 1152
    assert m.blocks[0].attn.num_heads == 16
    assert m.out_channels == 4
    assert m.num_tokens == 256  # 32x32 latent, patch 2
    assert m.final_layer.linear.out_features == 2 * 2 * 4


def test_on_meta_builds_the_same_shapes_without_importing_torch_dynamo():
    """A config validates its runs' models on the meta device; on_meta skips normal_ there, whose
    Python decomposition imports torch._dynamo (1.1 s of every job's and every Snakefile's start)."""
    from sparse_guidance.models import on_meta
    with on_meta():
        meta = build_model("SiT-T/2", sparsity="masking", input_size=8, num_classes=NUM_CLASSES)
    cpu = build_model("SiT-T/2", sparsity="masking", input_size=8, num_classes=NUM_CLASSES)
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in cpu.state_dict().items()}
    assert all(p.is_meta for p in meta.parameters())
    code = ("import sys; from sparse_guidance import config as C; C.load_config('paper'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_learn_sigma_has_8_output_channels_but_forward_returns_4():
    with torch.device("meta"):
        big = build_model("SiT-XL/2", learn_sigma=True)
    assert big.final_layer.linear.out_features == 2 * 2 * 8
    m = tiny("none", learn_sigma=True)
    assert m.final_layer.linear.out_features == 2 * 2 * 8
    x, t, y = inputs()
    with torch.no_grad():
        out = m(x, t, y)
    assert out.shape == (3, 4, 8, 8)
    # the returned channels are the first 4 of the full 8-channel head
    with torch.no_grad():
        tokens, c = m.embed(x, t, y)
        for blk in m.blocks:
            tokens = blk(tokens, c)
        full = m.unpatchify(m.final_layer(tokens, c))
    assert full.shape == (3, 8, 8, 8)
    torch.testing.assert_close(out, full[:, :4], rtol=0, atol=0)


@pytest.mark.parametrize("sparsity,gamma", [("none", 0.0), ("routing", 0.0), ("routing", 0.5), ("masking", 0.0),
                                            ("masking", 0.75)])
@pytest.mark.parametrize("patch,size", [(2, 8), (4, 16)])
def test_output_shape(sparsity, gamma, patch, size):
    kw = dict(decoder_depth=1, decoder_width=32, decoder_heads=2) if sparsity == "masking" else {}
    m = tiny(sparsity, routes=("1:2",), patch_size=patch, input_size=size, **kw)
    x, t, y = inputs(n=2, size=size)
    out = m(x, t, y, gamma=gamma, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 4, size, size)
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0  # randomised weights: not the adaLN-Zero identity


def test_fresh_model_is_adaln_zero():
    m = tiny("routing", randomised=False)
    x, t, y = inputs()
    assert torch.equal(m(x, t, y), torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# Routing: γ = 0 is dense; routed forward equals a hand-built reference
# ---------------------------------------------------------------------------------------------

def test_gamma_zero_equals_dense_forward_exactly():
    routed = tiny("routing", routes=("1:2",))
    dense = build_model("SiT-T/2", sparsity="none", **TINY).eval()
    dense.load_state_dict(routed.state_dict())
    x, t, y = inputs(n=4)
    out_r = routed(x, t, y, gamma=0.0)
    out_d = dense(x, t, y)
    assert torch.equal(out_r, out_d)
    # and routing at γ>0 is a different function
    assert not torch.allclose(routed(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0)), out_d)


def reference_forward(model, x, t, y, routes, keeps):
    """Eq. 5 by hand: gather kept tokens before each route, run its blocks on them, scatter back."""
    tokens = model.x_embedder(x) + model.pos_embed
    c = model.t_embedder(t) + model.y_embedder(y)
    n, T, D = tokens.shape
    by_start = {s: (e, k) for (s, e), k in zip(routes, keeps)}
    i = 0
    while i < len(model.blocks):
        if i in by_start:
            end, keep = by_start[i]
            saved = tokens.clone()
            kept = torch.stack([tokens[b, keep[b]] for b in range(n)])  # (N, K, D)
            for j in range(i, end + 1):
                kept = model.blocks[j](kept, c)
            tokens = saved
            for b in range(n):
                tokens[b, keep[b]] = kept[b]
            i = end + 1
        else:
            tokens = model.blocks[i](tokens, c)
            i += 1
    h = model.final_layer(tokens, c)  # (N, T, p*p*C)
    p, g, C = model.patch_size, model.grid, model.out_channels
    img = torch.zeros(n, C, g * p, g * p)
    for tok in range(T):
        rs, cs = patch_slice(tok, g, p)
        img[:, :, rs, cs] = h[:, tok].reshape(n, p, p, C).permute(0, 3, 1, 2)
    return img


def test_routed_forward_matches_reference():
    m = tiny("routing", routes=("1:2",))
    x, t, y = inputs(n=3)
    keep = select_tokens(3, m.num_tokens, 0.5, torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = m(x, t, y, keep=keep)
        ref = reference_forward(m, x, t, y, [(1, 2)], [keep])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the reference is not trivially the dense forward
    assert not torch.allclose(m(x, t, y), ref, atol=1e-4)


def test_multiple_routes_match_reference():
    m = tiny("routing", routes=("0:1", "3:5"), depth=7)
    x, t, y = inputs(n=2)
    keep = select_tokens(2, m.num_tokens, 0.75, torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = m(x, t, y, keep=keep)
        ref = reference_forward(m, x, t, y, [(0, 1), (3, 5)], [keep, keep])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_multiple_routes_draw_independent_subsets():
    m = tiny("routing", routes=("0:1", "3:5"), depth=7)
    x, t, y = inputs(n=2)
    seen = []
    handles = [m.blocks[i].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
               for i in (0, 3)]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = m(x, t, y, gamma=0.5, generator=gen)
    for h in handles:
        h.remove()
    assert seen == [8, 8]  # both routes see K = 16 - 8 tokens
    # With the same generator state, each route draws its own subset in order: reproduce it.
    gen = torch.Generator().manual_seed(5)
    k1 = select_tokens(2, 16, 0.5, gen)
    k2 = select_tokens(2, 16, 0.5, gen)
    assert not torch.equal(k1, k2)
    with torch.no_grad():
        ref = reference_forward(m, x, t, y, [(0, 1), (3, 5)], [k1, k2])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_removed_tokens_skip_the_route_unchanged():
    """Eq. 5: tokens not kept leave the route exactly as they entered it (identity)."""
    m = tiny("routing", routes=("1:2",))
    x, t, y = inputs(n=2)
    keep = select_tokens(2, m.num_tokens, 0.5, torch.Generator().manual_seed(6))
    captured = {}
    h1 = m.blocks[0].register_forward_hook(lambda mod, args, out: captured.__setitem__("before", out.clone()))
    h2 = m.blocks[3].register_forward_pre_hook(lambda mod, args: captured.__setitem__("after", args[0].clone()))
    h3 = m.blocks[1].register_forward_pre_hook(lambda mod, args: captured.__setitem__("route_in", args[0].clone()))
    with torch.no_grad():
        m(x, t, y, keep=keep)
    for h in (h1, h2, h3):
        h.remove()
    before, after = captured["before"], captured["after"]
    assert captured["route_in"].shape == (2, 8, TINY["hidden_size"])  # route ran on kept tokens only
    removed = keep_to_mask(keep, 16).bool()  # (N, T): True where removed
    assert removed.sum() == 2 * 8
    assert torch.equal(after[removed], before[removed])
    assert not torch.allclose(after[~removed], before[~removed])


def test_route_sees_positional_embedding_and_same_conditioning():
    """Routed tokens keep their positional embedding: the gathered tokens equal the dense ones."""
    m = tiny("routing", routes=("1:2",))
    x, t, y = inputs(n=2)
    keep = select_tokens(2, 16, 0.5, torch.Generator().manual_seed(7))
    got = {}
    h = m.blocks[1].register_forward_pre_hook(lambda mod, args: got.update(tokens=args[0].clone(), c=args[1].clone()))
    with torch.no_grad():
        m(x, t, y, keep=keep)
        h.remove()
        tokens, c = m.embed(x, t, y)
        full = m.blocks[0](tokens, c)
    torch.testing.assert_close(got["tokens"], gather_tokens(full, keep), rtol=0, atol=0)
    torch.testing.assert_close(got["c"], c, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Token selection
# ---------------------------------------------------------------------------------------------

def test_select_tokens_shape_sorted_unique():
    T, gamma, n = 256, 0.9, 6
    keep = select_tokens(n, T, gamma, torch.Generator().manual_seed(0))
    assert keep.shape == (n, 26)
    assert num_kept(256, 0.9) == 26
    assert keep.dtype == torch.long
    assert (keep[:, 1:] > keep[:, :-1]).all()  # sorted and unique
    assert keep.min() >= 0 and keep.max() < T
    rows = {tuple(r.tolist()) for r in keep}
    assert len(rows) == n  # independent subsets per sample


@pytest.mark.parametrize("T,gamma", [(16, 0.0), (16, 0.5), (16, 0.3), (64, 0.75), (256, 0.5)])
def test_num_kept_formula(T, gamma):
    k = select_tokens(2, T, gamma, torch.Generator().manual_seed(1)).shape[1]
    assert k == T - int(T * gamma) == num_kept(T, gamma)


def test_select_tokens_seeded():
    a = select_tokens(4, 64, 0.5, torch.Generator().manual_seed(11))
    b = select_tokens(4, 64, 0.5, torch.Generator().manual_seed(11))
    c = select_tokens(4, 64, 0.5, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_select_tokens_is_roughly_uniform():
    keep = select_tokens(2000, 16, 0.5, torch.Generator().manual_seed(0))
    counts = torch.bincount(keep.flatten(), minlength=16).float() / 2000
    assert torch.allclose(counts, torch.full((16,), 0.5), atol=0.05)


def test_keep_to_mask_and_scatter():
    keep = torch.tensor([[0, 2], [1, 3]])
    mask = keep_to_mask(keep, 4)
    assert torch.equal(mask, torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]]))
    base = torch.zeros(2, 4, 1)
    vals = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    out = scatter_tokens(base, keep, vals)
    assert torch.equal(out[..., 0], torch.tensor([[1.0, 0, 2.0, 0], [0, 3.0, 0, 4.0]]))
    assert torch.equal(base, torch.zeros(2, 4, 1))  # base is not modified in place
    assert torch.equal(gather_tokens(out, keep), vals)


# ---------------------------------------------------------------------------------------------
# Masking (MaskDiT encoder/decoder with a masked-inference path)
# ---------------------------------------------------------------------------------------------

def test_masked_model_ignores_removed_patches(masked_model):
    m = masked_model
    x, t, y = inputs(n=2)
    keep = select_tokens(2, m.num_tokens, 0.5, torch.Generator().manual_seed(2))
    removed = [tok for tok in range(16) if tok not in keep[0].tolist()][0]
    kept = keep[0, 0].item()
    with torch.no_grad():
        base = m(x, t, y, keep=keep)
        x_removed = x.clone()
        rs, cs = patch_slice(removed, m.grid, m.patch_size)
        x_removed[0, :, rs, cs] += 5.0
        out_removed = m(x_removed, t, y, keep=keep)
        x_kept = x.clone()
        rs, cs = patch_slice(kept, m.grid, m.patch_size)
        x_kept[0, :, rs, cs] += 5.0
        out_kept = m(x_kept, t, y, keep=keep)
    torch.testing.assert_close(out_removed, base, rtol=0, atol=1e-6)
    assert (out_kept[0] - base[0]).abs().max() > 1e-3
    # sample 1 was not perturbed: its output does not change
    torch.testing.assert_close(out_kept[1], base[1], rtol=0, atol=1e-6)


def test_masked_model_at_gamma_zero_sees_every_patch(masked_model):
    m = masked_model
    x, t, y = inputs(n=1)
    with torch.no_grad():
        base = m(x, t, y)
        x2 = x.clone()
        x2[0, :, 0:2, 0:2] += 5.0
        assert (m(x2, t, y) - base).abs().max() > 1e-3


def test_mask_token_used_only_when_masking(masked_model):
    m = masked_model
    x, t, y = inputs(n=2)
    with torch.no_grad():
        masked = m(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0))
        dense = m(x, t, y, gamma=0.0)
        m.mask_token.add_(torch.randn(m.mask_token.shape, generator=torch.Generator().manual_seed(1)))
        masked2 = m(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0))
        dense2 = m(x, t, y, gamma=0.0)
    assert (masked2 - masked).abs().max() > 1e-3
    assert torch.equal(dense2, dense)


def test_masked_model_matches_reference(masked_model):
    """Encoder on kept tokens; decoder puts e_mask at removed positions and adds its own positions."""
    m = masked_model
    x, t, y = inputs(n=2)
    keep = select_tokens(2, 16, 0.75, torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = m(x, t, y, keep=keep)
        tokens, c = m.embed(x, t, y)
        kept = gather_tokens(tokens, keep)
        for blk in m.blocks:
            kept = blk(kept, c)
        kept = m.decoder_embed(kept, c)
        full = m.mask_token.expand(2, 16, -1).clone()
        for b in range(2):
            full[b, keep[b]] = kept[b]
        full = full + m.decoder_pos_embed
        for blk in m.decoder_blocks:
            full = blk(full, c)
        ref = m.head(full, c)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_masking_decoder_defaults_on_meta():
    with torch.device("meta"):
        m = build_model("SiT-XL/2", sparsity="masking")
    assert len(m.decoder_blocks) == 8
    assert m.decoder_width == 512
    assert m.mask_token.shape == (1, 1, 512)
    assert m.decoder_blocks[0].attn.num_heads == 16
    assert m.decoder_blocks[0].mlp.fc1.out_features == 4 * 512
    assert m.decoder_embed.linear.in_features == 1152 and m.decoder_embed.linear.out_features == 512
    assert m.decoder_blocks[0].adaLN_modulation[-1].in_features == 1152  # conditioned on the 1152-d c
    assert m.final_layer.linear.in_features == 512 and m.final_layer.linear.out_features == 2 * 2 * 4
    assert len(m.blocks) == 28
    assert m.train_gamma == 0.5


def test_fresh_masked_model_is_zero():
    m = tiny("masking", randomised=False, decoder_depth=1, decoder_width=32, decoder_heads=2)
    x, t, y = inputs()
    assert torch.equal(m(x, t, y, gamma=0.5), torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def test_unknown_model_lists_known_names():
    with pytest.raises(ConfigError) as e:
        build_model("SiT-Q/3")
    msg = str(e.value)
    assert "SiT-Q/3" in msg and "SiT-XL/2" in msg and "DiT-B/4" in msg


def test_unknown_sparsity():
    with pytest.raises(ConfigError, match="bogus"):
        build_model("SiT-S/2", sparsity="bogus")


@pytest.mark.parametrize("gamma", [1.0, -0.1, 1.5, float("nan"), "abc"])
def test_gamma_outside_range_on_forward(routed_model, gamma):
    x, t, y = inputs()
    with pytest.raises(ConfigError):
        routed_model(x, t, y, gamma=gamma)


def test_gamma_outside_range_on_masked_forward(masked_model):
    x, t, y = inputs()
    with pytest.raises(ConfigError, match="outside"):
        masked_model(x, t, y, gamma=1.0)


def test_route_outside_depth():
    with torch.device("meta"):
        with pytest.raises(ConfigError) as e:
            build_model("SiT-XL/2", sparsity="routing", routes=["2:30"])
    msg = str(e.value)
    assert "2:30" in msg
    assert "0..27" in msg and "depth" in msg


@pytest.mark.parametrize("routes", [["0:3", "3:5"], ["1:4", "2:3"], ["2:6", "0:2"]])
def test_overlapping_routes(routes):
    with pytest.raises(ConfigError, match="overlap"):
        build_model("SiT-T/2", sparsity="routing", routes=routes, **{k: v for k, v in TINY.items() if k != "depth"},
                    depth=8)


def test_bad_route_specs():
    with pytest.raises(ConfigError, match="route"):
        tiny("routing", routes=("1-2",))
    with pytest.raises(ConfigError):
        tiny("routing", routes=("3:1",))  # start > end
    with pytest.raises(ConfigError, match="needs at least one route"):
        build_model("SiT-T/2", sparsity="routing", **TINY)
    with pytest.raises(ConfigError, match="no routes"):
        build_model("SiT-T/2", sparsity="none", routes=["1:2"], **TINY)
    with pytest.raises(ConfigError, match="no routes"):
        build_model("SiT-T/2", sparsity="masking", routes=["1:2"], **TINY)


def test_gamma_on_model_without_routes(dense_model):
    x, t, y = inputs()
    with pytest.raises(ConfigError, match="no routes"):
        dense_model(x, t, y, gamma=0.5)
    with pytest.raises(ConfigError, match="no routes"):
        dense_model(x, t, y, keep=torch.zeros(3, 4, dtype=torch.long))
    assert dense_model(x, t, y, gamma=0.0).shape == x.shape


def test_bad_dimensions():
    with pytest.raises(ConfigError, match="divisible"):
        build_model("SiT-T/2", hidden_size=30, num_heads=4, depth=1, input_size=8, num_classes=2)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("SiT-T/4", depth=1, hidden_size=32, num_heads=2, input_size=10, num_classes=2)


def test_randomize_helper_changes_output():
    m = tiny("none", randomised=False)
    x, t, y = inputs()
    assert torch.equal(m(x, t, y), torch.zeros_like(x))
    randomize(m, seed=3)
    assert m(x, t, y).abs().max() > 0
    assert NUM_CLASSES == m.num_classes


# ---------------------------------------------------------------------------------------------
# Building blocks against the DiT/SiT formulas, written out independently
# ---------------------------------------------------------------------------------------------

def test_block_matches_adaln_zero_formula():
    m = tiny("routing")
    blk = m.blocks[1]
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 16, 32, generator=g), torch.randn(2, 32, generator=g)
    lin = blk.adaLN_modulation[1]
    mod = torch.nn.functional.silu(c) @ lin.weight.T + lin.bias
    sa, ca, ga, sm, cm, gm = mod.split(32, dim=1)

    def ln(h):
        return (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-6)

    h = ln(x) * (1 + ca[:, None]) + sa[:, None]
    qkv = (h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).view(2, 16, 3, 2, 16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (N, heads, T, 16)
    att = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v
    att = att.transpose(1, 2).reshape(2, 16, 32) @ blk.attn.proj.weight.T + blk.attn.proj.bias
    x1 = x + ga[:, None] * att
    h = ln(x1) * (1 + cm[:, None]) + sm[:, None]
    h = h @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias
    h = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h ** 3)))
    x2 = x1 + gm[:, None] * (h @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias)
    with torch.no_grad():
        torch.testing.assert_close(blk(x, c), x2, rtol=1e-4, atol=1e-5)


def test_pos_embed_is_2d_sincos():
    m = tiny("none", randomised=False)
    dim, grid = 32, 4
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    expected = torch.zeros(grid * grid, dim, dtype=torch.float64)
    for r in range(grid):
        for col in range(grid):
            a, b = col * omega, r * omega  # first half encodes the column (w), second the row (h), as in DiT
            expected[r * grid + col] = torch.cat([a.sin(), a.cos(), b.sin(), b.cos()])
    torch.testing.assert_close(m.pos_embed[0].double(), expected, rtol=0, atol=1e-6)
    assert not m.pos_embed.requires_grad


def test_timestep_embedding_formula():
    m = tiny("none")
    t = torch.tensor([0.0, 0.3, 1.0])
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(128) / 128)
    emb = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m.t_embedder(t), m.t_embedder.mlp(emb), rtol=1e-5, atol=1e-6)
