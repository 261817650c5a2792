"""A workflow job's notebook runs under papermill with its kernel on IPC sockets (notebook_job), so
kernels that start at the same moment never collide on a TCP port."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from sparse_guidance import notebook_job

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("preset = 'embedded'\nrow = None\nn = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


REPORT = ("import json, os\nfrom ipykernel.kernelapp import IPKernelApp\napp = IPKernelApp.instance()\n"
          "print('REPORT', json.dumps({'transport': app.transport, 'connection_file': app.connection_file,"
          " 'preset': preset, 'row': row, 'n': n, 'cwd': os.getcwd()}))")


def job(tmp_path: Path, name: str, *args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / f"{name}.out.ipynb"
    p = subprocess.run([sys.executable, "-m", "sparse_guidance.notebook_job", str(tmp_path / f"{name}.ipynb"),
                        str(out), *args], cwd=cwd or tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    return p, out


def report(p: subprocess.CompletedProcess) -> dict:
    line = next((l for l in (p.stdout + p.stderr).splitlines() if l.startswith("REPORT ")), None)
    assert line, p.stdout + p.stderr
    return json.loads(line[len("REPORT "):])


def test_a_job_runs_on_an_ipc_kernel_with_its_parameters(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", REPORT)
    (tmp_path / "work").mkdir()
    p, out = job(tmp_path, "nb", "-p", "preset", "smoke", "-y", "{row: sg_fid, n: 3}", "--cwd", "work")
    assert p.returncode == 0, p.stdout + p.stderr
    r = report(p)  # the cell outputs reach the job's log (papermill's --log-output)
    assert r["transport"] == "ipc"
    assert (r["preset"], r["row"], r["n"]) == ("smoke", "sg_fid", 3)  # -p is a string, -y keeps YAML types
    assert r["cwd"] == str(tmp_path / "work")
    # the connection file and the sockets lived in a folder of their own, removed afterwards
    runtime = Path(r["connection_file"]).parent
    assert runtime.name.startswith("sg-kernel-") and not runtime.exists()
    executed = nbformat.read(out, 4)
    assert executed.metadata["papermill"]["parameters"] == {"preset": "smoke", "row": "sg_fid", "n": 3}
    assert "ipc" in "".join(o.get("text", "") for o in executed.cells[-1].outputs)


def test_a_failing_cell_fails_the_job_and_is_marked(tmp_path):
    write_notebook(tmp_path / "bad.ipynb", "print('before')", "raise ValueError('the stage refused its input')",
                   "print('never')")
    p, out = job(tmp_path, "bad")
    assert p.returncode != 0
    assert "the stage refused its input" in p.stdout + p.stderr
    executed = nbformat.read(out, 4)
    failed = [c for c in executed.cells if c.metadata.get("papermill", {}).get("exception")]
    assert len(failed) == 1 and "ValueError" in json.dumps(failed[0].outputs)
    assert not executed.cells[-1].get("outputs")


def test_kernels_started_at_once_all_run(tmp_path):
    """Four jobs at the same moment on one machine (the case that lost a TCP port race in CI)."""
    for k in range(4):
        write_notebook(tmp_path / f"nb{k}.ipynb", REPORT)
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda k: job(tmp_path, f"nb{k}", "-y", f"{{n: {k}}}")[0], range(4)))
    assert [p.returncode for p in done] == [0] * 4, [p.stderr[-2000:] for p in done]
    reports = [report(p) for p in done]
    assert [r["n"] for r in reports] == [0, 1, 2, 3]
    assert len({r["connection_file"] for r in reports}) == 4 and {r["transport"] for r in reports} == {"ipc"}


def test_the_runtime_folder_fits_a_socket_path(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 100)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    d = notebook_job.ipc_runtime_dir()
    try:
        assert Path(d).parent == Path("/tmp")  # a socket under the long folder would pass 107 bytes
        assert len(os.path.join(d, "kernel-ipc-99")) <= 107
    finally:
        os.rmdir(d)
    short = Path(tempfile.mkdtemp(dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    d = notebook_job.ipc_runtime_dir()
    assert Path(d).parent == short
    os.rmdir(d)
    os.rmdir(short)


def test_parameters_must_be_a_mapping():
    assert notebook_job.parse_parameters([["preset", "smoke"]], "{row: a}") == {"preset": "smoke", "row": "a"}
    with pytest.raises(SystemExit, match="YAML mapping"):
        notebook_job.parse_parameters(None, "[1, 2]")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="the smoke preset reads Debian's dataset-fashion-mnist (scripts/setup.sh installs it)")
def test_every_workflow_job_runs_its_notebook_through_notebook_job(tmp_path):
    from test_workflow import copy_repo
    repo = copy_repo(tmp_path)
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "table2", "--config", "preset=smoke"],
                       cwd=repo, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    commands = [l for l in p.stdout.splitlines() if "SPARSE_GUIDANCE_JOB=1" in l]
    assert commands and all("-m sparse_guidance.notebook_job" in l for l in commands), commands[:3]
    assert not any("papermill" in l for l in commands)


def test_progress_bars_are_widgets_in_jupyter_and_text_in_a_workflow_job(tmp_path):
    """A notebook opened in JupyterLab draws widget bars (ipywidgets, the workflow extra); the same
    notebook as a workflow job (SPARSE_GUIDANCE_JOB=1; workflow.setup switches) writes text bars,
    which its log shows."""
    write_notebook(tmp_path / "bars.ipynb", "from sparse_guidance import workflow\nworkflow.setup('smoke')\n"
                   "from sparse_guidance.progress import tqdm\n"
                   "from tqdm.notebook import tqdm as widget_bar\nbar = tqdm(range(3), desc='steps')\nlist(bar)\n"
                   "print('BAR', 'widget' if isinstance(bar, widget_bar) else 'text')")
    kinds = {}
    for job_env in ("", "1"):
        env = {**ENV, "SPARSE_GUIDANCE_JOB": job_env} if job_env else {k: v for k, v in ENV.items() if k != "SPARSE_GUIDANCE_JOB"}
        out = tmp_path / f"bars{job_env}.out.ipynb"
        p = subprocess.run([sys.executable, "-m", "sparse_guidance.notebook_job", str(tmp_path / "bars.ipynb"), str(out)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        kinds[job_env] = next(l.split()[1] for l in (p.stdout + p.stderr).splitlines() if l.startswith("BAR "))
        if job_env:
            assert "steps: 100%" in p.stdout + p.stderr  # the text bar, in the job's log
    assert kinds == {"": "widget", "1": "text"}
