"""launch.py: training through torch.distributed.run (2 gloo processes on CPU) equals one process,
publishes once, and reports failures; resolve_nproc's choice of the number of processes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sparse_guidance import config as X
from sparse_guidance import launch
from sparse_guidance import stages as P
from sparse_guidance.errors import ConfigError

pytestmark = pytest.mark.slow  # torch.distributed.run with 2 processes
fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                             reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The smoke preset's dataset record and encoded latents, built once; tests copy them."""
    src = tmp_path_factory.mktemp("launch") / "src"
    cfg = X.load_config("smoke", {"results_dir": str(src)})
    P.prepare_data(cfg)
    P.encode_latents(cfg, progress=False)
    return src


def results_dir(prepared: Path, name: str) -> Path:
    out = prepared.parent / name
    shutil.copytree(prepared, out)
    return out


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@fashion
def test_two_gloo_processes_through_the_launcher_equal_one(prepared, capsys):
    one, two = results_dir(prepared, "one"), results_dir(prepared, "two")
    cfg_one = X.load_config("smoke", {"results_dir": str(one)})
    single = P.run_training(cfg_one, "routing", progress=False)

    overrides = {"results_dir": str(two), "compute": {"nproc": 2}}
    nproc = launch.resolve_nproc(X.load_config("smoke", overrides))
    assert nproc == 2
    summary = launch.launch_training("smoke", overrides, "routing", nproc, threads=2, progress=False)
    assert "launching 2 training processes" in capsys.readouterr().out

    a = torch.load(one / "runs/routing/last.pt", map_location="cpu", weights_only=True)
    b = torch.load(two / "runs/routing/last.pt", map_location="cpu", weights_only=True)
    assert a["step"] == b["step"] == 20
    diff = {}
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        diff[part] = max((b[part][k].float() - v.float()).abs().max().item() for k, v in a[part].items())
    print(f"max |2 processes - 1 process|: model {diff['model']:.3g}, EMA {diff['ema']:.3g}")
    for part in ("model", "ema"):  # the same steps; only the order of float additions differs (lr 1e-3, Adam)
        for k, v in a[part].items():
            torch.testing.assert_close(b[part][k], v, rtol=1e-4, atol=1e-5)

    # published once, by rank 0: the same files as the single-process run, no leftovers
    assert files_under(two / "runs") == files_under(one / "runs")
    assert [p.relative_to(two) for p in two.rglob("summary.json")] == [Path("runs/routing/summary.json")]
    assert json.loads((two / "runs/routing/summary.json").read_text()) == summary
    assert summary["processes"] == 2 and "processes" not in single
    for k in ("steps", "batch_size", "images_seen", "save_steps", "num_latents", "parameters"):
        assert summary[k] == single[k], k


@fashion
def test_a_failing_launch_names_the_run(prepared, tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)run 'nosuchrun' is not in config 'smoke'.*exit code 1"):
        launch.launch_training("smoke", {"results_dir": str(tmp_path / "r")}, "nosuchrun", 2, threads=2,
                               progress=False)


def test_resolve_nproc(monkeypatch):
    def cfg(**compute):
        return {"compute": {"device": "auto", **compute}}

    for gpus, want in ((0, 1), (1, 1), (2, 2), (4, 4)):
        monkeypatch.setattr(launch, "visible_gpus", lambda g=gpus: g)
        assert launch.resolve_nproc(cfg(nproc="auto")) == want, gpus
        assert launch.resolve_nproc(cfg()) == want, gpus  # no key: "auto"
    assert launch.resolve_nproc(cfg(nproc="auto", device="cpu")) == 1  # GPUs not used: one process
    assert launch.resolve_nproc(cfg(nproc=2)) == 2
    assert launch.resolve_nproc(cfg(nproc=1)) == 1
    monkeypatch.setattr(launch, "visible_gpus", lambda: 0)
    assert launch.resolve_nproc(cfg(nproc=3)) == 3                       # gloo processes on the CPU
    monkeypatch.setattr(launch, "visible_gpus", lambda: 2)
    with pytest.raises(ConfigError, match="only 2 GPU"):
        launch.resolve_nproc(cfg(nproc=3))
    assert launch.resolve_nproc(cfg(nproc=3, device="cpu")) == 3
    for bad in (0, "two", True):
        with pytest.raises(ConfigError, match="compute.nproc"):
            launch.resolve_nproc(cfg(nproc=bad))
