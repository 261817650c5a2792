"""ODE samplers over recipes: batching, time grid, Euler/Heun, determinism and bad input."""
from __future__ import annotations

import pytest
import torch

from conftest import NUM_CLASSES, ToyModel, inputs, tiny
from sparse_guidance import ConfigError
from sparse_guidance.guidance import resolve_recipe
from sparse_guidance.sampling import sample


def noise_and_labels(n=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, size, size, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


@pytest.fixture(scope="module")
def sg_model():
    return tiny("routing", routes=("1:2",), seed=5)


# ---------------------------------------------------------------------------------------------
# What the sampler asks of the model
# ---------------------------------------------------------------------------------------------

def test_cfg_is_one_batched_call_per_step(toy):
    noise, y = noise_and_labels(n=3)
    sample(toy, "cfg", noise, y, steps=4)
    assert len(toy.calls) == 4
    for i, c in enumerate(toy.calls):
        assert c["batch"] == 6 and c["gamma"] == 0.0
        assert torch.equal(c["y"], torch.cat([y, torch.full_like(y, NUM_CLASSES)]))
        assert torch.allclose(c["t"], torch.full((6,), i / 4))


def test_sg_is_two_calls_per_step_with_two_gammas(toy):
    noise, y = noise_and_labels(n=3)
    sample(toy, "sg", noise, y, steps=3)
    assert [c["batch"] for c in toy.calls] == [3] * 6
    assert [c["gamma"] for c in toy.calls] == [0.5, 0.9] * 3
    assert all(torch.equal(c["y"], y) for c in toy.calls)


def test_heun_calls_twice_per_step(toy):
    noise, y = noise_and_labels(n=2)
    sample(toy, "cfg", noise, y, steps=3, solver="heun")
    assert len(toy.calls) == 6
    ts = [c["t"][0].item() for c in toy.calls]
    assert ts == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0])


def test_sg_fid_schedule_through_sampler(toy, toy_aux):
    noise, y = noise_and_labels(n=2)
    sample({"main": toy, "aux": toy_aux}, "sg_fid", noise, y, steps=5)
    assert [c["gamma"] for c in toy.calls] == pytest.approx([0.0, 0.6 * (1 - 0.5 ** 0.5) / 2, 0.3,
                                                             0.6 * (1 + 0.5 ** 0.5) / 2, 0.6])
    assert toy.calls[0]["gamma"] == 0.0 and toy.calls[-1]["gamma"] == 0.6
    assert toy_aux.calls[0]["gamma"] == 0.6 and toy_aux.calls[-1]["gamma"] == 0.0


# ---------------------------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------------------------

def test_euler_one_step_is_x_plus_v(sg_model):
    noise, y = noise_and_labels(n=2)
    out = sample(sg_model, "unguided", noise, y, steps=1)
    with torch.no_grad():
        v = sg_model(noise, torch.zeros(2), y)
    assert torch.equal(out, noise + v)
    assert not torch.equal(out, noise)


def test_euler_on_toy_matches_closed_form(toy):
    """Toy unguided velocity v = x·(1+y) is linear: Euler is x_{k+1} = x_k (1 + (1+y)/steps)."""
    noise, y = noise_and_labels(n=3)
    out = sample(toy, "unguided", noise, y, steps=4)
    factor = (1 + (1 + y.float()) / 4) ** 4
    torch.testing.assert_close(out, noise * factor.view(-1, 1, 1, 1))


def test_heun_on_toy_matches_closed_form(toy):
    noise, y = noise_and_labels(n=3)
    out = sample(toy, "unguided", noise, y, steps=2, solver="heun")
    a = (1 + y.float()).view(-1, 1, 1, 1) / 2  # a = dt·(1+y)
    factor = (1 + a + a * a / 2) ** 2  # trapezoid on a linear ODE
    torch.testing.assert_close(out, noise * factor)


def test_icg_through_sampler_uses_generator(toy):
    noise, y = noise_and_labels(n=4)
    out = sample(toy, "icg", noise, y, steps=1, generator=torch.Generator().manual_seed(7))
    c2 = torch.randint(0, NUM_CLASSES, y.shape, generator=torch.Generator().manual_seed(7))
    v = 1.5 * noise * (1 + y.view(-1, 1, 1, 1)) - 0.5 * noise * (1 + c2.view(-1, 1, 1, 1))
    torch.testing.assert_close(out, noise + v)


def test_heun_differs_from_euler(sg_model):
    noise, y = noise_and_labels(n=2)
    e = sample(sg_model, "cfg", noise, y, steps=2)
    h = sample(sg_model, "cfg", noise, y, steps=2, solver="heun")
    assert e.shape == h.shape == noise.shape
    assert (e - h).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------

