"""Training loop: exact resume after a kill, DDP (gloo, 2 processes) equals one process, logs, config errors."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparse_guidance import ConfigError
from sparse_guidance.checkpoint import read_checkpoint
from sparse_guidance.models import build_model
from sparse_guidance.train import TrainConfig, checkpoint_path, train
from script_helpers import load_script

make_toy_latents = load_script("demo").make_toy_latents  # the demo's synthetic latents

CFG = dict(steps=12, batch_size=8, lr=1e-3, ckpt_every=4, save_steps=[2], log_every=2, ema_decay=0.9)


def make_model(sparsity="routing"):
    torch.manual_seed(0)
    kw = dict(routes=["1:2"]) if sparsity == "routing" else dict(decoder_depth=1, decoder_width=32, decoder_heads=2)
    return build_model("SiT-T/2", sparsity=sparsity, train_gamma=0.5, input_size=8, num_classes=10,
                       depth=3, hidden_size=32, num_heads=2, **kw)


def dataset(n=64):
    x, y = make_toy_latents(n, size=8, generator=torch.Generator().manual_seed(0))
    return list(zip(x, y))


class Faulty:
    """A dataset that turns faulty once it has served ``after`` items: then item i is fault(x, y)."""

    def __init__(self, data, after, fault):
        self.data, self.after, self.fault, self.served = data, after, fault, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.served += 1
        return self.fault(*self.data[i]) if self.served > self.after else self.data[i]


def _killed(x, y):
    raise KeyboardInterrupt("killed")


def Killer(data, after):
    """Dies (as a SIGKILL'd job would) once it has served ``after`` items."""
    return Faulty(data, after, _killed)


def NaNAfter(data, after):
    """Latents that turn NaN once ``after`` items have been served (a corrupt shard half-way through)."""
    return Faulty(data, after, lambda x, y: (torch.full_like(x, float("nan")), y))


def same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("sparsity", ["routing", "masking"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, sparsity):
    ref_model, ref_ema = train(make_model(sparsity), dataset(), CFG, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):  # dies during step 7 (after 6 full steps of 8 items)
        train(make_model(sparsity), Killer(dataset(), after=6 * 8 + 3), CFG, tmp_path / "run", progress=False)
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4
    model, ema = train(make_model(sparsity), dataset(), CFG, tmp_path / "run", progress=False)
    assert same(model, ref_model) and same(ema, ref_ema)
    assert not same(model, make_model(sparsity))  # it did train
    steps = [int(r.split(",")[0]) for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6, 8, 10, 12]  # rows after the checkpoint were rewritten, not duplicated
    assert checkpoint_path(tmp_path / "run", 2).exists()
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]


def test_finished_run_is_not_retrained(tmp_path):
    m1, _ = train(make_model(), dataset(), CFG, tmp_path, progress=False)
    m2, _ = train(make_model(), dataset(), CFG, tmp_path, progress=False)
    assert same(m1, m2)


def test_finetune_starts_from_ema_of_a_checkpoint(tmp_path):
    _, ema = train(make_model(), dataset(), CFG, tmp_path / "sparse", progress=False)
    cfg = {**CFG, "steps": 1, "lr": 0.0, "gamma": 0.0}
    model, _ = train(make_model(), dataset(), cfg, tmp_path / "ft", init_from=tmp_path / "sparse" / "last.pt",
                     progress=False)
    assert same(model, ema)  # lr 0: the finetune run holds the EMA weights it started from


def _ddp_worker(rank, world, init_file, out_dir, result_file, accumulate=1):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, ema = train(make_model(), dataset(), {**CFG, "accumulate": accumulate}, out_dir, progress=False)
        if rank == 0:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, result_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_gloo_processes_equal_one(tmp_path, accumulate):
    """Also with 2 micro-batches per process (DDP's gradients summed once, at the last)."""
    single, single_ema = train(make_model(), dataset(), CFG, tmp_path / "one", progress=False)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "two"), str(tmp_path / "r.pt"), accumulate),
             nprocs=2, join=True)
    got = torch.load(tmp_path / "r.pt")
    for k, v in single.state_dict().items():
        torch.testing.assert_close(got["model"][k], v, rtol=1e-5, atol=1e-6)
    for k, v in single_ema.state_dict().items():
        torch.testing.assert_close(got["ema"][k], v, rtol=1e-5, atol=1e-6)


