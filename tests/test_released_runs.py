"""Runs from released checkpoints (runs.<run>.from): imported instead of trained, sampled through
their format's adapter; the paper-released preset plans Table 1 and Fig. 8 on MaskDiT's and SiT's
releases without a training job."""
from __future__ import annotations

import pytest
import torch

from sparse_guidance import config as X, stages as P, workflow as W
from sparse_guidance.checkpoint import read_checkpoint
from sparse_guidance.errors import ConfigError
from sparse_guidance.layout import Layout
from sparse_guidance.models import build_model
from sparse_guidance.models.adapters import EDMDenoiser
from sparse_guidance.models.formats import load_pretrained
from test_formats import randomised

SMOKE_NET = dict(input_size=16, in_channels=4, num_classes=10, depth=4, hidden_size=32, num_heads=2)  # smoke's model


def smoke_with(tmp_path, runs: dict):
    return X.load_config("smoke", {"results_dir": str(tmp_path / "smoke"), "runs": runs})


def test_a_released_sit_checkpoint_imports_to_the_same_velocity(tmp_path):
    net = randomised(build_model("SiT-T/2", learn_sigma=True, **SMOKE_NET))  # SiT's release keeps learned Σ
    path = tmp_path / "SiT-small.pt"
    torch.save(net.state_dict(), path)
    cfg = smoke_with(tmp_path, {"released": {"sparsity": "routing", "routes": ["1:2"], "from": {"checkpoint": str(path)},
                                             "train": {"steps": 7, "batch_size": 1}}})
    summary = P.import_run(cfg, "released")
    assert summary["imported"]["format"] == "sit" and summary["imported"]["learn_sigma_dropped"]
    stored = read_checkpoint(Layout(cfg).checkpoint("released"))
    assert stored["format"] == "sit" and stored["ema"]["final_layer.linear.weight"].shape[0] == 2 * 2 * 4
    model = P.load_run_model(cfg, "released", Layout(cfg).checkpoint("released"), device="cpu")
    x, t, y = torch.randn(3, 4, 16, 16), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 3, 9])
    with torch.no_grad():
        # Σ dropped exactly: the velocity channels' weights are kept (equal up to the matmul's blocking)
        torch.testing.assert_close(model(x, t, y), net(x, t, y), rtol=1e-6, atol=1e-6)
        routed = model(x, t, y, gamma=0.5, generator=torch.Generator().manual_seed(0))
    assert routed.shape == x.shape


def test_a_released_maskdit_checkpoint_imports_with_its_edm_adapter(tmp_path):
    net = randomised(build_model("SiT-T/2", sparsity="masking", decoder_depth=2, decoder_width=16, decoder_heads=2,
                                 **SMOKE_NET))
    with torch.no_grad():
        net.y_embedder.embedding_table.weight[-1].zero_()
    sd = {}
    for k, v in net.state_dict().items():  # MaskDiT's layout (tests/test_formats.py writes the same)
        k = "decoder_layer." + k[len("decoder_embed."):] if k.startswith("decoder_embed.") else k
        sd["model." + k] = v[:-1].t().contiguous() if k == "y_embedder.embedding_table.weight" else v
    path = tmp_path / "maskdit.pt"
    torch.save({"model": sd, "ema": sd, "opt": {}}, path)
    cfg = smoke_with(tmp_path, {"maskdit": {"sparsity": "masking", "decoder": {"depth": 2, "width": 16, "heads": 2},
                                            "from": {"checkpoint": str(path), "format": "maskdit"},
                                            "train": {"steps": 1, "batch_size": 1}}})
    P.import_run(cfg, "maskdit")
    model = P.load_run_model(cfg, "maskdit", Layout(cfg).checkpoint("maskdit"), device="cpu")
    assert isinstance(model, EDMDenoiser)
    x, t, y = torch.randn(2, 4, 16, 16), torch.tensor([0.3, 0.7]), torch.tensor([1, 2])
    with torch.no_grad():
        direct = load_pretrained(path, num_heads=2, decoder_heads=2).model(x, t, y)
        assert torch.equal(model(x, t, y), direct)


