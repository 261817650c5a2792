"""stages.py, results.py and tables.py on the smoke preset, in-process (the workflow test runs them through
Snakemake)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pandas as pd

from sparse_guidance import config as X
from sparse_guidance import results as R
from sparse_guidance import evaluation as E, sample_set, stages as P
from sparse_guidance import tables as T
from sparse_guidance.checkpoint import read_checkpoint
from sparse_guidance.errors import ConfigError
from sparse_guidance.flops import FlopCounter, recipe_gflops
from sparse_guidance.io import read_json, write_json
from sparse_guidance.layout import Layout
from sampling_helpers import kill_sampling_at

fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                             reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture
def cfg(tmp_path):
    return X.load_config("smoke", {"results_dir": str(tmp_path / "smoke"), "data": {"train_limit": 64}})


def prepare(cfg, *runs):
    """The jobs before sampling, in order, in this process (what snakemake runs first)."""
    P.prepare_data(cfg)
    P.encode_latents(cfg, progress=False)
    for run in runs:
        P.run_training(cfg, run, progress=False)


def test_to_uint8_is_adm_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = sample_set.to_uint8(x)
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
def test_train_then_sample(cfg):
    prepare(cfg, "routing")
    layout = Layout(cfg)
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


def test_missing_inputs_name_the_stage(cfg):
    with pytest.raises(ConfigError, match="does not exist"):
        read_json(Layout(cfg).sample_info("table2", "nope"))
    with pytest.raises(ConfigError, match="no row 'nope'"):
        X.row_spec(cfg, "table2", "nope")


def _rows() -> pd.DataFrame:
    base = dict(setting="—", recipe="unguided", iteration=1200, steps=1200, batch_size=128, fid=50.0, fid_n=1000,
                ref_n=1000, gflops=0.1234, delta_gflops=0.0, paper_epochs=400, paper_fid=4.89, paper_gflops=114.42,
                paper_delta_gflops=0.0)
    return pd.DataFrame([dict(base, row="unguided", method="SiT-T/2 + routing"),
                         dict(base, row="sg_flops", method="+SG_FLOPS", setting="ω=2.5, γ 0.5 / 0.9", fid=None,
                              gflops=0.1, delta_gflops=-0.0234, paper_fid=2.14, paper_gflops=97.67,
                              paper_delta_gflops=-16.75)], dtype=object)


def test_iteration_counts_the_parent_run_of_a_finetune():
    cfg = X.load_config("smoke")
    assert X.iteration(cfg, "routing", 10) == 10 and X.iteration(cfg, "routing", None) == 20
    assert X.iteration(cfg, "routing_ft10", None) == 10 + 5  # branched at routing@10, then 5 own steps


def test_table_formats(tmp_path):
    rows = _rows()
    shown = T.table(rows, T.table2_columns(rows))
    assert list(shown.columns)[:6] == ["Method", "Setting", "#Steps", "FID@1000 ↓", "GFLOPs ↓", "ΔGFLOPs ↓"]
    assert shown.iloc[1].tolist()[:6] == ["+SG_FLOPS", "ω=2.5, γ 0.5 / 0.9", "1,200", "—", "0.1000", "−0.0234"]
    md = T.to_markdown(shown, "caption")
    assert md.splitlines()[0].startswith("| Method ") and "0 (baseline)" in md and md.rstrip().endswith("caption")
    tex = T.to_latex(shown, "FID_n & more", "tab:table2")
    assert r"+SG$_{\text{FLOPS}}$" in tex and r"$\omega$=2.5" in tex and r"FID\_n \& more" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\\") == 3  # header + 2 rows, booktabs
    T.write(tmp_path / "table2", rows, shown, "cap")
    import csv
    parsed = list(csv.DictReader((tmp_path / "table2.csv").read_text().splitlines()))
    assert list(parsed[0])[:4] == ["row", "method", "setting", "recipe"]
    assert parsed[1]["setting"] == "ω=2.5, γ 0.5 / 0.9" and parsed[1]["fid"] == "" and parsed[1]["gflops"] == "0.1"
    assert (tmp_path / "table2.md").read_text() == md.replace("caption", "cap")
    assert T.latex_method("+SG_FID (ours)") == r"+SG$_{\text{FID}}$ (ours)"
    assert T.cell(1e-9, "delta:2") == "0 (baseline)" and T.cell(-16.75, "delta:2") == "−16.75"


@fashion
def test_sample_sets_resume_and_carry_labels(cfg, monkeypatch):
    """A sampling job killed after some batches continues from them, and its result equals an
    uninterrupted run's; the npz carries the class labels (arr_1) the accuracy metric reads."""
    cfg = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                  "experiments": {"table2": {"sampling": {"batch_size": 4}}}})
    prepare(cfg, "routing")
    layout = Layout(cfg)
    P.sample_row(cfg, "table2", "cfg", progress=False)
    with np.load(layout.samples("table2", "cfg")) as z:
        full, labels = z["arr_0"], z["arr_1"]
    assert labels.tolist() == [i % 10 for i in range(16)] and full.shape[0] == 16
    parts = sample_set.parts_dir(layout.samples("table2", "cfg"))
    assert not parts.exists()  # cleaned up once the set is written

    real = sample_set.sample
    calls = kill_sampling_at(monkeypatch, 3)
    Path(layout.samples("table2", "cfg")).unlink()
    with pytest.raises(KeyboardInterrupt):
        P.sample_row(cfg, "table2", "cfg", progress=False)
    assert sorted(p.name for p in parts.glob("*.npz")) == ["000000.npz", "000001.npz"]
    assert not Path(layout.samples("table2", "cfg")).exists()
    calls.clear()
    monkeypatch.setattr(sample_set, "sample", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    info = P.sample_row(cfg, "table2", "cfg", progress=False)
    assert info["batches_resumed"] == 2 and len(calls) == 2  # only the missing batches were drawn
    with np.load(layout.samples("table2", "cfg")) as z:
        assert np.array_equal(z["arr_0"], full) and np.array_equal(z["arr_1"], labels)
    # parts of another setting are not reused
    parts.mkdir()
    (parts / "key.txt").write_text("other")
    (parts / "000000.npz").write_bytes(b"junk")
    assert P.sample_row(cfg, "table2", "cfg", progress=False)["batches_resumed"] == 0

    # parts drawn from other weights are not reused: a killed job, then the checkpoint is replaced
    # (a retrain) and the job rerun under the same settings
    kill_sampling_at(monkeypatch, 3)
    Path(layout.samples("table2", "cfg")).unlink()
    with pytest.raises(KeyboardInterrupt):
        P.sample_row(cfg, "table2", "cfg", progress=False)
    ck = read_checkpoint(layout.checkpoint("routing"))
    ck["ema"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ck["ema"].items()}
    torch.save(ck, layout.checkpoint("routing"))
    monkeypatch.setattr(sample_set, "sample", real)
    assert P.sample_row(cfg, "table2", "cfg", progress=False)["batches_resumed"] == 0
    with np.load(layout.samples("table2", "cfg")) as z:
        assert not np.array_equal(z["arr_0"], full)  # all of it from the new weights


@fashion
def test_dense_finetuning_starts_from_the_snapshot(cfg):
    prepare(cfg, "routing")
    layout = Layout(cfg)
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
    rows = [{"row": f"a.s{i}", "base": "a", "seed": i, "fid": v, "acc": None} for i, v in enumerate([1., 3.])]
    rows.append({"row": "b", "base": "b", "seed": 0, "fid": 5.0, "acc": 0.5})
    out = R.aggregate(pd.DataFrame(rows, dtype=object), keys=("fid", "acc")).to_dict("records")
    assert [r["row"] for r in out] == ["a", "b"]
    assert out[0]["fid"] == 2.0 and out[0]["fid_std"] == pytest.approx(2 ** 0.5) and out[0]["seeds"] == 2
    assert out[0]["acc"] is None and out[1]["fid_std"] is None and out[1]["seeds"] == 1
    assert T.cell(out[0]["fid"], "{:.2f}", out[0]["fid_std"]) == "2.00 ± 1.41" and T.cell(5.0, "{:.2f}") == "5.00"


@fashion
def test_results_are_never_combined_with_files_of_other_settings(cfg):
    """results.load checks every file against the digest of the job that made it under this config."""
    prepare(cfg, "routing")
    E.reference_stats(cfg, progress=False)
    for row in ("unguided", "cfg"):
        P.sample_row(cfg, "table2", row, progress=False)
        E.evaluate_row(cfg, "table2", row, progress=False)
    def two_rows(**cfg_row):  # table2 with its unguided and cfg rows only, no other experiment
        dropped = {e: None for e in X.reported(cfg) if e != "table2"}
        rows = {r: None for r in ("ag", "icg", "sg_flops", "sg_fid")} | ({"cfg": cfg_row} if cfg_row else {})
        return X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                       "experiments": {**dropped, "table2": {"rows": rows}}})

    small = two_rows()
    df = R.load(small, "table2")
    assert list(df["row"]) == ["unguided", "cfg"] and df["fid"].iloc[0] > 0
    # GFLOPs per step, recorded by the sampling job on the row's networks, equal a count on an
    # untrained model of the run's architecture (weights do not matter); ΔGFLOPs is to the baseline
    meta = FlopCounter(X.build_run_model(cfg, "routing", device="meta").to_empty(device="cpu"))
    steps = small["experiments"]["table2"]["sampling"]["steps"]
    assert df["gflops"].tolist() == [round(recipe_gflops(meta, r, steps), 6) for r in ("unguided", {"preset": "cfg"})]
    assert df["gflops"].iloc[1] == pytest.approx(2 * df["gflops"].iloc[0])
    assert df["delta_gflops"].tolist() == [0, round(df["gflops"].iloc[1] - df["gflops"].iloc[0], 6)]
    assert df["paper_fid"].tolist() == [4.89, 2.57] and df["baseline"].tolist() == [True, False]
    other = two_rows(recipe={"preset": "cfg", "omega": 3.0})
    with pytest.raises(ConfigError, match="made under other settings.*snakemake .*cfg.json"):
        R.load(other, "table2")  # cfg's samples were drawn at ω=1.5
    info = Layout(cfg).sample_info("table2", "unguided")
    write_json(info, {**read_json(info), "config_digest": "stale"})
    with pytest.raises(ConfigError, match="unguided.json"):
        R.load(small, "table2")