def test_bad_training_config():
    with pytest.raises(ConfigError, match="lerning_rate"):
        TrainConfig.from_dict({"lerning_rate": 1e-4})
    with pytest.raises(ConfigError, match="gamma"):
        TrainConfig.from_dict({"gamma": 1.0})
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 0})
    for bad, needle in [({"lr": "1e-4"}, "train.lr='1e-4' must be a number >= 0"), ({"lr": -1e-4}, "train.lr=-0.0001"),
                        ({"ckpt_every": 0}, "train.ckpt_every=0 must be an integer >= 1"),
                        ({"log_every": 0}, "train.log_every=0"), ({"betas": (0.9,)}, "train.betas=(0.9,) must be two"),
                        ({"ema_decay": 1.0}, "train.ema_decay=1.0 must be a number in [0, 1)"),
                        ({"class_dropout": 1.5}, "train.class_dropout=1.5"),
                        ({"warmup_steps": -1}, "train.warmup_steps=-1 must be a number >= 0"),
                        ({"lr": float("nan")}, "train.lr=nan")]:
        with pytest.raises(ConfigError) as e:
            TrainConfig.from_dict(bad)
        assert needle in str(e.value), (bad, str(e.value))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """NaN latents from step 6 on: the run stops at the next check (step 6, a log step) naming the step;
    last.pt stays the finite step-4 checkpoint, and nothing NaN is written."""
    with pytest.raises(ConfigError, match=r"loss is NaN or infinite at step 6; the last good checkpoint"):
        train(make_model(), NaNAfter(dataset(), after=5 * 8), CFG, tmp_path / "run", progress=False)
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for part in ("model", "ema") for v in ck[part].values())
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "nan" not in log.lower() and log.splitlines()[-1].startswith("4,")


def test_resuming_under_other_options_is_refused(tmp_path):
    """last.pt trained with one seed, lr or batch size is not continued under another (it used to return
    the first run's weights); the options that may grow (steps, save_steps, ...) still resume."""
    train(make_model(), dataset(), {**CFG, "steps": 4}, tmp_path / "run", progress=False)
    for change in ({"seed": 1}, {"lr": 2e-3}, {"batch_size": 16}, {"betas": (0.5, 0.999)}):
        with pytest.raises(ConfigError, match=rf"trained with other options \({next(iter(change))}: .*"
                                              r"only steps, save_steps, ckpt_every, log_every, accumulate may change"):
            train(make_model(), dataset(), {**CFG, **change}, tmp_path / "run", progress=False)
    _, ema = train(make_model(), dataset(), {**CFG, "save_steps": [6], "log_every": 3}, tmp_path / "run",
                   progress=False)
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == CFG["steps"]


@pytest.mark.parametrize("sparsity", ["routing", "masking"])
def test_gradient_accumulation_takes_the_same_steps(tmp_path, sparsity):
    """accumulate=4 splits each rank's batch into 4 micro-batches (a quarter of the activations) and
    takes the same optimiser steps, to float rounding; a run may change it while it continues."""
    cfg = {**CFG, "steps": 6}
    whole, ema_whole = train(make_model(sparsity), dataset(), cfg, tmp_path / "a", progress=False)
    parts, ema_parts = train(make_model(sparsity), dataset(), {**cfg, "accumulate": 4}, tmp_path / "b", progress=False)
    for (k, p), q in zip(ema_whole.state_dict().items(), ema_parts.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-5), k
    assert not same(ema_whole, make_model(sparsity))  # it trained
    # continued with accumulate 2 from step 6 to 8, as an uninterrupted run with accumulate 1
    train(make_model(sparsity), dataset(), {**cfg, "steps": 8, "accumulate": 2}, tmp_path / "b", progress=False)
    _, ema8 = train(make_model(sparsity), dataset(), {**cfg, "steps": 8}, tmp_path / "c", progress=False)
    got = read_checkpoint(tmp_path / "b" / "last.pt")["ema"]
    for k, v in ema8.state_dict().items():
        assert torch.allclose(got[k], v, atol=1e-5), k
    with pytest.raises(ConfigError, match="not divisible by the 1 processes x accumulate=3"):
        train(make_model(sparsity), dataset(), {**cfg, "accumulate": 3}, tmp_path / "d", progress=False)


def test_accumulated_gradients_are_the_batchs(tmp_path, monkeypatch):
    """The gradient the optimiser steps with is the whole batch's mean-loss gradient with or without
    micro-batches (AdamW all but ignores a gradient's scale, so the weights alone would not show a
    missing 1/accumulate)."""
    import sparse_guidance.train as TR
    seen = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):
            seen.append([p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
            return super().step(closure)

    monkeypatch.setattr(TR.torch.optim, "AdamW", Recording)
    for k, accumulate in enumerate((1, 4)):
        train(make_model("masking"), dataset(), {**CFG, "steps": 1, "accumulate": accumulate}, tmp_path / str(k),
              progress=False)
    (whole,), (parts,) = seen[:1], seen[1:]
    assert len(whole) == len(parts) > 0
    for a, b in zip(whole, parts):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
