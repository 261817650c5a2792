"""GFLOPs per evaluation and per sampling step (Table 2), the FlopCounter and the CLI."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import tiny
from sparse_guidance import ConfigError
from sparse_guidance.flops import FlopCounter, _meta_free_model, recipe_gflops, table2
from sparse_guidance.config import paper_results
from sparse_guidance.guidance import gamma_values
from sparse_guidance.models import num_kept

D, T, P, C, FREQ = 32, 16, 2, 4, 256  # the tiny models of conftest: width 32, 16 tokens, patch 2


def macs(depth, route_blocks, k, d=D, tokens=T, p=P, c=C, out_c=C):
    """Linear/conv multiply-accumulates of one forward, counted by hand (DiT's convention)."""
    embed = tokens * d * c * p * p + FREQ * d + d * d  # patch conv, timestep MLP
    block = lambda n: n * (3 * d * d + d * d + 4 * d * d + 4 * d * d) + d * 6 * d  # qkv, proj, fc1, fc2, adaLN
    blocks = sum(block(k if i in route_blocks else tokens) for i in range(depth))
    final = d * 2 * d + tokens * d * p * p * out_c
    return embed + blocks + final


@pytest.fixture(scope="module")
def rows():
    return {spec: (ours, paper) for _, spec, ours, paper, _ in table2()}


@pytest.fixture(scope="module")
def tiny_counter():
    return FlopCounter(tiny("routing", routes=("1:2",)))


# ---------------------------------------------------------------------------------------------
# Table 2
# ---------------------------------------------------------------------------------------------

def test_table2_unguided(rows):
    ours, paper = rows["unguided"]
    assert paper == paper_results()["table2"]["unguided"]["gflops"] == 114.42  # workflow/data/paper_results.yaml
    assert abs(ours - paper) / paper < 1e-3


def test_table2_cfg(rows):
    ours, paper = rows["cfg"]
    assert abs(ours - paper) / paper < 1e-3
    assert rows["cfg"][0] == pytest.approx(2 * rows["unguided"][0], rel=1e-12)


def test_table2_ag_icg_equal_cfg(rows):
    assert rows["autoguidance"][0] == pytest.approx(rows["cfg"][0], rel=1e-12)
    assert rows["icg"][0] == pytest.approx(rows["cfg"][0], rel=1e-12)


def test_table2_sg_flops(rows):
    ours, paper = rows["sg_flops"]
    assert abs(ours - paper) / paper < 1e-3
    assert ours < rows["unguided"][0]  # the headline: SG is cheaper than one dense forward


def test_table2_sg_fid(rows):
    ours, paper = rows["sg_fid"]
    assert abs(ours - paper) / paper < 1e-2
    assert rows["sg_flops"][0] < ours < rows["cfg"][0]


def test_sit_xl2_dense_count_matches_hand_count(rows):
    hand = macs(28, set(), 256, d=1152, tokens=256) / 1e9
    assert rows["unguided"][0] == pytest.approx(hand, rel=1e-9)
    sg = (macs(28, set(range(2, 25)), num_kept(256, 0.5), d=1152, tokens=256)
          + macs(28, set(range(2, 25)), num_kept(256, 0.9), d=1152, tokens=256)) / 1e9
    assert rows["sg_flops"][0] == pytest.approx(sg, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# FlopCounter on tiny models
# ---------------------------------------------------------------------------------------------

def test_counter_matches_hand_count(tiny_counter):
    for gamma in (0.0, 0.25, 0.5, 0.75):
        k = num_kept(T, gamma)
        assert tiny_counter(gamma) == pytest.approx(macs(4, {1, 2}, k) / 1e9, rel=1e-9)


def test_gflops_strictly_decrease_with_gamma(tiny_counter):
    vals = [tiny_counter(g) for g in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)]
    assert all(b < a for a, b in zip(vals, vals[1:])), vals


def test_mean_over_schedule_equals_exact_counts(tiny_counter):
    sched = gamma_values({"schedule": "cosine", "start": 0.0, "end": 0.6}, 10)
    ks = [num_kept(T, g) for g in sched]
    assert len(set(ks)) > 3  # the schedule touches many kept counts
    fresh = FlopCounter(tiny("routing", routes=("1:2",)))
    exact = sum(fresh.at_keep(k) for k in ks) / len(ks)
    lazy = FlopCounter(tiny("routing", routes=("1:2",)))
    assert lazy.mean_over(sched) == pytest.approx(exact, rel=1e-9)
    assert len(lazy.cache) < len(fresh.cache)  # the affine shortcut was taken and still exact
    assert tiny_counter.mean_over([0.5] * 4) == tiny_counter(0.5)


def test_recipe_gflops_on_tiny_model(tiny_counter):
    f0, f5, f9 = tiny_counter(0.0), tiny_counter(0.5), tiny_counter(0.9)
    assert recipe_gflops(tiny_counter, "unguided", steps=4) == pytest.approx(f0)
    assert recipe_gflops(tiny_counter, "cfg", steps=4) == pytest.approx(2 * f0)
    assert recipe_gflops(tiny_counter, {"preset": "cfg", "omega": 1.0}, steps=4) == pytest.approx(f0)
    assert recipe_gflops(tiny_counter, "sg_flops", steps=4) == pytest.approx(f5 + f9)
    with pytest.raises(ConfigError, match="aux"):
        recipe_gflops(tiny_counter, "autoguidance", steps=4)


def test_masked_model_counts_fall_with_gamma():
    m = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
    counter = FlopCounter(m)
    vals = [counter(g) for g in (0.0, 0.25, 0.5, 0.75)]
    assert all(b < a for a, b in zip(vals, vals[1:])), vals


def test_counter_rejects_gamma_on_dense_model():
    counter = FlopCounter(tiny("none"))
    assert counter(0.0) == pytest.approx(macs(4, set(), T) / 1e9, rel=1e-9)
    with pytest.raises(ConfigError, match="routes"):
        counter(0.5)
    with pytest.raises(ConfigError):
        counter(1.0)


def test_meta_free_model_counts_like_real_weights(tiny_counter):
    m = _meta_free_model("SiT-T/2", "routing", ["1:2"], 8, depth=4, hidden_size=32, num_heads=2, num_classes=10)
    assert FlopCounter(m)(0.5) == pytest.approx(tiny_counter(0.5), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sparse_guidance.flops", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_counts_a_routed_model():
    r = cli("--model", "SiT-S/2", "--route", "1:8", "--gamma", "0.5")
    assert r.returncode == 0, r.stderr
    m = re.search(r"([0-9]+\.[0-9]+) GFLOPs", r.stdout)
    assert m, r.stdout
    expected = macs(12, set(range(1, 9)), num_kept(256, 0.5), d=384, tokens=256) / 1e9
    assert float(m.group(1)) == pytest.approx(expected, abs=0.006)
    assert "SiT-S/2" in r.stdout


def test_cli_help():
    r = cli("--help")
    assert r.returncode == 0
    assert "--gamma" in r.stdout and "--table2" in r.stdout


def test_cli_unknown_model_exits_2():
    r = cli("--model", "SiT-Q/7")
    assert r.returncode == 2
    assert "SiT-Q/7" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_gamma_exits_2():
    r = cli("--model", "SiT-S/8", "--route", "1:8", "--gamma", "1.5")
    assert r.returncode == 2
    assert "1.5" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("flag", ["--steps", "--input-size"])
def test_cli_sizes_below_one_exit_2(flag):
    r = cli(flag, "0", "--recipe", "sg_fid")
    assert r.returncode == 2 and f"{flag} 0: give an integer >= 1" in r.stderr and "Traceback" not in r.stderr