@fashion
@pytest.mark.parametrize("native", [False, True])
def test_bf16_auto_is_bf16_only_where_the_device_has_it(cfg, monkeypatch, native):
    """bf16: auto trains and samples in bf16 on a device with native bf16 and in fp32 elsewhere (the
    same weights and images as bf16: false/true), and the jobs record what it resolved to; batches of
    a killed job drawn in the other precision are not reused."""
    from sparse_guidance import performance

    monkeypatch.setattr(performance, "native_bf16", lambda device: native)
    explicit = X.load_config("smoke", {"results_dir": cfg["results_dir"] + "-explicit", "data": {"train_limit": 64},
                                       "runs": {"routing": {"train": {"bf16": native}}},
                                       "sampling": {"bf16": native}})
    auto = X.load_config("smoke", {"results_dir": cfg["results_dir"], "data": {"train_limit": 64},
                                   "runs": {"routing": {"train": {"bf16": "auto"}}},
                                   "sampling": {"bf16": "auto"},
                                   "experiments": {"table2": {"sampling": {"batch_size": 8}}}})
    for c in (explicit, auto):
        prepare(c, "routing")
        assert read_json(Layout(c).run_summary("routing"))["bf16"] is native
        assert P.sample_row(c, "table2", "unguided", progress=False)["bf16"] is native
    a, b = (read_checkpoint(Layout(c).checkpoint("routing"))["ema"] for c in (explicit, auto))
    assert all(torch.equal(a[k], b[k]) for k in a)   # auto trained exactly as the explicit setting
    images = [np.load(Layout(c).samples("table2", "unguided"))["arr_0"] for c in (explicit, auto)]
    assert np.array_equal(*images)

    # a job killed after its first batch, resumed where the other precision is native: starts over
    real = sample_set.sample
    kill_sampling_at(monkeypatch, 2)
    Path(Layout(auto).samples("table2", "unguided")).unlink()
    with pytest.raises(KeyboardInterrupt):
        P.sample_row(auto, "table2", "unguided", progress=False)
    monkeypatch.setattr(sample_set, "sample", real)
    monkeypatch.setattr(performance, "native_bf16", lambda device: not native)
    info = P.sample_row(auto, "table2", "unguided", progress=False)
    assert info["batches_resumed"] == 0 and info["bf16"] is (not native)
