"""The Snakemake workflow: lint, dry runs per preset and profile, bad configurations that stop it
before any job, the notebooks, and the smoke `all` target (every table and figure) run for real
(CPU, several minutes).

Everything runs in a copy of the workflow files in a temporary folder, so the repository's own
results/ and .snakemake/ are never touched.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("Snakefile", "workflow", "notebooks", "profiles", "envs", "src", "slurm")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TABLE2_ROWS = ["SiT-T/2 + routing", "+CFG", "+AG", "+ICG", "+SG_FLOPS", "+SG_FID"]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="the smoke preset reads Debian's dataset-fashion-mnist (scripts/setup.sh installs it)")]


def run(cmd, cwd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def snakemake(repo, *args, timeout=600):
    return run([sys.executable, "-m", "snakemake", *args], repo, timeout)


def output(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the workflow (Snakefile, workflow/, notebooks/, profiles/, the `slurm` link, ...)."""
    return copy_repo(tmp_path_factory.mktemp("repo"))


def copy_repo(dst: Path) -> Path:
    """Copy the workflow files into ``dst`` (the `slurm` link stays a link); returns ``dst``."""
    for name in COPIED:
        src = ROOT / name
        if src.is_symlink():
            os.symlink(os.readlink(src), dst / name)
        elif src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dst / name)
    return dst


@pytest.fixture(scope="module")
def smoke_run(repo):
    """`snakemake all --config preset=smoke`, run once for the module; (process, seconds)."""
    t0 = time.perf_counter()
    p = snakemake(repo, "all", "--config", "preset=smoke", timeout=1800)
    return p, time.perf_counter() - t0


def sampled_rows(preset: str) -> int:
    """Sampling jobs of `all`: every row of every experiment except those reusing another's samples."""
    from sparse_guidance import config as X
    cfg = X.load_config(preset)
    return sum(1 for e in cfg["experiments"].values() for r in e["rows"].values() if not r.get("same_as"))


def test_slurm_link():
    assert (ROOT / "slurm").is_symlink() and os.readlink(ROOT / "slurm") == "profiles/slurm"
    assert (ROOT / "slurm" / "config.yaml").is_file()


def test_lint_is_clean(repo):
    p = snakemake(repo, "--lint", "--config", "preset=smoke")
    assert p.returncode == 0, output(p)
    assert "Congratulations, your workflow is in a good condition!" in output(p), output(p)


def test_dry_runs_every_preset_and_profile(repo, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    cases = {}
    for preset in ("embedded", "smoke", "paper"):
        cases[("default", preset)] = ["-n", "--nolock", "table2", "all", "--config", f"preset={preset}"]
        cases[("slurm", preset)] = ["--profile", "slurm", "-n", "--nolock", "table2", "all",
                                    "--config", f"preset={preset}"]
    cases[("slurm", "(profile's preset)")] = ["--profile", "slurm", "-n", "--nolock", "table2"]
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(cases, pool.map(lambda a: snakemake(repo, *a), cases.values())))
    for (profile, preset), p in done.items():
        text = output(p)
        assert p.returncode == 0, f"{profile}/{preset}:\n{text[-3000:]}"
        if preset == "(profile's preset)":
            continue
        from sparse_guidance import config as X
        cfg = X.load_config(preset)
        jobs = ["prepare_data", "encode_latents", "reference_stats", "train_routing", "train_masking",
                "train_dense", "sample", "evaluate", "tune", "report_table", "report_figure", "claims", "all",
                "table2"]
        jobs += ["classifier"] if "classifier" in cfg else []  # the embedded figure grids' feature network
        jobs += [f"finetune_{r}" for r in cfg["runs"] if cfg["runs"][r].get("init")]
        if cfg.get("text_to_image"):  # the text-to-image track's jobs and targets
            t2i = X.track_config(cfg)
            jobs += ["t2i_prepare_data", "t2i_encode_latents", "t2i_prompts", "t2i_train_routing", "t2i_sample",
                     "t2i_evaluate", "t2i_report_table", "t2i_report_figure", "t2i_throughput"]
            if t2i["data"]["text_features"] == "cached":  # else each batch's captions are encoded at its step
                jobs += ["t2i_text_features"]
            else:
                assert "rule t2i_text_features:" not in text, f"{profile}/{preset}: online captions need no bank"
            if t2i["data"]["prompt_sets"]:
                jobs += ["t2i_prompt_set"]
            scored = {m for e in t2i["experiments"].values() for m in e["metrics"]["metrics"]}
            if {"geneval", "scene_text"} & scored:  # the scorers the pipeline trains
                jobs += ["t2i_scorers"]
            else:
                assert "rule t2i_scorers:" not in text, f"{profile}/{preset}: HPSv3 and GenEval need no scorers"
        for job in jobs:
            assert f"rule {job}:" in text or f"{job}:" in text, f"{profile}/{preset}: no {job} job\n{text[-2000:]}"
        n = sampled_rows(preset)
        assert text.count("rule sample:") == n and text.count("rule evaluate:") == n, (preset, n)
        assert text.count("rule report_table:") + text.count("rule report_figure:") == len(X.reported(cfg))
        if profile == "slurm":
            assert "slurm_partition=" in text
    paper = output(done[("slurm", "(profile's preset)")])
    assert "results/paper/" in paper and "gpu=4" in paper and "cpus_per_task=32" in paper
    assert "results/embedded/" in output(done[("default", "embedded")])


