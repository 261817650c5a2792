"""Released and foreign checkpoint formats: each written here by our own code from a random network
in that format's key layout and parameterisation, detected, loaded back exactly, and sampled as our
velocity, which equals the analytic conversion (models/adapters.py, models/formats.py)."""
import math

import pytest
import torch
from torch import nn

from sparse_guidance.errors import ConfigError
from sparse_guidance.guidance import combine, resolve_recipe
from sparse_guidance.models import build_model
from sparse_guidance.models.adapters import EDMDenoiser, ReversedTime, VPEpsilon, linear_betas
from sparse_guidance.models.formats import architecture, detect_format, load_pretrained
from sparse_guidance.sampling import sample

SMALL = dict(input_size=8, in_channels=4, num_classes=10)  # 16 tokens at patch 2


def randomised(net, seed=0):
    """A network whose zero-initialised layers (adaLN-Zero, the final layer) are random too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def sit(sparsity="none", seed=0, **kw):
    return randomised(build_model("SiT-T/2", sparsity=sparsity, **{**SMALL, **kw}), seed)


def masked(seed=0):
    net = randomised(build_model("SiT-T/2", sparsity="masking", decoder_depth=2, decoder_width=64, decoder_heads=4,
                                 **SMALL), seed)
    with torch.no_grad():  # MaskDiT's null label is the zero vector
        net.y_embedder.embedding_table.weight[-1].zero_()
    return net


# --- writers: each format's exact layout, from our networks ---------------------------------------------

def as_maskdit(net):
    """MaskDiT's {model, ema, opt} of EDMPrecond: keys model.*, decoder_layer.*, a (D, K) class map."""
    sd = {}
    for k, v in net.state_dict().items():
        if k.startswith("decoder_embed."):
            k = "decoder_layer." + k[len("decoder_embed."):]
        if k == "y_embedder.embedding_table.weight":
            v = v[:-1].t().contiguous()  # (D, K): a linear map of one-hot labels
        sd["model." + k] = v.clone()
    return {"model": sd, "ema": sd, "opt": {"state": {}}}


def as_tread(net, edm: bool):
    """TREAD's training checkpoint: edm.py wraps the network in EDMPrecond (keys model.*), rf.py does not."""
    sd = {("model." if edm else "") + k: v.clone() for k, v in net.state_dict().items()}
    return {"model_state_dict": sd, "ema_state_dict": sd, "optimizer_state_dict": {"state": {}}, "step": 7}


def as_ours(net):
    sd = net.state_dict()
    return {"model": sd, "ema": sd, "step": 3}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- formats: detection, round trips, errors ---------------------------------------------------------------

@pytest.mark.parametrize("fmt, make, write, name", [
    ("sit", lambda: sit(learn_sigma=True), lambda n: n.state_dict(), "SiT-T-2.pt"),
    ("dit", lambda: sit(learn_sigma=True), lambda n: n.state_dict(), "DiT-T-2.pt"),
    ("ours", lambda: sit(), as_ours, "last.pt"),
    ("maskdit", masked, as_maskdit, "maskdit-best.pt"),
    ("tread-edm", lambda: sit(), lambda n: as_tread(n, edm=True), "step_000007.pt"),
    ("tread-rf", lambda: sit(), lambda n: as_tread(n, edm=False), "step_000007.pt"),
])
def test_each_format_is_detected_and_loads_back_exactly(tmp_path, fmt, make, write, name):
    net = make()
    path = tmp_path / name
    torch.save(write(net), path)
    loaded = load_pretrained(path)
    assert loaded.format == fmt and same_weights(loaded.net, net)
    assert loaded.architecture["depth"] == 8 and loaded.architecture["hidden_size"] == 192
    assert type(loaded.model) is {"sit": type(net), "ours": type(net), "dit": VPEpsilon, "maskdit": EDMDenoiser,
                                  "tread-edm": EDMDenoiser, "tread-rf": ReversedTime}[fmt]
    assert load_pretrained(path, format=fmt, model="SiT-T/2").format == fmt  # forced, and checked by name


def test_maskdit_keys_convert_to_ours():
    net = masked()
    sd = as_maskdit(net)["ema"]
    assert "model.decoder_layer.linear.weight" in sd and sd["model.y_embedder.embedding_table.weight"].shape == (192, 10)
    loaded = load_pretrained("maskdit.pt", obj=as_maskdit(net))
    table = loaded.net.y_embedder.embedding_table.weight
    assert table.shape == (11, 192) and torch.equal(table[-1], torch.zeros(192))  # ∅ = MaskDiT's zero label
    assert loaded.architecture["decoder_depth"] == 2 and loaded.architecture["decoder_width"] == 64


