"""python -m sparse_guidance.sample: a checkpoint in, ADM's .npz out, by the workflow's own code path
(sample_set.draw): the same images as the sampling stage for the same settings, resumable, on
several processes (torchrun) the same file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_guidance import config as X, sample_set, stages as P
from sparse_guidance.errors import ConfigError
from sparse_guidance.layout import Layout
from sparse_guidance.models import build_model
from sparse_guidance.sample import main, parser, run
from sampling_helpers import kill_sampling_at

fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                             reason="Debian's dataset-fashion-mnist is not installed")
CODEC = ["--codec", "space-to-depth"]  # 4x16x16 latents -> 1x32x32 images: no VAE, no download


def tiny_checkpoint(path, learn_sigma=True, seed=0):
    """A random SiT-T/2 (depth 8, width 192) on 4x16x16 latents and 10 classes, as a plain state dict."""
    torch.manual_seed(seed)
    net = build_model("SiT-T/2", input_size=16, in_channels=4, num_classes=10, learn_sigma=learn_sigma)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(net.state_dict(), path)
    return path


def args(*extra):
    return parser().parse_args(list(extra))


def test_help_names_the_recipes_formats_and_flags():
    out = subprocess.run([sys.executable, "-m", "sparse_guidance.sample", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("--checkpoint", "--recipe", "--aux-checkpoint", "--routes", "sg_flops", "maskdit", "tread-edm",
                 "torchrun", "--guided-channels"):
        assert word in out.stdout, word


def test_a_released_style_checkpoint_samples_to_an_adm_npz(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "SiT-T-2.pt")
    out = tmp_path / "cfg.npz"
    assert main(["--checkpoint", str(ckpt), "--recipe", "cfg", "--omega", "2.0", "--num-samples", "6",
                 "--batch-size", "4", "--steps", "3", "--out", str(out), "--quiet", *CODEC]) == 0
    with np.load(out) as z:
        assert z["arr_0"].shape == (6, 32, 32, 3) and z["arr_0"].dtype == np.uint8
        assert z["arr_1"].tolist() == [0, 1, 2, 3, 4, 5]
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["checkpoints"]["main"]["format"] == "sit" and info["recipe"]["omega"] == 2.0
    assert info["checkpoints"]["main"]["architecture"]["model"] == "SiT-T/2"
    assert not sample_set.parts_dir(out).exists()


def test_bad_requests_say_which_flag_fixes_them(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "SiT-T-2.pt")
    common = ["--checkpoint", str(ckpt), "--num-samples", "2", "--steps", "2", "--out", str(tmp_path / "x.npz"), *CODEC]
    with pytest.raises(ConfigError, match="dense.*pass --routes START:END"):
        run(args(*common, "--recipe", "sg"))
    with pytest.raises(ConfigError, match="auxiliary network: pass --aux-checkpoint"):
        run(args(*common, "--recipe", "autoguidance"))
    with pytest.raises(ConfigError, match="unknown guidance recipe 'cgf'"):
        run(args(*common, "--recipe", "cgf"))
    plain = tiny_checkpoint(tmp_path / "weights.pt")
    assert main(["--checkpoint", str(plain), "--out", str(tmp_path / "y.npz"), *CODEC]) == 2
    assert "pass format='dit' or format='sit'" in capsys.readouterr().err


def test_sg_with_routes_and_ag_with_an_auxiliary_checkpoint(tmp_path):
    main_ckpt, aux = tiny_checkpoint(tmp_path / "SiT-a.pt"), tiny_checkpoint(tmp_path / "SiT-b.pt", seed=1)
    common = ["--checkpoint", str(main_ckpt), "--num-samples", "4", "--batch-size", "4", "--steps", "2", "--quiet",
              *CODEC]
    sg = run(args(*common, "--recipe", "sg", "--routes", "1:6", "--gamma-strong", "0.25", "--gamma-weak", "0.75",
                  "--out", str(tmp_path / "sg.npz")))
    assert sg["recipe"]["strong"]["gamma"] == 0.25 and sg["checkpoints"]["main"]["routes"] == ["1:6"]
    ag = run(args(*common, "--recipe", "ag", "--aux-checkpoint", str(aux), "--out", str(tmp_path / "ag.npz")))
    assert set(ag["checkpoints"]) == {"main", "aux"}
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("preset: cfg\nomega: 3.0\nguided_channels: 3\n")
    own = run(args(*common, "--recipe", str(recipe), "--out", str(tmp_path / "own.npz")))
    assert own["recipe"]["omega"] == 3.0 and own["recipe"]["guided_channels"] == 3


def test_a_killed_run_continues_where_it_stopped(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "SiT-T-2.pt")
    out = tmp_path / "s.npz"
    cli = ["--checkpoint", str(ckpt), "--num-samples", "8", "--batch-size", "2", "--steps", "2", "--quiet",
           "--out", str(out), *CODEC]
    assert main(cli) == 0
    with np.load(out) as z:
        full = z["arr_0"]
    out.unlink()
    real = sample_set.sample
    kill_sampling_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        main(cli)
    assert len(list(sample_set.parts_dir(out).glob("*.npz"))) == 2
    monkeypatch.setattr(sample_set, "sample", real)
    assert run(args(*cli))["batches_resumed"] == 2
    with np.load(out) as z:
        assert np.array_equal(z["arr_0"], full)


@fashion
def test_the_tool_and_the_workflow_stage_draw_the_same_images(tmp_path):
    cfg = X.load_config("smoke", {"results_dir": str(tmp_path / "smoke"), "data": {"train_limit": 64}})
    P.prepare_data(cfg)
    P.encode_latents(cfg, progress=False)
    P.run_training(cfg, "routing", progress=False)
    layout = Layout(cfg)
    info = P.sample_row(cfg, "table2", "cfg", progress=False)
    s = cfg["experiments"]["table2"]["sampling"]
    out = tmp_path / "cli.npz"
    assert main(["--checkpoint", layout.weights("routing"), "--num-heads", "2", "--routes", "1:2", "--recipe", "cfg",
                 "--omega", str(info["recipe"]["omega"]), "--num-samples", str(s["num_samples"]),
                 "--batch-size", str(s["batch_size"]), "--steps", str(s["steps"]), "--seed", str(s["seed"]),
                 *([] if s["bf16"] else ["--no-bf16"]), "--quiet", "--out", str(out), *CODEC]) == 0
    with np.load(layout.samples("table2", "cfg")) as a, np.load(out) as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])
    assert json.loads(out.with_suffix(".json").read_text())["checkpoints"]["main"]["format"] == "ours"


@pytest.mark.slow
def test_two_processes_write_the_same_file_as_one(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "SiT-T-2.pt")
    cli = ["--checkpoint", str(ckpt), "--recipe", "cfg", "--num-samples", "10", "--batch-size", "2", "--steps", "2",
           "--quiet", "--device", "cpu", *CODEC]
    assert main([*cli, "--out", str(tmp_path / "one.npz")]) == 0
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "sparse_guidance.sample", *cli, "--out", str(tmp_path / "two.npz")],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2


def test_the_sd_vae_decodes_the_latents_from_a_local_folder(tmp_path):
    """The paper path's decoder (SD VAE, 8x): a tiny random AutoencoderKL saved as a local folder."""
    pytest.importorskip("diffusers")
    from data_helpers import tiny_vae
    tiny_vae().save_pretrained(tmp_path / "vae")
    ckpt = tiny_checkpoint(tmp_path / "SiT-T-2.pt")
    out = tmp_path / "vae.npz"
    assert main(["--checkpoint", str(ckpt), "--recipe", "cfg", "--num-samples", "2", "--batch-size", "2",
                 "--steps", "2", "--quiet", "--vae-path", str(tmp_path / "vae"), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["arr_0"].shape == (2, 128, 128, 3)  # 4x16x16 latents, 8x up
    assert json.loads(out.with_suffix(".json").read_text())["codec"] == "sd-vae-ft-ema"
    with pytest.raises(ConfigError, match="VAE folder .* does not exist"):
        run(args("--checkpoint", str(ckpt), "--num-samples", "1", "--vae-path", str(tmp_path / "none"),
                 "--out", str(tmp_path / "n.npz")))
