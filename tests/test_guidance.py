"""Guidance recipes (Eq. 3, 7, 8): each preset equals its formula; γ schedules; recipe validation."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import NUM_CLASSES, ToyModel
from sparse_guidance import ConfigError
from sparse_guidance.guidance import (PRESETS, Recipe, combine, gamma_at, gamma_values, parse_recipe, preset,
                                      resolve_recipe)
from sparse_guidance.models import num_kept
from sparse_guidance.sampling import guided_velocity, resolve_conditions

NULL = NUM_CLASSES


def toy_inputs(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 4, 4, generator=g)
    y = torch.tensor([0, 3, 5, 9][:n])
    t = torch.tensor(0.25)
    return x, t, y


def v_main(x, y, gamma=0.0):
    """ToyModel(): x·(1 + y) + γ."""
    return x * (1 + y.view(-1, 1, 1, 1).float()) + gamma


def v_aux(x, y, gamma=0.0):
    """ToyModel(scale=2, gamma_gain=3, offset=0.25)."""
    return x * (2 + y.view(-1, 1, 1, 1).float()) + 3 * gamma + 0.25


def run(models, spec, step=0, steps=1, seed=0, n=4):
    x, t, y = toy_inputs(n)
    recipe = resolve_recipe(spec, num_steps=steps)
    main = models["main"] if isinstance(models, dict) else models
    gen = torch.Generator().manual_seed(seed)
    conds = resolve_conditions(recipe, main.cond_embedder, y, gen)
    v = guided_velocity(models, recipe, x, t, conds, step, steps, gen)
    return v, x, y, conds


def test_combine_is_eq3_on_all_channels():
    vs, vw = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(combine(vs, vw, 2.5), 2.5 * vs - 1.5 * vw)
    torch.testing.assert_close(combine(vs, vw, 1.0), vs)
    torch.testing.assert_close(combine(vs, vw, 0.0), vw)


def test_unguided(toy):
    v, x, y, _ = run(toy, "unguided")
    torch.testing.assert_close(v, v_main(x, y))
    assert len(toy.calls) == 1 and toy.calls[0]["batch"] == 4 and toy.calls[0]["gamma"] == 0.0


@pytest.mark.parametrize("omega", [1.5, 4.0])
def test_cfg(toy, omega):
    v, x, y, conds = run(toy, {"preset": "cfg", "omega": omega})
    null = torch.full_like(y, NULL)
    assert torch.equal(conds[1], null)
    torch.testing.assert_close(v, omega * v_main(x, y) + (1 - omega) * v_main(x, null))
    # batched: a single forward of batch 2N with [c, ∅]
    assert len(toy.calls) == 1
    call = toy.calls[0]
    assert call["batch"] == 8 and call["gamma"] == 0.0
    assert torch.equal(call["y"], torch.cat([y, null]))
    assert torch.equal(call["t"], torch.full((8,), 0.25))


def test_autoguidance_uses_aux_on_weak(toy, toy_aux):
    v, x, y, _ = run({"main": toy, "aux": toy_aux}, "autoguidance")
    torch.testing.assert_close(v, 1.5 * v_main(x, y) - 0.5 * v_aux(x, y))
    assert [c["batch"] for c in toy.calls] == [4] and [c["batch"] for c in toy_aux.calls] == [4]
    assert torch.equal(toy_aux.calls[0]["y"], y)  # weak branch is conditional
    assert toy_aux.calls[0]["gamma"] == 0.0


def test_icg_uses_random_class_from_generator(toy):
    v, x, y, conds = run(toy, "icg", seed=123)
    expected_c = torch.randint(0, NUM_CLASSES, y.shape, generator=torch.Generator().manual_seed(123))
    assert torch.equal(conds[1], expected_c)
    assert torch.equal(conds[0], y)
    assert (conds[1] < NUM_CLASSES).all()  # never the null class
    torch.testing.assert_close(v, 1.5 * v_main(x, y) - 0.5 * v_main(x, expected_c))
    # batched like CFG: one forward of 2N
    assert len(toy.calls) == 1 and toy.calls[0]["batch"] == 8
    assert torch.equal(toy.calls[0]["y"], torch.cat([y, expected_c]))
    # another seed draws other classes
    _, _, _, conds2 = run(ToyModel(), "icg", seed=124)
    assert not torch.equal(conds2[1], conds[1])


def test_icg_random_classes_are_uniform():
    from sparse_guidance.models import LabelEmbedder
    emb = LabelEmbedder(NUM_CLASSES, 4)
    y = torch.zeros(20000, dtype=torch.long)
    r = emb.random(y, torch.Generator().manual_seed(0))
    freq = torch.bincount(r, minlength=NUM_CLASSES + 1).float() / len(y)
    assert freq[NULL] == 0
    assert torch.allclose(freq[:NUM_CLASSES], torch.full((NUM_CLASSES,), 0.1), atol=0.015)


@pytest.mark.parametrize("gs,gw,omega", [(0.5, 0.9, 2.5), (0.0, 0.3, 1.7)])
def test_sg(toy, gs, gw, omega):
    v, x, y, _ = run(toy, {"preset": "sg", "omega": omega, "gamma_strong": gs, "gamma_weak": gw})
    torch.testing.assert_close(v, omega * v_main(x, y, gs) + (1 - omega) * v_main(x, y, gw))
    # two forwards of batch N, with the two different γ, both conditional
    assert [c["batch"] for c in toy.calls] == [4, 4]
    assert [c["gamma"] for c in toy.calls] == [gs, gw]
    assert all(torch.equal(c["y"], y) for c in toy.calls)


def test_sg_flops_preset(toy):
    v, x, y, _ = run(toy, "sg_flops")
    torch.testing.assert_close(v, 2.5 * v_main(x, y, 0.5) - 1.5 * v_main(x, y, 0.9))
    assert [c["gamma"] for c in toy.calls] == [0.5, 0.9]


def test_cfg_plus_sg_weak_is_null_with_gamma_weak(toy):
    v, x, y, _ = run(toy, "cfg+sg")
    null = torch.full_like(y, NULL)
    torch.testing.assert_close(v, 2.5 * v_main(x, y, 0.2) - 1.5 * v_main(x, null, 0.7))
    assert [c["gamma"] for c in toy.calls] == [0.2, 0.7]
    assert torch.equal(toy.calls[0]["y"], y) and torch.equal(toy.calls[1]["y"], null)


def test_ag_plus_sg_weak_is_aux_with_gamma_weak(toy, toy_aux):
    v, x, y, _ = run({"main": toy, "aux": toy_aux}, {"preset": "ag+sg", "gamma_weak": 0.4})
    torch.testing.assert_close(v, 1.5 * v_main(x, y, 0.0) - 0.5 * v_aux(x, y, 0.4))
    assert [c["gamma"] for c in toy.calls] == [0.0]
    assert [c["gamma"] for c in toy_aux.calls] == [0.4]
    assert torch.equal(toy_aux.calls[0]["y"], y)


@pytest.mark.parametrize("step,gs,gw", [(0, 0.0, 0.6), (2, 0.3, 0.3), (4, 0.6, 0.0)])
def test_sg_fid_schedules(toy, toy_aux, step, gs, gw):
    v, x, y, _ = run({"main": toy, "aux": toy_aux}, "sg_fid", step=step, steps=5)
    assert toy.calls[0]["gamma"] == pytest.approx(gs, abs=1e-12)
    assert toy_aux.calls[0]["gamma"] == pytest.approx(gw, abs=1e-12)
    assert len(toy.calls) == 1 and len(toy_aux.calls) == 1
    torch.testing.assert_close(v, 2.5 * v_main(x, y, gs) - 1.5 * v_aux(x, y, gw))


def test_sg_fid_endpoints_exact():
    r = resolve_recipe("sg_fid", num_steps=40)
    assert r.strong.model == "main" and r.weak.model == "aux"
    assert r.strong.gamma_at(0, 40) == 0.0 and r.strong.gamma_at(39, 40) == 0.6
    assert r.weak.gamma_at(0, 40) == 0.6 and r.weak.gamma_at(39, 40) == 0.0


def test_omega_one_runs_strong_branch_only(toy):
    v, x, y, _ = run(toy, {"preset": "cfg", "omega": 1.0})
    torch.testing.assert_close(v, v_main(x, y))
    assert len(toy.calls) == 1 and toy.calls[0]["batch"] == 4


def test_batched_branches_at_equal_positive_gamma(toy):
    """CFG+SG with γ_s = γ_w: one model, one γ -> one batched forward of 2N at that γ."""
    v, x, y, _ = run(toy, {"preset": "cfg+sg", "gamma_strong": 0.4, "gamma_weak": 0.4})
    assert len(toy.calls) == 1 and toy.calls[0]["batch"] == 8 and toy.calls[0]["gamma"] == 0.4
    null = torch.full_like(y, NULL)
    torch.testing.assert_close(v, 2.5 * v_main(x, y, 0.4) - 1.5 * v_main(x, null, 0.4))


# ---------------------------------------------------------------------------------------------
# γ schedules
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end", [(0.0, 0.6), (0.6, 0.0), (0.2, 0.9)])
@pytest.mark.parametrize("steps", [2, 7, 40])
def test_cosine_schedule_endpoints_and_monotone(start, end, steps):
    spec = {"schedule": "cosine", "start": start, "end": end}
    vals = gamma_values(spec, steps)
    assert len(vals) == steps
    assert vals[0] == start and vals[-1] == pytest.approx(end, abs=1e-12)
    diffs = [b - a for a, b in zip(vals, vals[1:])]
    if end > start:
        assert all(d > 0 for d in diffs)
    else:
        assert all(d < 0 for d in diffs)
    for i, v in enumerate(vals):
        s = i / (steps - 1)
        assert v == pytest.approx(start + (end - start) * (1 - math.cos(math.pi * s)) / 2, abs=1e-12)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("start,end", [(0.0, 0.6), (0.6, 0.0), (0.2, 0.9), (0.5, 0.9), (0.9, 0.1), (0.3, 0.7)])
def test_schedule_hits_endpoints_exactly(kind, start, end):
    """The docstring promises γ is exactly ``start`` at the first step and ``end`` at the last.

    Exactness matters: the kept-token count is T - int(T·γ), so a cosine 0.2→0.9 schedule ending at
    0.8999999999999999 instead of 0.9 keeps 11 of T=100 tokens at the last step instead of 10."""
    for steps in (2, 5, 40):
        vals = gamma_values({"schedule": kind, "start": start, "end": end}, steps)
        assert vals[0] == start
        assert vals[-1] == end
        assert num_kept(100, vals[-1]) == num_kept(100, end)


def test_cosine_is_slow_at_the_ends():
    vals = gamma_values({"schedule": "cosine", "start": 0.0, "end": 0.6}, 11)
    first, mid = vals[1] - vals[0], vals[6] - vals[5]
    assert first < mid  # cosine: small steps near the ends, large in the middle
    assert vals[5] == pytest.approx(0.3, abs=1e-12)


def test_linear_schedule():
    spec = {"schedule": "linear", "start": 0.2, "end": 0.8}
    vals = gamma_values(spec, 5)
    assert vals[0] == 0.2 and vals[-1] == pytest.approx(0.8, abs=1e-12)
    assert vals[2] == pytest.approx(0.5, abs=1e-12)
    assert vals == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8])


def test_constant_schedule_and_float():
    assert gamma_values({"schedule": "constant", "value": 0.3}, 4) == [0.3] * 4
    assert gamma_values(0.7, 3) == [0.7] * 3
    assert gamma_at({"schedule": "cosine", "start": 0.4, "end": 0.1}, 0, 1) == 0.4  # one step: start


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_recipes_roundtrip_yaml(name):
    r = resolve_recipe(name)
    d = r.to_dict()
    text = yaml.safe_dump(d)
    back = yaml.safe_load(text)
    assert back == d
    r2 = parse_recipe(back)
    assert r2 == r
    assert r2.to_dict() == d
    assert isinstance(r2, Recipe)
    # the preset dict itself is YAML-friendly as well
    p = preset(name)
    assert yaml.safe_load(yaml.safe_dump(p)) == p
    assert parse_recipe(yaml.safe_load(yaml.safe_dump(p))) == r


def test_recipe_from_yaml_text():
    text = """
