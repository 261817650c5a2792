"""Training loop: sparse (routing / masking) or dense training and dense finetuning.

- Global batch as configured whatever the number of processes: under torch.distributed (DDP,
  one process per GPU, or gloo on CPU) each rank takes its slice of the global batch.
- Exactly resumable: every random draw of step s (which samples, t, z, class dropout, token
  subsets) comes from a generator seeded by (seed, s) and is drawn for the whole global batch,
  so a run killed and resumed from its last checkpoint, or split over ranks, takes the same
  steps as one uninterrupted single-process run.
- EMA of the weights; atomic checkpoints (``last.pt`` every ``ckpt_every`` steps, plus kept
  snapshots ``step-XXXXXXX.pt`` at ``save_steps``: early ones for AutoGuidance and Fig. 7, a
  series for Fig. 5); a CSV log of loss and throughput; a tqdm progress bar.
- On a GPU: batches read ahead by a thread into pinned memory (BatchPrefetcher; the latents are
  memory-mapped), copied without waiting, fused AdamW, TF32 outside autocast, optionally compiled
  blocks (performance.py). The same steps as on the CPU, which keeps its path as it is.

Paper settings (Table A2): AdamW lr 1e-4, betas (0.9, 0.999), batch 256, routing r2→24 or MaskDiT
masking at rate 0.5; finetuning: lr 1e-5 at γ = 0.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from .progress import tqdm

from .io import atomic_open
from .checkpoint import load_weights, read_checkpoint, save_atomic
from .errors import ConfigError
from .flow import MAE_TARGETS, draw, ema_update, make_ema, training_loss
from .models.interface import check_model_interface
from .models.sparsity import check_gamma
from .performance import check_bf16, compile_blocks, configure_backends, is_cuda, to_device, use_bf16


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 256            # global batch, split over ranks
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0            # linear warm-up of the learning rate
    ema_decay: float = 0.9999
    class_dropout: float = 0.1
    mae_weight: float = 0.1          # λ of Eq. A4 (masking models only)
    mae_target: str = "noisy"        # Eq. A4 as printed (flow.MAE_TARGETS; masking models only)
    gamma: float | None = None       # token sparsity during training; None: the model's train_gamma
    ckpt_every: int = 1000
    save_steps: list[int] = field(default_factory=list)
    log_every: int = 50
    seed: int = 0
    bf16: bool | str = False         # bf16 autocast: true, false or "auto" (performance.use_bf16)
    grad_clip: float | None = None
    accumulate: int = 1              # micro-batches per rank and step (gradient accumulation; same step)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ConfigError(f"unknown training option(s) {sorted(extra)}; allowed: {sorted(names)}.")
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self):
        """ConfigError naming the first option out of range (the workflow's schema says the same)."""
        def number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        for name in ("steps", "batch_size", "ckpt_every", "log_every", "accumulate"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"train.{name}={v!r} must be an integer >= 1.")
        if not number(self.lr) or self.lr < 0:  # (0 holds the weights: a check, not a training)
            raise ConfigError(f"train.lr={self.lr!r} must be a number >= 0.")
        if not (isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
                and all(number(b) and 0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"train.betas={self.betas!r} must be two numbers [β1, β2] in [0, 1).")
        for name in ("ema_decay", "class_dropout"):
            v = getattr(self, name)
            if not number(v) or not 0 <= v < 1:
                raise ConfigError(f"train.{name}={v!r} must be a number in [0, 1).")
        for name in ("weight_decay", "mae_weight", "warmup_steps"):
            v = getattr(self, name)
            if not number(v) or v < 0:
                raise ConfigError(f"train.{name}={v!r} must be a number >= 0.")
        if self.grad_clip is not None and (not number(self.grad_clip) or self.grad_clip <= 0):
            raise ConfigError(f"train.grad_clip={self.grad_clip!r} must be a number > 0 (or null).")
        if self.gamma is not None:
            check_gamma(self.gamma, "train.gamma")
        check_bf16(self.bf16, "train.bf16")
        if self.mae_target not in MAE_TARGETS:
            raise ConfigError(f"train.mae_target={self.mae_target!r}; choose one of {', '.join(MAE_TARGETS)}.")


# Options that may change while a run keeps its state (a longer run, other snapshots or log
# intervals); any other difference from the stored config needs a fresh run.
RESUMABLE_KEYS = ("steps", "save_steps", "ckpt_every", "log_every", "accumulate")  # (accumulate: same steps, other memory)


# What a stored config that predates an option trained with (the loss of a masking model changed
# when mae_target came: before it, the clean-data target of Eq. A1).
PREDATING = {"mae_target": "clean"}
MASKING_ONLY = ("mae_weight", "mae_target")  # options a model without masking does not use


def _check_resume(stored: dict | None, cfg: TrainConfig, last: Path, masking: bool = True):
    """Refuse to continue last.pt under other training options than it was trained with."""
    if stored is None:  # a checkpoint written before the config was stored
        return
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    stored = {**PREDATING, **json.loads(json.dumps(stored))}
    if not masking:
        for k in MASKING_ONLY:
            now.pop(k, None)
            stored.pop(k, None)
    diff = sorted(k for k in set(now) | set(stored) if k not in RESUMABLE_KEYS and now.get(k) != stored.get(k))
    if diff:
        changes = ", ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ConfigError(f"{str(last)!r} was trained with other options ({changes}); only "
                          f"{', '.join(RESUMABLE_KEYS)} may change while a run continues. Delete "
                          f"{str(last.parent)!r} to start over, or train into another folder.")


def _check_finite(first_bad: torch.Tensor, world: int, last: Path):
    """Raise (on every rank alike) if the loss was NaN or ∞ at some step so far: before anything is
    written, so last.pt keeps the last good weights. ``first_bad`` holds that step, or a sentinel."""
    if world > 1:
        dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
    step = int(first_bad)
    if step < _NO_BAD_STEP:
        kept = f"the last good checkpoint, {str(last)!r}, is kept" if last.exists() else "no checkpoint was written"
        raise ConfigError(f"the training loss is NaN or infinite at step {step}; {kept}. Check the latents for "
                          "NaN, lower train.lr or set train.grad_clip, then rerun.")


_NO_BAD_STEP = 2**62


def rank_world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batch(dataset, idx):
    items = [dataset[int(i)] for i in idx]
    x = torch.stack([torch.as_tensor(a) for a, _ in items]).float()
    y = torch.as_tensor([int(b) for _, b in items], dtype=torch.long)
    return x, y


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of every random draw of one step (its batch first, then flow.draw's)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class BatchPrefetcher:
    """The training batches of ``steps`` in order, each as (generator, x, y): the step's generator has
    drawn the batch's indices (so the step continues with it), and x, y are this rank's slice. With
    ``depth`` > 0 a background thread reads ``depth`` steps ahead (pinned memory if ``pin``), so the
    data never waits for the loop; depth 0 reads in the loop. Either way the same batches."""

    def __init__(self, dataset, steps: range, seed: int, batch_size: int, rows: slice, depth: int = 0,
                 pin: bool = False):
        self.dataset, self.steps, self.seed, self.batch_size, self.rows = dataset, steps, seed, batch_size, rows
        self.depth, self.pin = depth, pin
        self._stop = threading.Event()

    def read(self, step: int):
        gen = step_generator(self.seed, step)
        idx = torch.randint(0, len(self.dataset), (self.batch_size,), generator=gen)
        xs, ys = _batch(self.dataset, idx[self.rows])
        return gen, (xs.pin_memory() if self.pin else xs), ys

    def __iter__(self):
        if self.depth <= 0:
            yield from map(self.read, self.steps)
            return
        q: queue.Queue = queue.Queue(maxsize=self.depth)

        def work():
            try:
                for step in self.steps:
                    item = self.read(step)
                    while not self._stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
            except BaseException as e:  # raised again in the loop, which would otherwise wait forever
                q.put(e)

        thread = threading.Thread(target=work, name="batch-prefetch", daemon=True)
        thread.start()
        try:
            for _ in self.steps:
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def checkpoint_path(out_dir, step: int) -> Path:
    return Path(out_dir) / f"step-{step:07d}.pt"


def train(model, dataset, cfg: TrainConfig | dict, out_dir, *, device="cpu", init_from=None, progress=True,
          conditions=None, prefetch: int | None = None, compile_mode: str = "none"):
    """Train ``model`` on ``dataset`` (items (latent, label)) for cfg.steps steps; resumes from
    out_dir/last.pt if present. ``init_from`` (a checkpoint) starts a fresh run from its EMA weights
    (dense finetuning). ``conditions`` maps each rank's labels to the model's conditions before
    the step (text_encoders.OnlinePrompts: the batch's captions encoded as its prompt bank).
    ``prefetch``: steps of data read ahead by a thread (default 2 on a GPU, 0 on the CPU: the same
    batches either way); ``compile_mode``: performance.COMPILE_MODES for the blocks (default none).
    The model is checked first (models.check_model_interface(model, "training")). Returns (model, ema) on the CPU side of the caller's device."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    check_model_interface(model, "training")
    rank, world = rank_world()
    if cfg.batch_size % (world * cfg.accumulate):
        raise ConfigError(f"batch_size={cfg.batch_size} is not divisible by the {world} processes x accumulate="
                          f"{cfg.accumulate}; the global batch is split evenly over ranks and micro-batches.")
    local = cfg.batch_size // world
    micro = local // cfg.accumulate
    gamma = model.train_gamma if cfg.gamma is None else cfg.gamma
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device)
    configure_backends(device)
    bf16 = use_bf16(cfg.bf16, device)  # "auto": bf16 where the device has it natively
    # fused AdamW (one kernel for all parameters) on a GPU; the CPU keeps the loop it always ran
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                            **({"fused": True} if is_cuda(device) else {}))
    start = 0
    last = out_dir / "last.pt"
    if last.exists():
        ck = read_checkpoint(last)
        _check_resume(ck.get("config"), cfg, last, masking=getattr(model, "sparsity", None) == "masking")
        load_weights(model, ck, "model")
        opt.load_state_dict(ck["opt"])
        start = int(ck["step"])
        ema = make_ema(model)
        load_weights(ema, ck, "ema")
    else:
        if init_from is not None:
            load_weights(model, read_checkpoint(init_from), "ema")
        ema = make_ema(model)
    if start >= cfg.steps:
        return model, ema

    net = compile_blocks(model, compile_mode)  # in place: the state dict keeps its names
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if str(device).startswith("cuda") else None,
            broadcast_buffers=conditions is None)  # an online prompt bank is each rank's own batch
    log_path = out_dir / "log.csv"
    _truncate_log(log_path, start) if rank == 0 else None
    n_data = len(dataset)
    if n_data == 0:
        raise ConfigError("the training dataset is empty.")
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training",
               disable=not progress or rank != 0)
    t_last, n_last = time.perf_counter(), 0
    first_bad = torch.tensor(_NO_BAD_STEP, device=device)  # the first step with a non-finite loss
    depth = (2 if is_cuda(device) else 0) if prefetch is None else prefetch
    batches = BatchPrefetcher(dataset, range(start, cfg.steps), cfg.seed, cfg.batch_size,
                              slice(rank * local, (rank + 1) * local), depth=depth, pin=is_cuda(device))
    with contextlib.closing(iter(batches)) as reader:  # closing stops the reading thread
        for step, (gen, xs, ys) in zip(bar, reader):
            shape = (cfg.batch_size, *xs.shape[1:])
            ds = draw(model, shape, gamma=gamma, class_dropout=cfg.class_dropout, generator=gen)
            ds = ds.slice(rank * local, (rank + 1) * local)
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, step)
            opt.zero_grad(set_to_none=True)
            losses = []
            for j in range(cfg.accumulate):  # micro-batches of equal size: the mean of their means is the batch's
                a, b = j * micro, (j + 1) * micro
                x, y = to_device(xs[a:b], device), to_device(ys[a:b], device)
                if conditions is not None:
                    y = conditions(y)
                d = ds.slice(a, b)
                d = dataclasses.replace(d, **{k: (None if v is None else to_device(v, device)) for k, v in vars(d).items()})
                last_micro = j == cfg.accumulate - 1
                with (net.no_sync() if world > 1 and not last_micro else contextlib.nullcontext()):
                    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                        loss = training_loss(model, x, y, gamma=gamma, mae_weight=cfg.mae_weight,
                                             mae_target=cfg.mae_target, draws=d, net=net)
                    (loss if cfg.accumulate == 1 else loss / cfg.accumulate).backward()
                losses.append(loss.detach())
            if cfg.accumulate > 1:
                loss = torch.stack(losses).mean()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema_update(ema, model, cfg.ema_decay)
            done = step + 1
            n_last += cfg.batch_size
            log_now = done % cfg.log_every == 0 or done == cfg.steps
            snapshot_now = done in cfg.save_steps
            ckpt_now = done % cfg.ckpt_every == 0 or done == cfg.steps
            # no host sync per step: the flag is read only where something is about to be written
            first_bad = torch.where(torch.isfinite(loss.detach()) | (first_bad < _NO_BAD_STEP), first_bad,
                                    torch.full_like(first_bad, done))
            if log_now or snapshot_now or ckpt_now:
                _check_finite(first_bad, world, last)
            if rank == 0 and log_now:
                now = time.perf_counter()
                _append_log(log_path, done, loss.item(), n_last / (now - t_last), opt.param_groups[0]["lr"])
                t_last, n_last = now, 0
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if rank == 0 and snapshot_now:
                save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "step": done}, checkpoint_path(out_dir, done))
            if rank == 0 and ckpt_now:
                save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": done,
                             "config": dataclasses.asdict(cfg)}, last)
            if world > 1 and (done % cfg.ckpt_every == 0):
                dist.barrier()
    return model, ema


def _truncate_log(path: Path, step: int):
    """Keep the log rows up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    with open(path) as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
    with atomic_open(path, "w") as f:
        csv.writer(f).writerows(keep)


def _append_log(path: Path, step: int, loss: float, ips: float, lr: float):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "loss", "images_per_s", "lr"])
        w.writerow([step, f"{loss:.6f}", f"{ips:.1f}", f"{lr:.3g}"])