def test_runs_from_checkpoints_are_checked(tmp_path):
    ckpt = {"checkpoint": str(tmp_path / "x.pt")}
    with pytest.raises(ConfigError, match="no snapshots; remove save_steps"):
        smoke_with(tmp_path, {"r": {"sparsity": "none", "from": ckpt, "train": {"steps": 5, "batch_size": 1,
                                                                                 "save_steps": [2]}}})
    with pytest.raises(ConfigError, match="sparsity='routing' does not fit a maskdit checkpoint"):
        smoke_with(tmp_path, {"r": {"sparsity": "routing", "routes": ["1:2"], "from": {**ckpt, "format": "maskdit"},
                                    "train": {"steps": 5, "batch_size": 1}}})
    cfg = smoke_with(tmp_path, {"r": {"sparsity": "none", "from": ckpt, "train": {"steps": 5, "batch_size": 1}}})
    with pytest.raises(ConfigError, match="does not exist: download it"):
        P.import_run(cfg, "r")
    wrong = randomised(build_model("SiT-T/2", input_size=16, in_channels=4, num_classes=10, depth=2, hidden_size=32,
                                   num_heads=2))
    torch.save(wrong.state_dict(), tmp_path / "x.pt")
    cfg = smoke_with(tmp_path, {"r": {"sparsity": "none", "from": {**ckpt, "format": "sit"},
                                      "train": {"steps": 5, "batch_size": 1}}})
    with pytest.raises(ConfigError, match="depth 2.*is not the run's architecture"):
        P.import_run(cfg, "r")


def test_the_paper_released_preset_imports_instead_of_training():
    cfg = X.load_config("paper-released")
    assert X.is_imported(cfg, "masking") and X.is_imported(cfg, "routing")
    assert set(cfg["experiments"]) >= {"table1", "fig8"} and "table2" not in cfg["experiments"]
    rows = cfg["experiments"]["table1"]["rows"]
    assert {r["run"] for r in rows.values()} == {"masking", "routing"}
    assert all(r.get("step") is None for r in rows.values())
    for target in ("table1", "all"):
        rules = {rule for rule, _ in W.jobs([target], "paper-released")}
        assert {"import_masking", "import_routing", "sample", "evaluate", "reference_stats"} <= rules
        # nothing trained, and no ImageNet images read: ADM's reference batch is the only data
        assert not any(r.startswith(("train_", "finetune_", "encode_latents", "prepare_data", "t2i_"))
                       for r in rules), sorted(rules)


def test_gpu_hours_charges_no_training_to_a_released_run(tmp_path):
    import json

    from script_helpers import load_script
    G = load_script("gpu_hours")
    cfg = smoke_with(tmp_path, {"released": {"sparsity": "none", "from": {"checkpoint": str(tmp_path / "x.pt")},
                                             "train": {"steps": 1000, "batch_size": 8}}})
    counts = G.Counts(cfg)
    assert G.stage_of("import_released", {}, cfg) == ("import", {"run": "released"})
    assert G.stage_of("train_dense", {}, cfg) == ("train", {"run": "dense"})
    jobs = {json.dumps(G.stage_of(r, {}, cfg), sort_keys=True) for r in ("import_released", "train_dense")}
    cost = G.target_cost(cfg, jobs, counts, {})
    assert cost["runs"] == ["dense", "released"]
    assert cost["train"] == G.training_cost(cfg, "dense", counts)["flops"] > 0  # the import adds nothing
    released = G.training_cost(cfg, "released", counts)
    assert released["imported"] and released["flops"] > 0  # its authors' cost, shown but not charged


@pytest.mark.slow
def test_the_workflow_imports_a_released_checkpoint_without_training(tmp_path):
    """snakemake on a config with runs.<run>.from: the import job (its notebook) converts the checkpoint,
    no training job runs, and the run samples as the released network."""
    import os
    import subprocess
    import sys

    import yaml
    from test_workflow import ENV, copy_repo

    (tmp_path / "repo").mkdir()
    repo = copy_repo(tmp_path / "repo")
    net = randomised(build_model("SiT-T/2", learn_sigma=True, **SMOKE_NET), seed=3)
    torch.save(net.state_dict(), tmp_path / "SiT-small.pt")
    results = tmp_path / "results"
    overrides = {"preset": "smoke", "results_dir": str(results),
                 "runs": {"released": {"sparsity": "routing", "routes": ["1:2"],
                                       "from": {"checkpoint": str(tmp_path / "SiT-small.pt"), "source": "a test"},
                                       "train": {"steps": 5, "batch_size": 1}}}}
    (tmp_path / "released.yaml").write_text(yaml.safe_dump(overrides))
    p = subprocess.run([sys.executable, "-m", "snakemake", str(results / "runs/released/last.pt"), "--cores", "1",
                        "--configfile", str(tmp_path / "released.yaml")], cwd=repo, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "import_released" in p.stderr and "train_" not in p.stderr
    assert os.path.exists(results / "notebooks/import-released.ipynb")
    cfg = X.load_config("smoke", {k: v for k, v in overrides.items() if k != "preset"})
    model = P.load_run_model(cfg, "released", results / "runs/released/last.pt", device="cpu")
    x, t, y = torch.randn(2, 4, 16, 16), torch.tensor([0.2, 0.8]), torch.tensor([4, 5])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), net(x, t, y), rtol=1e-6, atol=1e-6)