def test_the_architecture_is_read_from_the_weights():
    arch = architecture(sit(learn_sigma=True).state_dict())
    assert arch == {"depth": 8, "hidden_size": 192, "patch_size": 2, "in_channels": 4, "input_size": 8,
                    "num_classes": 10, "learn_sigma": True}


def test_bad_formats_say_what_they_look_like_and_which_flag_to_pass(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save(sit().state_dict(), plain)
    with pytest.raises(ConfigError, match="predict noise \\(DiT\\) or velocity \\(SiT\\): pass format='dit'"):
        load_pretrained(plain)
    md = tmp_path / "m.pt"
    torch.save(as_maskdit(masked()), md)
    with pytest.raises(ConfigError, match="looks like a maskdit checkpoint.*--format maskdit"):
        load_pretrained(md, format="tread-rf")
    with pytest.raises(ConfigError, match="unknown checkpoint format 'edm2'"):
        load_pretrained(md, format="edm2")
    with pytest.raises(ConfigError, match="no format we know"):
        detect_format({"weights": torch.zeros(3)}, "x.pt")
    with pytest.raises(ConfigError, match="does not fit SiT-B/2: it has depth 8 \\(not 12\\).*SiT-T/2"):
        load_pretrained(plain, format="sit", model="SiT-B/2")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(md.read_bytes()[:2000])
    with pytest.raises(ConfigError, match="corrupt or not a torch checkpoint"):
        load_pretrained(truncated)


def test_an_edm_checkpoint_loaded_as_plain_weights_names_its_loader():
    from sparse_guidance.checkpoint import load_weights
    with pytest.raises(ConfigError, match="EDMPrecond checkpoint.*load_pretrained"):
        load_weights(sit(), as_tread(sit(), edm=True)["ema_state_dict"])


def test_a_dense_checkpoint_routes_only_when_given_routes():
    obj = sit(learn_sigma=True).state_dict()
    dense = load_pretrained("SiT-T-2.pt", obj=obj).model
    x, t, y = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5), torch.tensor([1, 2])
    with pytest.raises(ConfigError, match="has no routes"):
        dense(x, t, y, gamma=0.5)
    routed = load_pretrained("SiT-T-2.pt", obj=obj, routes=["1:6"]).model
    assert torch.equal(routed(x, t, y), dense(x, t, y))  # routing has no weights: γ = 0 is the dense forward
    assert not torch.equal(routed(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0)), dense(x, t, y))


# --- adapters: our velocity equals the analytic conversion ----------------------------------------------------

class Oracle(nn.Module):
    """A perfect network of one parameterisation for known data x and noise z: from its inputs it
    recovers the noise level as that parameterisation defines it and returns the exact prediction,
    so a wrong input scaling, time or noise level in the adapter gives a wrong velocity."""

    def __init__(self, kind, x, z, sigma_data=0.5):
        super().__init__()
        self.kind, self.x, self.z, self.sd = kind, x, z, sigma_data

    def forward(self, inp, t, y, gamma=0.0, generator=None, keep=None):
        t = t.to(torch.float64).reshape(-1, 1, 1, 1)
        inp = inp.to(torch.float64)
        if self.kind == "edm":  # inp = c_in (x + σ z), t = c_noise = ln σ / 4; F* makes D = x
            s = torch.exp(4 * t)
            c_in, c_skip = 1 / (s ** 2 + self.sd ** 2).sqrt(), self.sd ** 2 / (s ** 2 + self.sd ** 2)
            c_out = s * self.sd / (s ** 2 + self.sd ** 2).sqrt()
            assert torch.allclose(inp / c_in, self.x + s * self.z, atol=1e-4)
            return (self.x - c_skip * inp / c_in) / c_out
        if self.kind == "eps":  # inp = √ᾱ_s x + √(1 − ᾱ_s) z at the (fractional) DiT timestep t
            ab = torch.cumprod(1 - linear_betas(), 0)
            ls = 0.5 * torch.log((1 - ab) / ab)
            i = t.floor().long().clamp(0, 998)
            sig = torch.exp(ls[i] + (t - i) * (ls[i + 1] - ls[i]))
            a = 1 / (1 + sig ** 2)
            return (inp - a.sqrt() * self.x) / (1 - a).sqrt()
        if self.kind == "rf":  # inp = (1 − t') x + t' z; v' = z − x, with z recovered through t'
            return (inp - (1 - t) * self.x) / t - self.x
        raise ValueError(self.kind)


