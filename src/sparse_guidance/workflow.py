"""A notebook's link to the workflow: the config it runs under, and Snakemake's own DAG to build its
inputs when it runs on its own (JupyterLab, papermill by hand).

    cfg = setup(preset, overrides)                     # repository root as cwd, validated config
    build(["results/embedded/figures/fig6.png"], preset, omit_from="report_figure")   # its inputs first
    jobs(["table2"], "paper")                          # the jobs (rule, wildcards) of a dry run

Under the workflow itself a job's inputs exist and are up to date, and the workflow's lock is held:
its shell command sets SPARSE_GUIDANCE_JOB=1 and ``build`` does nothing. On its own, ``build`` asks
Snakemake (a subprocess in the repository root) for the files, so they are made, or remade when
the configuration they were made under has changed (Snakemake's params trigger: each rule's params
hold its job's configuration digest). There is no second job graph here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import warnings

from . import config as C
from . import progress
from .errors import ConfigError

JOB_ENV = "SPARSE_GUIDANCE_JOB"              # set by every rule's command: "1" in a workflow job
OVERRIDES_ENV = "SPARSE_GUIDANCE_OVERRIDES"  # the --config overrides of the workflow run (JSON)


def setup(preset: str = C.DEFAULT_PRESET, overrides: dict | None = None, track: str | None = None) -> dict:
    """What every notebook does first: work from the repository root (where the config's relative
    paths point) and load and validate the config, with ``overrides`` or, in a workflow job, the
    run's --config overrides; with ``track`` (text_to_image) that track's config (config.track_config).
    Torch's CPU threads follow OMP_NUM_THREADS (the job's threads)."""
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: text bars
    progress.use_text_bars(in_workflow())  # a job's log shows text bars; JupyterLab draws widgets
    os.chdir(C.repo_root())
    if not overrides and in_workflow():
        overrides = json.loads(os.environ.get(OVERRIDES_ENV, "{}"))
    cfg = C.load_config(preset, overrides)
    return C.track_config(cfg, track) if track else cfg


def rule_name(cfg: dict, rule: str) -> str:
    """The name of a rule in the workflow for a config or a track's config (t2i_<rule>), for
    ``build(..., omit_from=rule_name(cfg, "sample"))``."""
    return f"{C.TRACKS[cfg['track']]}_{rule}" if cfg.get("track") else rule


def in_workflow() -> bool:
    return os.environ.get(JOB_ENV) == "1"


def _snakemake(args: list[str], preset, overrides: dict | None, cores) -> subprocess.CompletedProcess:
    """``python -m snakemake`` in the repository root; the overrides go in a --configfile (JSON), which
    keeps their types (``--config`` turns nested numbers into strings)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sparse_guidance_overrides_") as f:
        json.dump(overrides or {}, f)
        f.flush()
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *args, "--configfile", f.name,
               "--config", f"preset={preset}"]
        return subprocess.run(cmd, cwd=C.repo_root(), capture_output=True, text=True)


def build(targets: list[str], preset=C.DEFAULT_PRESET, overrides: dict | None = None, *, omit_from: str | None = None,
          cores: int | str = "all") -> bool:
    """Make ``targets`` (files or rule names) up to date with Snakemake, in the repository root,
    unless this process is a workflow job. ``omit_from``: a rule whose jobs (and what follows them)
    are left out, e.g. the report a notebook is about to draw itself. Returns whether it ran."""
    if in_workflow():
        return False
    args = [*targets] + (["--omit-from", omit_from] if omit_from else [])
    print(f"snakemake {' '.join(args)} (preset {preset}) ...", flush=True)
    p = _snakemake(args, preset, overrides, cores)
    if p.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-4000:]}")
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", p.stdout + p.stderr)
    print(f"  {done[-1][1] if done else 0} job(s) run", flush=True)
    return True


def jobs(targets: list[str], preset, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """Every job Snakemake would run for ``targets`` from scratch (a dry run with --forceall):
    (rule, wildcards) in the order it lists them."""
    p = _snakemake(["--dry-run", "--forceall", "--nolock", *targets], preset, overrides, 1)
    text = p.stdout + p.stderr
    if p.returncode != 0:
        raise ConfigError(f"snakemake --dry-run {' '.join(targets)} failed:\n{text[-3000:]}")
    out = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", "\n" + text):
        m = re.match(r"\s*(?:local)?rule (\S+):\n", block)
        if not m:
            continue
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in w.group(1).split(", ")) if w else {}
        out.append((m.group(1), wildcards))
    return out