def test_sg_sampling_is_bit_identical_with_same_seed(sg_model):
    noise, y = noise_and_labels(n=3)
    a = sample(sg_model, "sg", noise, y, steps=3, generator=torch.Generator().manual_seed(0))
    b = sample(sg_model, "sg", noise.clone(), y.clone(), steps=3, generator=torch.Generator().manual_seed(0))
    c = sample(sg_model, "sg", noise, y, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.equal(a, noise)


def test_masked_model_sg_sampling_deterministic():
    m = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2, seed=2)
    noise, y = noise_and_labels(n=2)
    a = sample(m, "sg", noise, y, steps=2, generator=torch.Generator().manual_seed(0))
    b = sample(m, "sg", noise, y, steps=2, generator=torch.Generator().manual_seed(0))
    c = sample(m, "sg", noise, y, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_dense_recipes_do_not_depend_on_generator(sg_model):
    noise, y = noise_and_labels(n=2)
    a = sample(sg_model, "cfg", noise, y, steps=2, generator=torch.Generator().manual_seed(0))
    b = sample(sg_model, "cfg", noise, y, steps=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_autoguidance_with_two_models():
    main, aux = tiny("routing", seed=1), tiny("routing", seed=2)
    noise, y = noise_and_labels(n=2)
    ag = sample({"main": main, "aux": aux}, "autoguidance", noise, y, steps=1)
    with torch.no_grad():
        t = torch.zeros(2)
        v = 1.5 * main(noise, t, y) - 0.5 * aux(noise, t, y)
    torch.testing.assert_close(ag, noise + v)


def test_recipe_object_and_dict_accepted(toy):
    noise, y = noise_and_labels(n=2)
    r = resolve_recipe("sg", num_steps=2)
    a = sample(toy, r, noise, y, steps=2)
    b = sample(ToyModel(), {"preset": "sg"}, noise, y, steps=2)
    c = sample(ToyModel(), r.to_dict(), noise, y, steps=2)
    assert torch.equal(a, b) and torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def test_unknown_solver(toy):
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError, match="rk4"):
        sample(toy, "cfg", noise, y, solver="rk4")
    assert toy.calls == []


@pytest.mark.parametrize("steps", [0, -3])
def test_steps_must_be_positive(toy, steps):
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError, match="step"):
        sample(toy, "cfg", noise, y, steps=steps)
    assert toy.calls == []


@pytest.mark.parametrize("recipe", ["autoguidance", "ag+sg", "sg_fid"])
def test_missing_aux_model(toy, recipe):
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError, match="aux"):
        sample(toy, recipe, noise, y, steps=2)
    assert toy.calls == []


def test_crossing_schedule_detected_at_sample_time(toy):
    recipe = {"name": "crossing", "omega": 2.0,
              "strong": {"gamma": {"schedule": "cosine", "start": 0.0, "end": 0.9}},
              "weak": {"gamma": {"schedule": "cosine", "start": 0.8, "end": 0.5}}}
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError) as e:
        sample(toy, recipe, noise, y, steps=10)
    assert "γ_strong" in str(e.value) and "γ_weak" in str(e.value) and "step" in str(e.value)
    assert toy.calls == []
    # with one step the schedules sit at their start values (0.0 < 0.8) and the recipe is fine
    sample(toy, recipe, noise, y, steps=1)
    assert len(toy.calls) == 2


def test_gamma_out_of_range_on_sampler_recipe(toy):
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError):
        sample(toy, {"preset": "sg", "gamma_weak": 1.0}, noise, y, steps=2)


def test_gamma_on_dense_model_through_sampler():
    dense = tiny("none")
    noise, y = noise_and_labels()
    with pytest.raises(ConfigError, match="no routes"):
        sample(dense, "sg", noise, y, steps=1)


def test_inputs_helper_consistency():
    x, t, y = inputs(n=2)
    assert x.shape == (2, 4, 8, 8) and t.shape == (2,) and y.max() < NUM_CLASSES


# ---------------------------------------------------------------------------------------------
# Inputs that would give a wrong result without a word
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_guidance_scale_or_gamma_is_refused(toy, bad):
    noise, y = noise_and_labels(n=2)
    with pytest.raises(ConfigError, match="must be a finite number"):
        sample(toy, {"preset": "cfg", "omega": bad}, noise, y, steps=2)
    with pytest.raises(ConfigError, match="weak.gamma=.* is not a finite number"):
        sample(toy, {"preset": "sg", "gamma_weak": bad}, noise, y, steps=2)
    import dataclasses  # a Recipe built directly passes the same checks
    with pytest.raises(ConfigError, match="must be a finite number"):
        sample(toy, dataclasses.replace(resolve_recipe("cfg"), omega=bad), noise, y, steps=2)
    assert not toy.calls


def test_non_finite_noise_is_refused(toy):
    noise, y = noise_and_labels(n=2)
    noise[1, 0, 3, 3] = float("nan")
    with pytest.raises(ConfigError, match="noise holds NaN"):
        sample(toy, "cfg", noise, y, steps=2)


@pytest.mark.parametrize("label", [NUM_CLASSES, -1])
def test_labels_outside_the_classes_are_refused(toy, label):
    """y = K would silently be the unconditional sample (row K of the table is ∅); y = -1 an IndexError."""
    noise, y = noise_and_labels(n=3)
    y[1] = label
    with pytest.raises(ConfigError, match=rf"class labels must lie in 0..{NUM_CLASSES - 1}; got"):
        sample(toy, "cfg", noise, y, steps=2)
    assert not toy.calls