name: my_sg
omega: 3.0
strong: {model: main, cond: class, gamma: 0.25}
weak:
  model: main
  cond: class
  gamma: {schedule: linear, start: 0.5, end: 0.95}
"""
    r = parse_recipe(yaml.safe_load(text), num_steps=10)
    assert r.omega == 3.0 and r.is_plain_sg
    assert r.weak.gamma_at(9, 10) == pytest.approx(0.95)


def test_yaml_null_cond_is_the_null_condition():
    """YAML reads `cond: null` as None; the parser takes it as the null condition ∅ (CFG's)."""
    text = """
name: cfg+sg
omega: 2.5
strong: {model: main, cond: class, gamma: 0.2}
weak:   {model: main, cond: null,  gamma: 0.7}
"""
    d = yaml.safe_load(text)
    assert d["weak"]["cond"] is None
    r = parse_recipe(d)
    assert r.weak.cond == "null"
    assert r == parse_recipe(preset("cfg+sg"))  # the same recipe as the preset, which writes "null"
    assert parse_recipe(r.to_dict()) == r       # and it round-trips as the string


@pytest.mark.parametrize("bad", ["uncond", "", 0, True, ["class"], {"cond": "null"}])
def test_a_bad_cond_names_the_value_and_the_allowed_ones(bad):
    with pytest.raises(ConfigError) as e:
        parse_recipe({"omega": 2.0, "strong": {}, "weak": {"cond": bad}})
    msg = str(e.value)
    assert f"weak.cond={bad!r}" in msg
    assert all(c in msg for c in ("class", "null", "random"))


def test_aliases():
    assert resolve_recipe("none") == resolve_recipe("unguided")
    assert resolve_recipe("ag") == resolve_recipe("autoguidance")
    assert resolve_recipe("SG_FLOP") == resolve_recipe("sg_flops")


# ---------------------------------------------------------------------------------------------
# Bad recipes
# ---------------------------------------------------------------------------------------------

def test_sg_gamma_strong_not_below_weak_names_both_values():
    with pytest.raises(ConfigError) as e:
        preset("sg", gamma_strong=0.9, gamma_weak=0.5)
    msg = str(e.value)
    assert "0.9" in msg and "0.5" in msg
    with pytest.raises(ConfigError):
        preset("sg", gamma_strong=0.5, gamma_weak=0.5)  # equal: no capacity gap


def test_scheduled_sg_crossing_detected_with_step_count():
    d = {"name": "crossing", "omega": 2.0,
         "strong": {"gamma": {"schedule": "linear", "start": 0.0, "end": 0.8}},
         "weak": {"gamma": 0.5}}
    r = parse_recipe(d)  # the step count is unknown yet: no error
    assert r.is_plain_sg
    with pytest.raises(ConfigError) as e:
        parse_recipe(d, num_steps=5)
    msg = str(e.value)
    assert "step" in msg and "0.6" in msg and "0.5" in msg


@pytest.mark.parametrize("gamma", [1.0, -0.1, 2])
def test_gamma_out_of_range_in_recipes(gamma):
    with pytest.raises(ConfigError):
        preset("sg", gamma_weak=gamma)
    with pytest.raises(ConfigError):
        parse_recipe({"strong": {"gamma": gamma}})
    with pytest.raises(ConfigError):
        parse_recipe({"strong": {"gamma": {"schedule": "cosine", "start": 0.0, "end": gamma}}})


def test_unknown_recipe_keys():
    with pytest.raises(ConfigError, match="omgea"):
        parse_recipe({"omgea": 2.0, "strong": {}})
    with pytest.raises(ConfigError, match="gama"):
        parse_recipe({"strong": {"gama": 0.5}})
    with pytest.raises(ConfigError, match="stop"):
        parse_recipe({"strong": {"gamma": {"schedule": "cosine", "start": 0.0, "stop": 0.5}}})
    with pytest.raises(ConfigError, match="strong"):
        parse_recipe({"omega": 1.0})


def test_unknown_preset_name_lists_presets():
    with pytest.raises(ConfigError) as e:
        preset("cfgg")
    assert "cfgg" in str(e.value) and "sg_fid" in str(e.value)
    with pytest.raises(ConfigError):
        resolve_recipe("magic")
    with pytest.raises(ConfigError, match="gamma_strong"):
        preset("cfg", gamma_strong=0.3)  # cfg takes no γ


def test_unknown_cond_and_schedule():
    with pytest.raises(ConfigError, match="uncond"):
        parse_recipe({"strong": {}, "weak": {"cond": "uncond"}, "omega": 2.0})
    with pytest.raises(ConfigError, match="exponential"):
        parse_recipe({"strong": {"gamma": {"schedule": "exponential", "start": 0.0, "end": 0.5}}})
    with pytest.raises(ConfigError, match="value"):
        parse_recipe({"strong": {"gamma": {"schedule": "constant"}}})
    with pytest.raises(ConfigError):
        parse_recipe({"strong": {"gamma": "0.5"}})
    with pytest.raises(ConfigError):
        parse_recipe({"strong": {"model": ""}})


def test_unguided_with_omega_and_bad_omega():
    with pytest.raises(ConfigError, match="omega"):
        parse_recipe({"omega": 2.0, "strong": {}})
    with pytest.raises(ConfigError, match="omega"):
        parse_recipe({"omega": "lots", "strong": {}, "weak": {"cond": "null"}})
    with pytest.raises(ConfigError):
        parse_recipe(["strong"])


def test_recipe_note_round_trips():
    from sparse_guidance.guidance import parse_recipe, preset

    d = {**preset("cfg", omega=2.0), "note": "Table 2 row"}
    r = parse_recipe(d)
    assert r.note == "Table 2 row"
    assert parse_recipe(r.to_dict()).to_dict() == r.to_dict()
    assert "note" not in parse_recipe(preset("cfg")).to_dict()


def test_preset_spec_may_rename_and_annotate():
    from sparse_guidance import ConfigError
    from sparse_guidance.guidance import resolve_recipe

    r = resolve_recipe({"preset": "cfg", "omega": 2.0, "name": "cfg_w2", "note": "Fig. 6"})
    assert (r.name, r.omega, r.note, r.weak.cond) == ("cfg_w2", 2.0, "Fig. 6", "null")
    import pytest
    with pytest.raises(ConfigError, match="gamma_strong"):
        resolve_recipe({"preset": "cfg", "gamma_strong": 0.2})