@pytest.mark.parametrize("kind, adapter", [("edm", EDMDenoiser), ("eps", VPEpsilon), ("rf", ReversedTime)])
def test_adapters_turn_a_perfect_prediction_into_the_true_velocity(kind, adapter):
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    model = adapter(Oracle(kind, x, z))
    for t_value in (0.05, 0.3, 0.5, 0.8, 0.95):
        t = torch.full((4,), t_value, dtype=torch.float64)
        xt = t_value * x + (1 - t_value) * z  # our path (Eq. 1)
        v = model(xt, t, torch.zeros(4, dtype=torch.long))
        torch.testing.assert_close(v, x - z, rtol=1e-6, atol=1e-6)


def test_the_edm_velocity_is_d_minus_x_over_one_minus_t_at_sigma_one_minus_t_over_t():
    net = sit()
    model = EDMDenoiser(net)
    x, y = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 4, 9])
    t = torch.tensor([0.2, 0.5, 0.9])
    s = ((1 - t) / t).reshape(-1, 1, 1, 1)
    xe = x / t.reshape(-1, 1, 1, 1)  # EDM's scale: data + σ z
    d = 0.25 / (s ** 2 + 0.25) * xe + s * 0.5 / (s ** 2 + 0.25).sqrt() * net(xe / (s ** 2 + 0.25).sqrt(),
                                                                               (s.log() / 4).flatten(), y)
    torch.testing.assert_close(model(x, t, y), (d - x) / (1 - t.reshape(-1, 1, 1, 1)), rtol=1e-4, atol=1e-5)


def test_noise_levels_outside_the_models_range_are_clamped_not_divided_by_zero():
    x, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    for model in (EDMDenoiser(sit()), VPEpsilon(sit(learn_sigma=True))):
        lo, hi = model.time_range()
        assert 0 < lo < hi < 1
        for t in (0.0, 1.0):
            v = model(x, torch.full((2,), t), y)
            assert torch.isfinite(v).all()
        torch.testing.assert_close(model(x, torch.zeros(2), y), model(x, torch.full((2,), lo), y))


def test_dits_timesteps_are_its_integers_at_its_own_noise_levels():
    model = VPEpsilon(sit(learn_sigma=True))
    ab = torch.cumprod(1 - linear_betas(), 0)
    sig = ((1 - ab) / ab).sqrt()
    for k in (0, 1, 250, 998, 999):
        assert model.timestep(sig[k:k + 1]).item() == pytest.approx(k, abs=1e-3)
    assert model.sigma_min == pytest.approx(float(sig[0])) and model.sigma_max == pytest.approx(float(sig[-1]))
    assert math.isclose(float(linear_betas()[-1]), 0.02)


def test_sparse_guidance_samples_a_released_maskdit_and_tread_checkpoint():
    noise, y = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 2, 3])
    for obj, routes in ((as_maskdit(masked()), ()), (as_tread(sit(), edm=True), ["1:6"]),
                        (as_tread(sit(), edm=False), ["1:6"])):
        model = load_pretrained("ckpt.pt", obj=obj, routes=routes).model
        out = [sample(model, {"preset": "sg", "omega": 2.0}, noise, y, steps=4,
                      generator=torch.Generator().manual_seed(0)) for _ in range(2)]
        assert torch.isfinite(out[0]).all() and torch.equal(out[0], out[1])
        cfg = sample(model, "cfg", noise, y, steps=4)
        assert not torch.equal(cfg, out[0])


# --- CFG on 3 of 4 channels (DiT/SiT's forward_with_cfg) --------------------------------------------------------

def test_cfg_can_guide_only_the_first_channels_as_dit_and_sit_do():
    vs, vw = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    full = combine(vs, vw, 4.0)
    three = combine(vs, vw, 4.0, channels=3)
    assert torch.equal(three[:, :3], full[:, :3]) and torch.equal(three[:, 3:], vs[:, 3:])
    r = resolve_recipe({"preset": "cfg", "omega": 4.0, "guided_channels": 3})
    assert r.guided_channels == 3 and r.to_dict()["guided_channels"] == 3
    assert "guided_channels" not in resolve_recipe("cfg").to_dict()  # the default's dict (and digests) unchanged
    assert resolve_recipe(r.to_dict()).guided_channels == 3
    with pytest.raises(ConfigError, match="guided_channels=0 must be a positive integer"):
        resolve_recipe({"preset": "cfg", "guided_channels": 0})
    net = sit()
    noise, y = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4)), torch.tensor([1, 2])
    a = sample(net, {"preset": "cfg", "omega": 4.0}, noise, y, steps=3)
    b = sample(net, {"preset": "cfg", "omega": 4.0, "guided_channels": 3}, noise, y, steps=3)
    c = sample(net, {"preset": "cfg", "omega": 4.0, "guided_channels": 4}, noise, y, steps=3)
    assert torch.equal(a, c) and not torch.equal(a[:, 3], b[:, 3])
