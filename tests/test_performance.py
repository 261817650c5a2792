"""GPU fast paths on the CPU: the data read ahead by a thread trains the same steps, compiled blocks
give the same velocities for every token count with one graph, and the CPU path is left as it is."""
from __future__ import annotations

import pytest
import torch

from sparse_guidance import ConfigError
from sparse_guidance import performance as P
from sparse_guidance.guidance import resolve_recipe
from sparse_guidance.models import build_model
from sparse_guidance.models.adapters import EDMDenoiser
from sparse_guidance.sampling import sample
from sparse_guidance.train import BatchPrefetcher, train
from test_train import CFG, Killer, dataset, make_model, same


@pytest.mark.parametrize("sparsity", ["routing", "masking"])
def test_reading_ahead_trains_the_same_steps(tmp_path, sparsity):
    ref = train(make_model(sparsity), dataset(), CFG, tmp_path / "ref", progress=False, prefetch=0)
    ahead = train(make_model(sparsity), dataset(), CFG, tmp_path / "ahead", progress=False, prefetch=3)
    assert same(ref[0], ahead[0]) and same(ref[1], ahead[1])


def test_a_run_killed_while_reading_ahead_resumes_to_the_same_weights(tmp_path):
    ref_model, _ = train(make_model(), dataset(), CFG, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):  # raised in the reading thread, raised again in the loop
        train(make_model(), Killer(dataset(), after=6 * 8 + 3), CFG, tmp_path / "run", progress=False, prefetch=2)
    model, _ = train(make_model(), dataset(), CFG, tmp_path / "run", progress=False, prefetch=2)
    assert same(model, ref_model)


def test_the_prefetcher_yields_each_steps_batch_in_order():
    data = dataset(40)
    rows = slice(2, 6)
    eager = list(BatchPrefetcher(data, range(3, 9), seed=5, batch_size=8, rows=rows, depth=0))
    ahead = list(BatchPrefetcher(data, range(3, 9), seed=5, batch_size=8, rows=rows, depth=2))
    assert len(eager) == len(ahead) == 6
    for (g0, x0, y0), (g1, x1, y1) in zip(eager, ahead):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and x0.shape[0] == 4
        assert torch.equal(g0.get_state(), g1.get_state())  # the step continues from the same draws


def tiny_sit(**kw):
    torch.manual_seed(0)
    model = build_model("SiT-T/2", sparsity="routing", routes=["1:2"], input_size=8, num_classes=10, depth=4, hidden_size=32,
                        num_heads=2, **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def test_compiled_blocks_give_the_same_velocity_for_every_token_count_with_one_graph():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model, compiled = tiny_sit(), tiny_sit()
    keys = list(compiled.state_dict())
    P.compile_blocks(compiled, backend="eager")  # the graph capture only: equal bit for bit
    assert list(compiled.state_dict()) == keys  # in place: checkpoints load as before
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([0.2, 0.5, 0.9]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        for gamma in (0.0, 0.25, 0.5, 0.6, 0.75, 0.9):  # 16, 12, 8, 7, 4 and 2 tokens on the route
            a = model(x, t, y, gamma=gamma, generator=torch.Generator().manual_seed(1))
            b = compiled(x, t, y, gamma=gamma, generator=torch.Generator().manual_seed(1))
            assert torch.equal(a, b), gamma
        # SG_FID's cosine schedule and CFG's doubled batch: still the same graphs, the same samples
        noise, labels = torch.randn(2, 4, 8, 8), torch.tensor([4, 5])
        recipe = resolve_recipe("sg_fid", num_steps=6)
        models = {"main": model, "aux": model}
        ref = sample(models, recipe, noise, labels, steps=6, generator=torch.Generator().manual_seed(2))
        got = sample({"main": compiled, "aux": compiled}, recipe, noise, labels, steps=6,
                     generator=torch.Generator().manual_seed(2))
        assert torch.equal(ref, got)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert 0 < graphs <= 2 * len(compiled.blocks), graphs  # a static first graph at most, then one dynamic


def test_compile_modes_and_models_without_blocks_are_checked():
    with pytest.raises(ConfigError, match="compile mode 'fast' is not one of none, default"):
        P.compile_blocks(tiny_sit(), "fast")
    with pytest.raises(ConfigError, match="Linear has no `blocks` to compile"):
        P.compile_blocks(torch.nn.Linear(2, 2))
    model = tiny_sit()
    assert P.compile_blocks(model, "none") is model and model.blocks[0]._compiled_call_impl is None
    masked = build_model("SiT-T/2", sparsity="masking", input_size=8, num_classes=10, depth=2, hidden_size=32,
                         num_heads=2, decoder_depth=1, decoder_width=16, decoder_heads=2)
    assert len(P.transformer_blocks(EDMDenoiser(masked))) == 3  # through an adapter: encoder and decoder


def test_the_cpu_path_is_left_as_it_is():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert P.configure_backends("cpu") == {}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    t = torch.arange(6)
    assert P.to_device(t, "cpu") is t or torch.equal(P.to_device(t, "cpu"), t)
    assert P.matmul_peak_tflops("cpu", torch.float32, size=64, repeats=2) > 0


@pytest.mark.slow
def test_inductor_compiles_the_blocks_on_the_cpu():
    """The real compiler (inductor, a C++ toolchain): close to eager, and one graph serves every γ."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model, compiled = tiny_sit(), P.compile_blocks(tiny_sit())
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.7]), torch.tensor([1, 2])
    with torch.no_grad():
        for gamma in (0.25, 0.5, 0.75):
            a = model(x, t, y, gamma=gamma, generator=torch.Generator().manual_seed(1))
            b = compiled(x, t, y, gamma=gamma, generator=torch.Generator().manual_seed(1))
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2 * len(compiled.blocks)


@pytest.mark.slow
def test_the_prepared_gpu_check_runs_its_cpu_form(tmp_path):
    """scripts/gpu_check.py at toy sizes on the CPU: every step of the GPU run (benchmarks, DDP through
    torchrun, the SD-VAE decode, the Inception) runs and lands in the report."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "scripts/gpu_check.py"), "--small", "--device", "cpu",
                        "--skip", "compiled", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for step in ("environment", "sampling", "training", "ddp", "vae", "inception"):
        assert f"## {step}: ok" in report, report
    assert "| SG_FID |" in report and "dense / routed: time" in report and "failed: none" in report


def test_bf16_auto_follows_the_cpus_bf16_kernels(monkeypatch):
    """auto: bf16 on a CPU with AVX512-BF16 or AMX, fp32 on one without (where bf16 is emulated);
    true and false are kept; anything else is refused by name."""
    for avx512_bf16, amx, expected in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert P.native_bf16("cpu") is expected and P.use_bf16("auto", "cpu") is expected
        assert P.use_bf16(True, "cpu") is True and P.use_bf16(False, "cpu") is False
    with pytest.raises(ConfigError, match="bf16='yes'; choose true, false or auto"):
        P.use_bf16("yes", "cpu")
    from sparse_guidance.train import TrainConfig
    assert TrainConfig.from_dict({**CFG, "bf16": "auto"}).bf16 == "auto"
    with pytest.raises(ConfigError, match=r"train.bf16=1; choose true, false or auto"):
        TrainConfig.from_dict({**CFG, "bf16": 1})