def test_imagenet_target_is_all_without_the_text_to_image_track(repo):
    """`snakemake imagenet`: every class-conditional table and figure and the claims, no t2i job."""
    imagenet, every = (snakemake(repo, "-n", "--nolock", "--forceall", t, "--config", "preset=smoke")
                       for t in ("imagenet", "all"))
    assert imagenet.returncode == 0 and every.returncode == 0, output(imagenet)[-3000:]
    rules = lambda p: re.findall(r"^(?:local)?rule (\w+):", output(p), flags=re.M)  # noqa: E731
    assert "claims" in rules(imagenet) and not [r for r in rules(imagenet) if r.startswith("t2i_")]
    assert sorted(r for r in rules(every) if not r.startswith("t2i_") and r != "all") == \
        sorted(r for r in rules(imagenet) if r != "imagenet")   # the same jobs, as many of each


BAD = {  # name: (how it is injected, YAML or --config items, what the message must name)
    "unknown target": ("target", "no_such_target", ["No rule to produce no_such_target"]),
    "unknown config key": ("config", "bogus_key=1", ["unknown config key(s) bogus_key"]),
    "unknown recipe": ("configfile", "experiments: {table2: {rows: {cfg: {recipe: bogus}}}}",
                       ["experiments.table2.rows.cfg.recipe", "unknown guidance recipe 'bogus'"]),
    "plain SG with gamma_strong >= gamma_weak": (
        "configfile", "experiments: {table2: {rows: {sg_flops: {recipe: {preset: sg, gamma_strong: 0.9, "
        "gamma_weak: 0.5}}}}}", ["experiments.table2.rows.sg_flops.recipe", "γ_strong=0.9 ≥ γ_weak=0.5"]),
    "aux step not saved": ("preset", "extends: smoke\nexperiments: {table2: {rows: {ag: {aux: {run: routing, "
                           "step: 15}}}}}", ["experiments.table2.rows.ag.aux.step=15", "does not save a checkpoint"]),
    "unknown preset": ("config", "preset=no_such_preset", ["unknown config preset 'no_such_preset'"]),
    "unknown figure": ("target", "fig3", ["No rule to produce fig3"]),
    "grid with gamma_strong >= gamma_weak": (
        "configfile", "experiments: {fig6: {grids: [{name: bad, recipe: sg, axes: {gamma_strong: [0.6], "
        "gamma_weak: [0.3]}}]}}", ["experiments.fig6.grids[0] (row bad-gs0.6-gw0.3).recipe",
                                   "γ_strong=0.6 ≥ γ_weak=0.3"]),
    "checkpoint step not saved": (
        "configfile", "experiments: {fig5: {grids: [{name: late, recipe: cfg, axes: {step: [12]}}]}}",
        ["experiments.fig5.grids[0] (row late-it12).step=12", "does not save a checkpoint"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_stop_before_any_job(repo, tmp_path, case):
    how, what, needles = BAD[case]
    results = tmp_path / "results"
    args = ["table2", "--config", "preset=smoke", f"results_dir={results}"]
    if how == "target":
        args[0] = what
    elif how == "config":
        args.append(what)
    elif how == "configfile":
        (tmp_path / "bad.yaml").write_text(what + "\n")
        args += ["--configfile", str(tmp_path / "bad.yaml")]
    else:  # a preset given by path
        (tmp_path / "bad.yaml").write_text(what + "\n")
        args[2] = f"preset={tmp_path / 'bad.yaml'}"
    p = snakemake(repo, *args)  # not a dry run: nothing may start
    text = output(p)
    assert p.returncode != 0, text
    for n in needles:
        assert n in text, text
    assert not results.exists() and "Finished job" not in text and "localrule" not in text


def test_a_failing_notebook_keeps_its_executed_copy(repo, tmp_path):
    """A job that fails keeps its executed notebook (under log:) with the traceback."""
    (tmp_path / "broken.yaml").write_text(f"results_dir: {tmp_path / 'r'}\ndata: {{root: {tmp_path / 'none'}}}\n")
    p = snakemake(repo, str(tmp_path / "r" / "data" / "dataset.json"), "--config", "preset=smoke",
                  "--configfile", str(tmp_path / "broken.yaml"))
    assert p.returncode != 0
    executed = tmp_path / "r" / "notebooks" / "prepare_data.ipynb"
    assert executed.exists(), output(p)
    assert "Fashion-MNIST train files" in executed.read_text()
    assert not (tmp_path / "r" / "data" / "dataset.json").exists()


def test_notebooks_are_clean_and_parameterised():
    assert [p.name for p in NOTEBOOKS] == [
        "01_prepare_data.ipynb", "02_encode_latents.ipynb", "03_reference_stats.ipynb", "04_import_checkpoint.ipynb",
        "04_train.ipynb",
        "05_sample.ipynb", "06_evaluate.ipynb", "06_tune.ipynb", "07_text_features.ipynb", "08_classifier.ipynb",
        "09_scorers.ipynb", "10_table2.ipynb", "11_table1.ipynb", "12_table3.ipynb", "13_table4.ipynb", "14_table5.ipynb",
        "15_claims.ipynb", "20_fig1.ipynb",
        "21_fig2.ipynb", "22_fig4.ipynb", "23_fig5.ipynb", "24_fig6.ipynb", "25_fig7.ipynb", "26_fig8.ipynb",
        "27_fig1_t2i.ipynb", "28_fig9.ipynb", "29_figA1.ipynb", "30_sample_grids.ipynb", "31_t2i_sample_grids.ipynb"]
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert set(re.findall(r"notebooks/\d\d_\w+\.ipynb", rules)) == {f"notebooks/{p.name}" for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        assert nb.metadata["language_info"]["name"] == "python", path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", path.name
        assert 'preset = "embedded"' in tagged[0].source  # the workflow's default
        for plumbing in ("threads", "config_digest", "build_missing", "progress"):
            assert f"{plumbing} =" not in tagged[0].source, (path.name, plumbing)
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, f"{path.name} has stored outputs"


def test_smoke_table2_runs(repo, smoke_run):
    p, seconds = smoke_run
    assert p.returncode == 0, output(p)[-5000:]
    print(f"smoke all: {seconds:.0f} s")
    res = repo / "results" / "smoke"
    with open(res / "tables" / "table2.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == TABLE2_ROWS
    for r in rows:
        assert float(r["fid"]) > 0 and int(r["fid_n"]) == 16 and float(r["gflops"]) > 0 and r["steps"] == "20"
        assert r["paper_fid"] and r["paper_gflops"] and r["paper_epochs"] == "400"
    g = {r["row"]: float(r["gflops"]) for r in rows}
    assert g["cfg"] == pytest.approx(2 * g["unguided"], rel=1e-4) and g["sg_flops"] < g["cfg"]
    assert float(rows[0]["delta_gflops"]) == 0 and float(rows[4]["paper_delta_gflops"]) == -16.75
    md = (res / "tables" / "table2.md").read_text()
    header = md.splitlines()[0]
    for col in ("Method", "#Steps", "FID@16", "GFLOPs", "ΔGFLOPs", "paper FID", "paper GFLOPs", "paper #Epoch"):
        assert col in header, header
    for label in TABLE2_ROWS:
        assert re.search(rf"^\| {re.escape(label)} +\|", md, re.M), label
    tex = (res / "tables" / "table2.tex").read_text()
    for needle in (r"\begin{tabular}", r"+SG$_{\text{FLOPS}}$", r"+SG$_{\text{FID}}$", r"$\Delta$GFLOPs", "FID@16"):
        assert needle in tex
    assert tex.count(r"\\") == 1 + len(TABLE2_ROWS)
    # every job left its executed notebook, its log and a benchmark
    for stage in ("prepare_data", "encode_latents", "reference_stats", "train-routing",
                  "sample-table2-sg_fid", "evaluate-table2-ag", "report-table2"):
        assert (res / "notebooks" / f"{stage}.ipynb").exists() and (res / "benchmarks" / f"{stage}.tsv").exists()
    m = json.loads((res / "metrics" / "table2" / "sg_fid.json").read_text())
    assert m["fid_n"] == 16 and m["ref_n"] == 32 and {"fid", "sfid", "prec", "rec"} <= set(m)
    # up to date afterwards: a second run has nothing to do
    again = snakemake(repo, "-n", "all", "--config", "preset=smoke")
    assert again.returncode == 0 and "Nothing to be done" in output(again), output(again)[-2000:]


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_smoke_tables_1_and_3(repo, smoke_run):
    assert smoke_run[0].returncode == 0
    res = repo / "results" / "smoke" / "tables"
    t1 = read_csv(res / "table1.csv")
    assert [(r["method"], r["sparsity"]) for r in t1] == [("CFG", "masking"), ("SG (Ours)", "masking"),
                                                         ("CFG", "routing"), ("SG (Ours)", "routing")]
    # #Steps is the checkpoint's training step (routing rows use the step-10 snapshot), not the run's length
    assert [int(r["iteration"]) for r in t1] == [20, 20, 10, 10] and {r["steps"] for r in t1} == {"20"}
    for r in t1:
        assert float(r["fid"]) > 0 and float(r["sfid"]) > 0 and 0 <= float(r["prec"]) <= 1 and r["paper_fid"]
    header = (res / "table1.md").read_text().splitlines()[0]
    for col in ("Guidance", "Sparsity", "#Steps", "FID@16", "sFID", "IS", "Prec.", "Rec.", "paper FID", "paper #Epoch"):
        assert col in header, header
    t3 = read_csv(res / "table3.csv")
    kinds = [r["kind"] for r in t3]
    assert kinds == ["literature"] * 7 + ["paper"] * 2 + ["ours"] * 2
    assert [r["method"] for r in t3[:7]] == ["DiT-XL/2", "SD-DiT-XL/2", "FasterDiT-XL/2", "MaskDiT-XL/2",
                                             "MDT-XL/2", "SiT-XL/2", "SiT-XL/2 + REPA"]
    from sparse_guidance.config import paper_results  # the paper's own rows come from its data file
    assert all(r["source"] for r in t3)
    assert [float(t3[i]["fid"]) for i in (7, 8)] == [paper_results()["table3"][r]["fid"] for r in ("cfg", "sg_fid")]
    # our rows are Table 2's samples (same_as): the same FID as Table 2's rows
    t2 = {r["row"]: r for r in read_csv(res / "table2.csv")}
    assert float(t3[9]["fid"]) == pytest.approx(float(t2["cfg"]["fid"]))
    assert float(t3[10]["fid"]) == pytest.approx(float(t2["sg_fid"]["fid"]))
    tex = (res / "table3.tex").read_text()
    assert "SD-DiT-XL/2" in tex and tex.count(r"\\") == 1 + len(t3)


def test_smoke_figures(repo, smoke_run):
    """Every figure is written as PNG and PDF with the data behind it; the data has what the plot needs."""
    assert smoke_run[0].returncode == 0
    from sparse_guidance import config as X
    fig = repo / "results" / "smoke" / "figures"
    for e in X.FIGURES:
        assert (fig / f"{e}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", e
        assert (fig / f"{e}.pdf").read_bytes()[:5] == b"%PDF-", e
        assert read_csv(fig / f"{e}.csv"), e
    cfg = X.load_config("smoke")
    for e in X.FIGURES:  # a score measured in the classifier's features is never called FID, in no column
        header = set(read_csv(fig / f"{e}.csv")[0])
        if cfg["experiments"][e]["metrics"]["extractor"] == "classifier":
            assert not {"fid", "fid_std"} & header and "classifier_fd" in header, (e, sorted(header))
    fig1 = read_csv(fig / "fig1.csv")
    t2 = {r["row"]: r for r in read_csv(repo / "results" / "smoke" / "tables" / "table2.csv")}
    assert {r["row"]: float(r["gflops"]) for r in fig1} == {k: float(r["gflops"]) for k, r in t2.items()}
    fig4 = read_csv(fig / "fig4.csv")  # two γ, averaged over the two sampling seeds
    assert [float(r["gamma"]) for r in fig4] == [0.0, 0.5] and all(r["seeds"] == "2" and r["classifier_fd_std"] for r in fig4)
    assert all(0 <= float(r["acc"]) <= 1 and "classifier" in r["extractor"] for r in fig4)
    fig5 = read_csv(fig / "fig5.csv")
    assert {(r["method"], int(r["iteration"])) for r in fig5} == {
        ("CFG", 10), ("CFG", 20), ("CFG + dense finetuning", 15), ("SG", 20)}  # finetuned: 10 + 5 steps
    fig6 = read_csv(fig / "fig6.csv")
    assert sorted((float(r["gamma_strong"]), float(r["gamma_weak"])) for r in fig6) == [(0, .5), (0, .9), (.5, .9)]
    fig7 = read_csv(fig / "fig7.csv")
    d = {r["row"]: r for r in fig7}
    assert d["cfg"]["distance"] == "lpips" or "classifier" in d["cfg"]["distance"]  # LPIPS needs a download
    assert float(d["cfg"]["distance_value"]) > 0
    assert float(d["sg"]["distance_value"]) > 0 and not d["conditional"].get("distance_value")
    fig8 = read_csv(fig / "fig8.csv")
    assert sorted(r["model"] for r in fig8) == ["masking", "routing"]


def test_the_report_holds_every_table_and_figure(repo, smoke_run, tmp_path):
    """`snakemake --report report.html`: one self-contained page of the outputs marked report()."""
    assert smoke_run[0].returncode == 0
    page = tmp_path / "report.html"
    p = snakemake(repo, "--report", str(page), "--config", "preset=smoke")
    assert p.returncode == 0 and page.exists(), output(p)[-3000:]
    html = page.read_text(errors="replace")
    from sparse_guidance import config as X
    for name in (*X.FIGURES, "table1", "table2", "table3", "claims"):
        assert f"{name}.csv" in html, name
    assert "classifier FD" in html  # the workflow's description


def test_smoke_tables_4_and_5(repo, smoke_run):
    """The text-to-image track ran inside `all`: Tables 4-5 beside the others, its files under t2i/."""
    assert smoke_run[0].returncode == 0
    res = repo / "results" / "smoke"
    t4 = read_csv(res / "tables" / "table4.csv")
    assert [r["row"] for r in t4] == ["unguided", "cfg", "sg"]
    for r in t4:
        assert float(r["gflops"]) > 0 and float(r["images_per_s"]) > 0 and r["scene_overall"] and r["paper_overall"]
    assert float(t4[1]["gflops"]) == pytest.approx(2 * float(t4[0]["gflops"]), rel=1e-4)
    md4 = (res / "tables" / "table4.md").read_text()
    assert "scene-text score" in md4 and "| Kolors" in md4 and "TR-DiT-2.5B + SG (Ours)" in md4
    t5 = read_csv(res / "tables" / "table5.csv")
    ours = [r for r in t5 if r["kind"] == "ours"]
    assert [r["method"] for r in ours] == ["unguided (ours)", "+ CFG (ours)", "+ CFG + SG (ours)"]
    assert all(0 <= float(r["overall"]) <= 1 and float(r["gflops"]) > 0 for r in ours)
    assert len([r for r in t5 if r["kind"] == "literature"]) == 9
    for stage in ("prepare_data", "text_features-train", "text_features-eval", "scorers", "train-routing",
                  "sample-table5-cfg_sg", "evaluate-table4-sg", "report-table5", "report-fig9", "throughput"):
        assert (res / "t2i" / "notebooks" / f"{stage}.ipynb").exists(), stage
    # the track's figures: the ranking, CFG vs SG with diversity per prompt, the sample grids, Fig. A1
    for fig in ("fig1_t2i", "fig9", "figA1", "figA2", "figA3", "figA4"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 0 and (res / "figures" / f"{fig}.pdf").exists()
    fig9 = read_csv(res / "figures" / "fig9.csv")
    assert {r["method"] for r in fig9} == {"CFG", "SG"} and all(float(r["diversity"]) >= 0 for r in fig9)
    a1 = read_csv(res / "figures" / "figA1.csv")
    assert [r["setting"] for r in a1][0] == "CFG (ω 1.8)" and a1[-1]["setting"] == "SG γ 0/0.5"
    ranking = read_csv(res / "figures" / "fig1_t2i.csv")
    assert {r["kind"] for r in ranking} == {"literature", "paper", "ours"}
    assert all(float(r["gflops"]) > 0 for r in ranking if r["kind"] == "ours")  # GFLOPs per step beside every row
    assert all(float(r["gflops"]) > 0 for r in fig9)


def test_rule_paths_are_the_layouts(repo):
    """The readable path patterns of the rules and the library's Layout name the same files."""
    from sparse_guidance import config as X
    from sparse_guidance.layout import Layout, train_outputs
    p = snakemake(repo, "-n", "--forceall", "--nolock", "all", "--config", "preset=smoke", "results_dir=R")
    assert p.returncode == 0, output(p)[-3000:]
    outputs = {f for line in re.findall(r"^    output: (.*)$", p.stdout, re.M) for f in line.split(", ")}
    cfg = X.load_config("smoke", {"results_dir": "R"})
    L = Layout(cfg)
    want = {L.dataset, L.latents, L.reference, L.reference_info, L.classifier, L.classifier_reference,
            L.classifier_info}
    want |= {f for run in cfg["runs"] for f in train_outputs(cfg, run).values()}

    def experiment_outputs(layout, config, tables):  # each table's or figure's files, each sampled row's
        out = set()
        for e, exp in config["experiments"].items():
            if not exp.get("tuning_of"):  # <experiment>.tune: candidates, no table or figure of its own
                out |= {layout.table(e, x) if e in tables else layout.figure(e, x)
                        for x in (("csv", "md", "tex") if e in tables else ("png", "pdf", "csv"))}
            for r, row in exp["rows"].items():
                if not row.get("same_as"):
                    out |= {layout.samples(e, r), layout.sample_info(e, r), layout.metrics(e, r)}
                if row.get("tune"):  # the tune job's choice and its plot (png, pdf, the plotted scores)
                    base = X.tuned_base(r, row)
                    out |= {layout.tuning(e, base), *(layout.tuning_figure(e, base, x) for x in ("png", "pdf", "csv"))}
        return out

    want |= experiment_outputs(L, cfg, X.TABLES)
    want |= {L.table("claims", x) for x in ("csv", "md", "tex")}
    t2i = X.track_config(cfg)  # the text-to-image track: its own layout under R/t2i, tables in R/tables
    T = Layout(t2i)
    want |= {T.dataset, T.prompts, T.latents, T.text_features("train"), T.text_features("eval"), T.shape_classifier,
             T.scene_text_scorer, T.scorers_info}
    want |= {f for run in t2i["runs"] for f in train_outputs(t2i, run).values()}
    want |= {T.throughput, T.throughput_info, *(T.figure("figA1", x) for x in ("png", "pdf", "csv"))}
    want |= experiment_outputs(T, t2i, X.TEXT_TABLES)
    assert outputs == want, (sorted(outputs - want)[:5], sorted(want - outputs)[:5])


def test_editing_one_figure_entry_reruns_only_that_figure(repo, smoke_run, tmp_path):
    """An added ω in Fig. 6's grid: only Fig. 6's new rows are sampled and evaluated and its report
    redone, and the claims that rest on it; nothing else of `all` (Snakemake's params trigger on each
    job's config digest)."""
    assert smoke_run[0].returncode == 0
    (tmp_path / "edit.yaml").write_text("experiments: {fig6: {grids: [{name: ag_sg, label: AG + SG, recipe: ag+sg, "
                                        "aux: {run: routing, step: 10}, axes: {omega: [2.0, 3.0], "
                                        "gammas: [0.0, 0.5, 0.9]}}]}}\n")
    p = snakemake(repo, "-n", "all", "--config", "preset=smoke", "--configfile", str(tmp_path / "edit.yaml"))
    assert p.returncode == 0, output(p)[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\S+):\n(?:    .*\n)*?    wildcards: (.*)$", p.stdout, re.M)
    assert "rule claims:" in p.stdout  # the claims rest on Fig. 6 too
    assert sorted(jobs) == sorted([("evaluate", f"experiment=fig6, row=ag_sg-w3-{g}") for g in
                                   ("gs0-gw0.5", "gs0-gw0.9", "gs0.5-gw0.9")] +
                                  [("sample", f"experiment=fig6, row=ag_sg-w3-{g}") for g in
                                   ("gs0-gw0.5", "gs0-gw0.9", "gs0.5-gw0.9")] +
                                  [("report_figure", "experiment=fig6")]), p.stdout[-3000:]


def test_an_override_that_changes_nothing_reruns_nothing(repo, smoke_run, tmp_path):
    """The preset named by its path (relative or absolute), a --configfile that repeats defaults and a
    site file of resources: Snakemake plans no job (each job's command and digest are unchanged)."""
    assert smoke_run[0].returncode == 0
    (tmp_path / "same.yaml").write_text("sampling: {steps: 8, solver: euler}\nmetrics: {n: 16}\n")
    (tmp_path / "site.yaml").write_text("resources: {sample: {mem_mb: 3000, runtime: 30}}\n")
    for args in (["--config", "preset=workflow/config/smoke.yaml"],
                 ["--config", f"preset={repo / 'workflow' / 'config' / 'smoke.yaml'}"],
                 ["--configfile", str(tmp_path / "same.yaml"), "--config", "preset=smoke"],
                 ["--configfile", str(tmp_path / "site.yaml"), "--config", "preset=smoke"]):
        p = snakemake(repo, "-n", "all", *args)
        assert p.returncode == 0 and "Nothing to be done" in output(p), (args, output(p)[-3000:])


def test_small_float_overrides_reach_a_job_losslessly(repo, smoke_run, tmp_path):
    """lr: 1.0e-5 (which YAML 1.1 reads as a string) reaches the training job as the float it is."""
    assert smoke_run[0].returncode == 0
    (tmp_path / "lr.yaml").write_text("runs: {dense_lr: {sparsity: none, train: {steps: 2, batch_size: 4, "
                                      "lr: 1.0e-5, ckpt_every: 2, log_every: 1}}}\n")
    p = snakemake(repo, "results/smoke/runs/dense_lr/last.pt", "--configfile", str(tmp_path / "lr.yaml"),
                  "--config", "preset=smoke")
    assert p.returncode == 0, output(p)[-3000:]
    import torch
    stored = torch.load(repo / "results/smoke/runs/dense_lr/state/last.pt", weights_only=True)["config"]
    assert stored["lr"] == 1e-5 and isinstance(stored["lr"], float)


def test_a_notebook_on_its_own_remakes_outdated_inputs(repo, smoke_run, tmp_path):
    """Table 2's notebook with the CFG row at another ω: Snakemake remakes that row's samples and metrics
    before the table is drawn; the table never mixes the old samples in."""
    assert smoke_run[0].returncode == 0
    out = tmp_path / "table2.ipynb"
    over = json.dumps({"overrides": {"experiments": {"table2": {"rows": {"cfg": {"recipe": {"preset": "cfg",
                                                                                          "omega": 4.0}}}}}}})
    p = run([sys.executable, "-m", "papermill", "-k", "python3", "--cwd", str(repo / "notebooks"),
             str(repo / "notebooks" / "10_table2.ipynb"), str(out), "-p", "preset", "smoke", "-y", over], repo)
    assert p.returncode == 0, output(p)[-4000:]
    text = out.read_text()
    assert "2 job(s) run" in text  # sample and evaluate of table2/cfg: nothing else
    assert "ω=4, weak: ∅" in text and "ω=1.5, weak: ∅" not in text
    info = json.loads((repo / "results" / "smoke" / "samples" / "table2" / "cfg.json").read_text())
    assert info["recipe"]["omega"] == 4.0


def test_notebooks_run_on_their_own(repo, smoke_run, tmp_path):
    """Each notebook top to bottom from notebooks/, as JupyterLab runs it, on the smoke preset: it asks
    Snakemake for its inputs (up to date after the smoke run, or remade), then runs its stage or draws
    its table or figure. Two copies of the repository run half the notebooks each (one Snakemake per
    folder at a time); in each, reports first, then stages backwards."""
    assert smoke_run[0].returncode == 0
    copies = [repo, tmp_path / "copy"]
    shutil.copytree(repo, copies[1], symlinks=True)
    reports = [p for p in NOTEBOOKS if p.name[:1] in "123"]
    stages = [p for p in NOTEBOOKS if p not in reports][::-1]
    order = reports + stages

    def execute(k):
        done = []
        for path in order[k::2]:
            out = tmp_path / path.name
            p = run([sys.executable, "-m", "papermill", "-k", "python3", "--cwd", str(copies[k] / "notebooks"),
                     str(copies[k] / "notebooks" / path.name), str(out), "-p", "preset", "smoke"], copies[k])
            done.append((path, p, out))
        return done

    with ThreadPoolExecutor(2) as pool:
        results = [r for part in pool.map(execute, (0, 1)) for r in part]
    for path, p, out in results:
        assert p.returncode == 0, f"{path.name}:\n{output(p)[-4000:]}"
        executed = nbformat.read(out, as_version=4)
        assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code"), path.name
        if path.name[:1] == "2" or path.name.startswith("30"):  # a figure notebook shows its figure inline
            assert any(o.get("data", {}).get("image/png") for c in executed.cells for o in c.get("outputs", [])), path.name
