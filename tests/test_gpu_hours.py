"""scripts/gpu_hours.py on the smoke preset: positive costs, linear scaling, sharing counted once; the jobs of
each target come from the workflow's own dry run."""
from __future__ import annotations

import copy

import pytest
from script_helpers import load_script

from sparse_guidance import config as X

G = load_script("gpu_hours")
pytestmark = pytest.mark.slow  # a Snakemake dry run per target


@pytest.fixture(scope="module")
def cfg():
    return X.load_config("smoke")


@pytest.fixture(scope="module")
def counts(cfg):
    return G.Counts(cfg)


@pytest.fixture(scope="module")
def est(cfg, counts):
    return G.estimate(cfg, counts)


def test_costs_are_positive(cfg, est):
    assert set(est["runs"]) == set(cfg["runs"])
    for run in est["runs"].values():
        assert run["fwd_gmacs"] > 0 and run["flops"] > 0
    for e, s in est["sampling"].items():
        assert (s["total"] > 0) == (s["rows"] > 0), e
        assert s["denoise"] >= 0 and s["metrics"] >= 0
    assert set(est["targets"]) == set(X.reported(cfg)) | {"all"}
    for name, t in est["targets"].items():
        assert t["train"] > 0 and t["sample"] > 0 and t["total"] > 0, name
        assert t["total"] == pytest.approx(t["train"] + t["sample"] + t["data"])
        assert 0 < G.gpu_hours(t["total"], 400) < G.gpu_hours(t["total"], 100)


def test_training_flops_linear_in_steps_and_batch(cfg, counts):
    base = G.training_cost(cfg, "dense", counts)["flops"]
    c = copy.deepcopy(cfg)
    c["runs"]["dense"]["train"]["steps"] *= 2
    assert G.training_cost(c, "dense", counts)["flops"] == pytest.approx(2 * base, rel=1e-12)
    c["runs"]["dense"]["train"]["batch_size"] *= 3
    assert G.training_cost(c, "dense", counts)["flops"] == pytest.approx(6 * base, rel=1e-12)


def test_routed_run_cheaper_than_dense(cfg, counts):
    routed, dense = G.training_cost(cfg, "routing", counts), G.training_cost(cfg, "dense", counts)
    assert routed["gamma"] == 0.5 and dense["gamma"] == 0.0
    assert (routed["steps"], routed["batch_size"]) == (dense["steps"], dense["batch_size"])
    assert routed["fwd_gmacs"] < dense["fwd_gmacs"]
    assert routed["flops"] < dense["flops"]
    # dense finetuning (train.gamma 0) of the routed model costs what the dense model does per image
    ft = G.training_cost(cfg, "routing_ft10", counts)
    assert ft["gamma"] == 0.0 and ft["fwd_gmacs"] == pytest.approx(dense["fwd_gmacs"], rel=1e-12)
    # the masking model trains at its own train_gamma (0.5), decoder included
    mask = G.training_cost(cfg, "masking", counts)
    assert mask["gamma"] == 0.5 and routed["fwd_gmacs"] < mask["fwd_gmacs"] < dense["fwd_gmacs"]


def test_same_as_rows_counted_once(cfg, est, counts):
    t = est["targets"]
    # Fig. 1 and Table 3 sample nothing themselves: their samples are Table 2's
    assert est["sampling"]["fig1"]["rows"] == est["sampling"]["table3"]["rows"] == 0
    assert t["fig1"]["samples"] == t["table2"]["samples"]
    assert t["fig1"]["sample"] == pytest.approx(t["table2"]["sample"], rel=1e-12)
    jobs = G.target_jobs(cfg, ["table2", "fig1", "table3"])  # Snakemake's dry runs
    both = G.target_cost(cfg, set().union(*jobs.values()), counts, {})
    assert both["sample"] == pytest.approx(t["table2"]["sample"], rel=1e-12)
    # every sample job once in `all`, charged to the experiment that owns it
    owned = sum(len(G.sampled_rows(cfg, e)) for e in cfg["experiments"])
    assert len(t["all"]["samples"]) == owned == sum(s["rows"] for s in est["sampling"].values())
    assert t["all"]["sample"] == pytest.approx(sum(s["total"] for s in est["sampling"].values()), rel=1e-9)
    assert t["all"]["sample"] < sum(v["sample"] for k, v in t.items() if k != "all")


def test_all_is_the_union_of_training(est):
    t = est["targets"]
    union = set().union(*(v["runs"] for k, v in t.items() if k != "all"))
    assert set(t["all"]["runs"]) == union
    assert t["all"]["train"] == pytest.approx(sum(est["runs"][r]["flops"] for r in union), rel=1e-12)
    assert t["all"]["train"] < sum(v["train"] for k, v in t.items() if k != "all")
    # a finetuning target needs the run it starts from
    assert {"routing", "routing_ft10"} <= set(t["fig5"]["runs"])
    assert t["fig5"]["train"] == pytest.approx(est["runs"]["routing"]["flops"] + est["runs"]["routing_ft10"]["flops"])


def test_heun_doubles_the_denoiser(cfg, counts):
    euler = G.sample_cost(cfg, "table2", "cfg", counts)
    c = copy.deepcopy(cfg)
    c["experiments"]["table2"]["sampling"]["solver"] = "heun"
    heun = G.sample_cost(c, "table2", "cfg", counts)
    assert heun["denoise_flops"] == pytest.approx(2 * euler["denoise_flops"], rel=1e-12)
    assert euler["recipe_gmacs"] == pytest.approx(2 * G.sample_cost(cfg, "table2", "unguided", counts)["recipe_gmacs"])


def test_tables_render(cfg, est):
    md = G.render_md(cfg, est, 400)
    for e in [*X.reported(cfg), "all"]:
        assert f"\n| {e} |" in md
    assert "## Assumptions" in md and "400 TFLOP/s" in md
    csv_text = G.render_csv(cfg, est, 400)
    assert csv_text.splitlines()[1].startswith("target,training runs,")


def test_main_rejects_unknown_preset(capsys):
    assert G.main(["--preset", "no-such-preset"]) == 2
    assert "unknown config preset" in capsys.readouterr().err
