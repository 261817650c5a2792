"""The Snakemake workflow: lint, dry runs per preset and profile, bad configurations that stop it
before any job, the notebooks, and the smoke `table2` target run for real (CPU, a few minutes).

Everything runs in a copy of the workflow files in a temporary folder, so the repository's own
results/ and .snakemake/ are never touched.
"""
from __future__ import annotations

import csv
import json
import os
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

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="the smoke preset reads Debian's dataset-fashion-mnist (scripts/setup.sh installs it)")


def run(cmd, cwd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def snakemake(repo, *args, timeout=600):
    return run([sys.executable, "-m", "snakemake", *args], repo, timeout)


def output(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the workflow (Snakefile, workflow/, notebooks/, profiles/, the `slurm` link, ...)."""
    dst = tmp_path_factory.mktemp("repo")
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
    """`snakemake table2 --config preset=smoke`, run once for the module; (process, seconds)."""
    t0 = time.perf_counter()
    p = snakemake(repo, "table2", "--config", "preset=smoke", timeout=900)
    return p, time.perf_counter() - t0


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
        for job in ("prepare_data", "encode_latents", "reference_stats", "train_routing", "sample", "evaluate",
                    "flops", "report_table2", "table2"):
            assert f"rule {job}:" in text, f"{profile}/{preset}: no {job} job\n{text[-2000:]}"
        assert text.count("rule sample:") == 6 and text.count("rule evaluate:") == 6
        if profile == "slurm":
            assert "slurm_partition=" in text
    paper = output(done[("slurm", "(profile's preset)")])
    assert "results/paper/" in paper and "gpu=1" in paper and "cpus_per_task=16" in paper
    assert "results/embedded/" in output(done[("default", "embedded")])


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
    assert [p.name for p in NOTEBOOKS] == ["01_prepare_data.ipynb", "02_encode_latents.ipynb",
                                           "03_reference_stats.ipynb", "04_train.ipynb", "05_sample.ipynb",
                                           "06_evaluate.ipynb", "07_flops.ipynb", "10_table2.ipynb"]
    from sparse_guidance import experiments as X
    referenced = {v for v in X.NOTEBOOKS.values() if isinstance(v, str)} | set(X.NOTEBOOKS["report"].values())
    assert referenced == {f"notebooks/{p.name}" for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        assert nb.metadata["language_info"]["name"] == "python", path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", path.name
        assert 'preset = "smoke"' in tagged[0].source
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, f"{path.name} has stored outputs"


def test_smoke_table2_runs(repo, smoke_run):
    p, seconds = smoke_run
    assert p.returncode == 0, output(p)[-5000:]
    print(f"smoke table2: {seconds:.0f} s")
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
        assert f"| {label} |" in md
    tex = (res / "tables" / "table2.tex").read_text()
    for needle in (r"\begin{tabular}", r"+SG$_{\text{FLOPS}}$", r"+SG$_{\text{FID}}$", r"$\Delta$GFLOPs", "FID@16"):
        assert needle in tex
    assert tex.count(r"\\") == 1 + len(TABLE2_ROWS)
    # every job left its executed notebook, its log and a benchmark
    for stage in ("prepare_data", "encode_latents", "reference_stats", "train-routing", "flops-table2",
                  "sample-table2-sg_fid", "evaluate-table2-ag", "report-table2"):
        assert (res / "notebooks" / f"{stage}.ipynb").exists() and (res / "benchmarks" / f"{stage}.tsv").exists()
    m = json.loads((res / "metrics" / "table2" / "sg_fid.json").read_text())
    assert m["fid_n"] == 16 and m["ref_n"] == 32 and {"fid", "sfid", "prec", "rec"} <= set(m)
    # up to date afterwards: a second run has nothing to do
    again = snakemake(repo, "-n", "table2", "--config", "preset=smoke")
    assert again.returncode == 0 and "Nothing to be done" in output(again), output(again)[-2000:]


def test_notebooks_run_on_their_own(repo, smoke_run, tmp_path):
    """Each notebook top to bottom with its default parameters, from notebooks/ as JupyterLab runs it
    (the defaults use the smoke preset; its inputs are those the smoke run left)."""
    assert smoke_run[0].returncode == 0

    def execute(path):
        out = tmp_path / path.name
        return path.name, run([sys.executable, "-m", "papermill", "-k", "python3", "--cwd", str(repo / "notebooks"),
                               str(repo / "notebooks" / path.name), str(out)], repo, timeout=600), out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(execute, NOTEBOOKS))
    for name, p, out in results:
        assert p.returncode == 0, f"{name}:\n{output(p)[-4000:]}"
        executed = nbformat.read(out, as_version=4)
        assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code"), name
