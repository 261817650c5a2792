"""pipeline.py and report.py on the smoke preset, in-process (the workflow test runs them through Snakemake)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_guidance import experiments as X
from sparse_guidance import pipeline as P
from sparse_guidance import report as R
from sparse_guidance.errors import ConfigError
from sparse_guidance.io import read_json

fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                             reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture
def cfg(tmp_path):
    return X.load_config("smoke", {"results_dir": str(tmp_path / "smoke"), "data": {"train_limit": 64}})


def test_to_uint8_is_adm_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = P.to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 2, 3)
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 255]] and (out[..., 0] == out[..., 2]).all()


def test_noise_and_labels_do_not_depend_on_the_batch(cfg):
    a = P.sample_noise(cfg, 0, 6)
    b = torch.cat([P.sample_noise(cfg, 0, 2), P.sample_noise(cfg, 2, 6)])
    assert torch.equal(a, b) and a.shape == (6, 4, 16, 16)
    assert P.sample_labels(cfg, 8, 12).tolist() == [8, 9, 0, 1]
    rnd = {**cfg, "sampling": {**cfg["sampling"], "labels": "random"}}
    assert torch.equal(P.sample_labels(rnd, 0, 6)[2:], P.sample_labels(rnd, 2, 6))


@fashion
def test_build_missing_then_sample(cfg):
    ran = P.build_missing(cfg, "sample", experiment="table2", row="ag", progress=False)
    assert [s for s, _ in ran] == ["prepare_data", "encode_latents", "train"]
    assert P.build_missing(cfg, "sample", experiment="table2", row="ag", progress=False) == []
    layout = X.Layout(cfg)
    summary = json.loads(Path(layout.run_summary("routing")).read_text())
    assert summary["steps"] == 20 and Path(layout.snapshot("routing", 10)).exists()
    info = P.sample_row(cfg, "table2", "ag", progress=False)
    with np.load(layout.samples("table2", "ag")) as z:
        arr = z["arr_0"]
    assert arr.shape == (16, 32, 32, 3) and arr.dtype == np.uint8
    assert info["aux"] == {"run": "routing", "step": 10} and info["recipe"]["weak"]["model"] == "aux"
    # the same noise for every row: unguided differs from AG, but is reproducible
    P.sample_row(cfg, "table2", "unguided", progress=False)
    with np.load(layout.samples("table2", "unguided")) as z:
        first = z["arr_0"]
    P.sample_row(cfg, "table2", "unguided", progress=False)
    with np.load(layout.samples("table2", "unguided")) as z:
        assert np.array_equal(first, z["arr_0"])
    assert not np.array_equal(first, arr)

    # a training state made under other settings is not continued silently
    other = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                    "runs": {"routing": {"train": {"lr": 0.5}}}})
    with pytest.raises(ConfigError, match="trained with other settings"):
        P.run_training(other, "routing", progress=False)
    fig5 = {"fig5": {"grids": [{"name": "cfg", "recipe": "cfg", "axes": {"step": [10]}}]}}  # its step 20 is gone
    shorter = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                      "runs": {"routing": {"train": {"steps": 15}}}, "experiments": fig5})
    with pytest.raises(ConfigError, match="already trained for 20 steps"):
        P.run_training(shorter, "routing", progress=False)
    early = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                    "runs": {"routing": {"train": {"steps": 30, "save_steps": [5, 10]}}},
                                    "experiments": fig5})
    with pytest.raises(ConfigError, match=r"snapshot step\(s\) \[5\]"):
        P.run_training(early, "routing", progress=False)
    longer = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                     "runs": {"routing": {"train": {"steps": 25}}}, "experiments": fig5})
    assert P.run_training(longer, "routing", progress=False)["steps"] == 25  # resumed, not restarted
    log = (Path(layout.run_dir("routing")) / "log.csv").read_text().splitlines()
    assert log[-1].startswith("25,")


def test_count_flops_matches_the_recipes(cfg):
    out = P.count_flops(cfg, "table2")
    g = out["gflops"]
    assert g["cfg"] == pytest.approx(2 * g["unguided"]) == pytest.approx(g["ag"]) == pytest.approx(g["icg"])
    assert g["unguided"] < g["sg_fid"] < g["cfg"] and g["sg_flops"] < g["cfg"]
    assert out["delta_gflops"]["unguided"] == 0
    assert json.loads(Path(X.Layout(cfg).flops("table2")).read_text())["gflops"] == g


def test_missing_inputs_name_the_stage(cfg):
    with pytest.raises(ConfigError, match="does not exist"):
        read_json(X.Layout(cfg).flops("table2"))
    with pytest.raises(ConfigError, match="no row 'nope'"):
        X.row_spec(cfg, "table2", "nope")


def _rows():
    base = dict(setting="—", recipe="unguided", iteration=1200, steps=1200, batch_size=128, fid=50.0, fid_n=1000, ref_n=1000,
                gflops=0.1234, delta_gflops=0.0, paper_epochs=400, paper_fid=4.89, paper_gflops=114.42,
                paper_delta_gflops=0.0)
    return [dict(base, row="unguided", method="SiT-T/2 + routing"),
            dict(base, row="sg_flops", method="+SG_FLOPS", setting="ω=2.5, γ 0.5 / 0.9", fid=None,
                 gflops=0.1, delta_gflops=-0.0234, paper_fid=2.14, paper_gflops=97.67, paper_delta_gflops=-16.75)]


def test_iteration_counts_the_parent_run_of_a_finetune():
    cfg = X.load_config("smoke")
    assert R.iteration(cfg, "routing", 10) == 10 and R.iteration(cfg, "routing", None) == 20
    assert R.iteration(cfg, "routing_ft10", None) == 10 + 5  # branched at routing@10, then 5 own steps


def test_table_formats():
    rows = _rows()
    cols = R.table2_columns(rows)
    md = R.to_markdown(rows, cols, "caption")
    assert md.splitlines()[0].startswith("| Method | Setting | #Steps | FID@1000 ↓ | GFLOPs ↓ | ΔGFLOPs ↓")
    assert "| +SG_FLOPS | ω=2.5, γ 0.5 / 0.9 | 1,200 | — | 0.1000 | −0.0234 |" in md
    assert "0 (baseline)" in md and md.rstrip().endswith("caption")
    tex = R.to_latex(rows, cols, "FID_n & more")
    assert r"+SG$_{\text{FLOPS}}$" in tex and r"$\omega$=2.5" in tex and r"FID\_n \& more" in tex
    assert tex.count(r"\\") == 3  # header + 2 rows
    import csv
    parsed = list(csv.DictReader(R.to_csv(rows).splitlines()))
    assert list(parsed[0])[:4] == ["row", "method", "setting", "recipe"]
    assert parsed[1]["setting"] == "ω=2.5, γ 0.5 / 0.9" and parsed[1]["fid"] == "" and parsed[1]["gflops"] == "0.1"
    assert R.latex_method("+SG_FID (ours)") == r"+SG$_{\text{FID}}$ (ours)"
    assert R.fmt_delta(1e-9, 2) == "0 (baseline)" and R.fmt_delta(-16.75, 2) == "−16.75"


@fashion
def test_sample_sets_resume_and_carry_labels(cfg, monkeypatch):
    """A sampling job killed after some batches continues from them, and its result equals an
    uninterrupted run's; the npz carries the class labels (arr_1) the accuracy metric reads."""
    cfg = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                  "experiments": {"table2": {"sampling": {"batch_size": 4}}}})
    P.build_missing(cfg, "sample", experiment="table2", row="cfg", progress=False)
    layout = X.Layout(cfg)
    P.sample_row(cfg, "table2", "cfg", progress=False)
    with np.load(layout.samples("table2", "cfg")) as z:
        full, labels = z["arr_0"], z["arr_1"]
    assert labels.tolist() == [i % 10 for i in range(16)] and full.shape[0] == 16
    parts = P._parts_dir(layout.samples("table2", "cfg"))
    assert not parts.exists()  # cleaned up once the set is written

    import sparse_guidance.sampling as S
    real, calls = S.sample, []

    def dies_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(S, "sample", dies_on_third)
    Path(layout.samples("table2", "cfg")).unlink()
    with pytest.raises(KeyboardInterrupt):
        P.sample_row(cfg, "table2", "cfg", progress=False)
    assert sorted(p.name for p in parts.glob("*.npz")) == ["000000.npz", "000001.npz"]
    assert not Path(layout.samples("table2", "cfg")).exists()
    calls.clear()
    monkeypatch.setattr(S, "sample", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    info = P.sample_row(cfg, "table2", "cfg", progress=False)
    assert info["batches_resumed"] == 2 and len(calls) == 2  # only the missing batches were drawn
    with np.load(layout.samples("table2", "cfg")) as z:
        assert np.array_equal(z["arr_0"], full) and np.array_equal(z["arr_1"], labels)
    # parts of another setting are not reused
    parts.mkdir()
    (parts / "key.txt").write_text("other")
    (parts / "000000.npz").write_bytes(b"junk")
    assert P.sample_row(cfg, "table2", "cfg", progress=False)["batches_resumed"] == 0


@fashion
def test_dense_finetuning_starts_from_the_snapshot(cfg):
    P.build_missing(cfg, "train", run="routing_ft10", progress=False)
    layout = X.Layout(cfg)
    summary = P.run_training(cfg, "routing_ft10", progress=False)
    assert summary["steps"] == 5
    from sparse_guidance.checkpoint import read_checkpoint
    snap = read_checkpoint(layout.snapshot("routing", 10))
    ft = read_checkpoint(layout.checkpoint("routing_ft10"))
    # 5 steps at lr 1e-4 move the weights a little from the snapshot's EMA, not from a fresh init
    w = "blocks.0.attn.qkv.weight"
    start, end = snap["ema"][w], ft["model"][w]
    assert 0 < (end - start).abs().max() < 0.05 * start.abs().max()
    fresh = X.build_run_model(cfg, "routing_ft10").state_dict()[w]
    assert (end - fresh).abs().max() > 10 * (end - start).abs().max()


def test_seed_replicates_aggregate_to_mean_and_std():
    rows = [{"row": f"a.s{i}", "tags": {"base": "a", "seed": i}, "fid": v, "acc": None} for i, v in enumerate([1., 3.])]
    rows.append({"row": "b", "tags": {}, "fid": 5.0, "acc": 0.5})
    out = R.aggregate_seeds(rows)
    assert [r["row"] for r in out] == ["a", "b"]
    assert out[0]["fid"] == 2.0 and out[0]["fid_std"] == pytest.approx(2 ** 0.5) and out[0]["seeds"] == 2
    assert out[0]["acc"] is None and out[1]["fid_std"] is None and out[1]["seeds"] == 1
    col = R.Column("fid", "FID", "FID", "{:.2f}")
    assert R.cell(out[0], col) == "2.00 ± 1.41" and R.cell(out[1], col) == "5.00"
