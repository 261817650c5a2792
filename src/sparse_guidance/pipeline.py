"""The workflow's stages as plain functions of a validated config (experiments.load_config).

Each function reads the outputs of the stages before it and writes its own, at the paths of
experiments.Layout, atomically; the notebooks in notebooks/ are thin wrappers around them, and
Snakemake runs the notebooks. Nothing here knows about Snakemake.

    cfg = setup("smoke")                      # chdir to the repository, validate the preset
    build_missing(cfg, "sample", experiment="table2", row="cfg")   # upstream stages, if absent
    sample_row(cfg, "table2", "cfg")

Stages: prepare_data, encode_latents, reference_stats, run_training (per run), sample_row and
evaluate_row (per experiment row), count_flops (per experiment), and the reports (report.py).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from . import experiments as X
from .atomic import atomic_open
from .errors import ConfigError


# ---------------------------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------------------------

def setup(preset="smoke", overrides=None, threads: int | None = None, chdir: bool = True) -> dict:
    """What every notebook does first: work from the repository root (where the config's relative
    paths point), set torch's CPU threads, and load and validate the config."""
    import warnings
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: text bars
    if chdir:
        os.chdir(X.repo_root())
    if threads:
        torch.set_num_threads(int(threads))
    return X.load_config(preset, overrides)


def device_of(cfg: dict) -> torch.device:
    want = cfg["compute"]["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("compute.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'.")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def write_json(path, obj) -> Path:
    """JSON to a temporary file beside ``path``, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.write("\n")
    return path


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist; run the stage that writes it first "
                          "(snakemake builds it, or call pipeline.build_missing).")
    return json.loads(path.read_text())


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_images_npz(path, images: np.ndarray, **extra) -> Path:
    """An ADM image set (arr_0 uint8 NHWC) written to a temporary file and renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez(f, arr_0=images, **extra)
    return path


def _copy_atomic(src, dst):
    with open(src, "rb") as fsrc, atomic_open(dst) as fdst:
        shutil.copyfileobj(fsrc, fdst)


def _publish(src, dst):
    """Make ``dst`` a hard link to ``src`` (a copy where links are impossible), replacing it atomically."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Codec output (N, C, H, W) in [-1, 1] -> ADM layout: uint8 (N, H, W, 3); grey is repeated to RGB
    so that ADM's own evaluator reads the file too."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

class _Subset(torch.utils.data.Dataset):
    """The first n items of a dataset, keeping its ``classes`` (the latent manifest records them)."""

    def __init__(self, dataset, n: int):
        self.dataset, self.n = dataset, min(n, len(dataset))
        self.classes = getattr(dataset, "classes", None)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]


def training_images(cfg: dict, output: str = "float"):
    """The training image dataset of the config (items (image, label)), limited by data.train_limit."""
    d = cfg["data"]
    if d["dataset"] == "fashion_mnist":
        from .data import FashionMNIST
        ds = FashionMNIST(d["train_split"], root=d["root"], download=d["download"], output=output)
    else:
        from .data import ImageNet
        if d["root"] is None:
            raise ConfigError("data.root is not set: give the ImageNet train folder (root/<synset>/<image>.JPEG).")
        ds = ImageNet(d["root"], image_size=d["image_size"], output=output)
    return _Subset(ds, d["train_limit"]) if d["train_limit"] else ds


def prepare_data(cfg: dict) -> dict:
    """Check that the dataset is present and readable (Fashion-MNIST: checksums; downloads if allowed)
    and record what will be used in data/dataset.json."""
    d = cfg["data"]
    ds = training_images(cfg, output="uint8")
    base = ds.dataset if isinstance(ds, _Subset) else ds
    labels = np.asarray(base.targets if hasattr(base, "targets") else [base[i][1] for i in range(len(base))])
    labels = labels[:len(ds)]
    info = {"dataset": d["dataset"], "split": d["train_split"] if d["dataset"] == "fashion_mnist" else "train",
            "root": str(getattr(base, "root", None) or _fashion_root(d)), "count": len(ds),
            "source_count": len(base), "num_classes": X.DATASETS[d["dataset"]],
            "class_histogram": np.bincount(labels, minlength=X.DATASETS[d["dataset"]]).tolist(),
            "image_shape": list(ds[0][0].shape), "classes": list(getattr(base, "classes", []))}
    write_json(X.Layout(cfg).dataset, info)
    return info


def _fashion_root(d):
    from .data.fashion_mnist import find_fashion_mnist
    return find_fashion_mnist(d["root"], d["train_split"], d["download"])


def build_codec_of(cfg: dict):
    from .data import build_codec

    spec = dict(cfg["data"]["codec"])
    return build_codec(spec.pop("name"), **spec)


def encode_latents(cfg: dict, device=None, progress: bool = True) -> dict:
    """Encode the training images with the config's codec into latent shards (resumable)."""
    from .data import encode_dataset

    e = cfg["data"]["encode"]
    report = encode_dataset(training_images(cfg), build_codec_of(cfg), X.Layout(cfg).latents_dir,
                            shard_size=e["shard_size"], batch_size=e["batch_size"], flip=e["flip"],
                            device=device or device_of(cfg), dtype=e["dtype"], seed=e["seed"],
                            num_workers=e["num_workers"], progress=progress)
    return report.manifest


def reference_images(cfg: dict) -> np.ndarray:
    """The reference images for metrics of a dataset we hold (Fashion-MNIST): uint8 (N, H, W)."""
    d, ref = cfg["data"], cfg["data"]["reference"]
    from .data import FashionMNIST
    ds = FashionMNIST(ref["split"], root=d["root"], download=d["download"], output="uint8")
    return ds.images[:ref["n"]].numpy()  # (n, 32, 32), padded like the training images


def reference_stats(cfg: dict, device=None, progress: bool = True) -> dict:
    """Reference statistics for the metrics at data/reference.npz (ADM format: mu, sigma, mu_s,
    sigma_s, pool, ref_n, extractor_id) and a description in data/reference.json.

    Fashion-MNIST: built from the first n images of data.reference.split. ImageNet: ADM's reference
    batch as it is (its precomputed statistics) plus the pool3 features of its images for P/R."""
    from .metrics import build_reference, load_reference, resolve_extractor

    layout, m, ref = X.Layout(cfg), cfg["metrics"], cfg["data"]["reference"]
    ext = resolve_extractor(m["extractor"], weights_path=m["weights_path"], device=device or device_of(cfg))
    cache = Path(layout.cache) / "metrics"
    if ref["npz"] is None:
        images = reference_images(cfg)
        built = build_reference(images, cache_dir=cache, extractor=ext, name="reference", pr_n=m["pr_ref_n"],
                                batch_size=ref["batch_size"], progress=progress)
        _copy_atomic(built, layout.reference)
        source = f"Fashion-MNIST {ref['split']} split, first {len(images)} images"
        n = len(images)
    else:
        needs = tuple(x for x in ("fid", "sfid") if x in m["metrics"]) + (
            ("prc",) if {"prec", "rec"} & set(m["metrics"]) else ())
        r = load_reference(ref["npz"], ext, needs or ("fid",), cache, m["pr_ref_n"], ref["batch_size"], progress)
        arrays = {k: v for k, v in (("mu", r.mu), ("sigma", r.sigma), ("mu_s", r.mu_s), ("sigma_s", r.sigma_s),
                                    ("pool", r.pool)) if v is not None}
        from .metrics.npz import save_npz_atomic
        save_npz_atomic(layout.reference, **arrays, ref_n=np.array(r.ref_n or 0),
                        extractor_id=np.array(ext.extractor_id))
        source, n = f"{ref['npz']} ({r.stats_source})", r.ref_n
    info = {"source": source, "ref_n": n, "extractor": getattr(ext, "label", type(ext).__name__),
            "extractor_id": ext.extractor_id, "pr_ref_n": m["pr_ref_n"]}
    write_json(layout.reference_info, info)
    return info


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def run_training(cfg: dict, run: str, device=None, progress: bool = True) -> dict:
    """Train one run (train.py's loop) in runs/<run>/state/ and publish its final checkpoint and
    snapshots as runs/<run>/last.pt and step-XXXXXXX.pt, plus summary.json.

    The state folder is not a Snakemake output, so a job that is killed (a cluster time limit) or
    rerun because ``train.steps`` grew continues from the last checkpoint. A state trained under
    other settings (model, optimiser, data) is never reused silently: ConfigError says what to do."""
    from .data import LatentDataset
    from .train import TrainConfig, checkpoint_path, train

    if run not in cfg["runs"]:
        raise ConfigError(f"run {run!r} is not in config {cfg['name']!r}; runs: {', '.join(cfg['runs'])}.")
    layout = X.Layout(cfg)
    state = Path(layout.state_dir(run))
    tc = TrainConfig.from_dict(dict(cfg["runs"][run]["train"]))
    _check_state(cfg, run, state, tc)
    state.mkdir(parents=True, exist_ok=True)
    write_json(state / "resume_key.json", X.resume_key(cfg, run))
    dataset = LatentDataset(layout.latents_dir)
    if tuple(dataset.latent_shape) != (cfg["model"]["in_channels"], cfg["model"]["input_size"],
                                       cfg["model"]["input_size"]):
        raise ConfigError(f"latents in {layout.latents_dir!r} have shape {dataset.latent_shape}; model "
                          f"{cfg['model']['name']} expects ({cfg['model']['in_channels']}, "
                          f"{cfg['model']['input_size']}, {cfg['model']['input_size']}). Re-encode them.")
    model = X.build_run_model(cfg, run)
    t0 = time.perf_counter()
    train(model, dataset, tc, state, device=device or device_of(cfg), progress=progress)
    seconds = time.perf_counter() - t0
    outputs = X.train_outputs(cfg, run)
    _publish(state / "last.pt", outputs["checkpoint"])
    for s in tc.save_steps:
        _publish(checkpoint_path(state, s), layout.snapshot(run, s))
    if (state / "log.csv").exists():
        _copy_atomic(state / "log.csv", Path(layout.run_dir(run)) / "log.csv")
    log = _read_log(state / "log.csv")
    summary = {"run": run, "steps": tc.steps, "batch_size": tc.batch_size, "images_seen": tc.steps * tc.batch_size,
               "save_steps": sorted(tc.save_steps), "seconds_this_job": round(seconds, 1),
               "final_loss": log[-1]["loss"] if log else None, "num_latents": len(dataset),
               "parameters": sum(p.numel() for p in model.parameters())}
    write_json(outputs["summary"], summary)
    return summary


def _read_log(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _check_state(cfg: dict, run: str, state: Path, tc):
    """Refuse to continue a state trained under other settings, or one that has passed a snapshot step
    it did not save, or one trained for more steps than asked."""
    last = state / "last.pt"
    if not last.exists():
        return
    fix = (f"delete {str(state)!r} to train run {run!r} from scratch (or give the changed run another name "
           "under runs:).")
    key_file = state / "resume_key.json"
    if key_file.exists() and json.loads(key_file.read_text()) != json.loads(json.dumps(X.resume_key(cfg, run))):
        raise ConfigError(f"run {run!r}: its training state in {str(state)!r} was trained with other settings "
                          f"(model, optimiser or data changed; only {', '.join(X.RESUMABLE_TRAIN_KEYS)} may change "
                          f"while a run continues). To start over, {fix}")
    step = int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["step"])
    if step > tc.steps:
        raise ConfigError(f"run {run!r} is already trained for {step} steps, more than train.steps={tc.steps}; "
                          f"raise steps, or {fix}")
    from .train import checkpoint_path
    lost = [s for s in tc.save_steps if s <= step and not checkpoint_path(state, s).exists()]
    if lost:
        raise ConfigError(f"run {run!r}: snapshot step(s) {lost} were not saved when training passed them (it is at "
                          f"step {step}); choose saved steps, or {fix}")


def load_run_model(cfg: dict, run: str, checkpoint, device=None, weights: str = "ema"):
    """A run's model with the weights of a checkpoint (the EMA by default), in eval mode."""
    from .checkpoint import load_weights, read_checkpoint

    model = X.build_run_model(cfg, run)
    load_weights(model, read_checkpoint(checkpoint), weights)
    return model.to(device or device_of(cfg)).eval()


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def sample_noise(cfg: dict, start: int, stop: int) -> torch.Tensor:
    """Initial noise of samples [start, stop): sample i's noise depends only on (seed, i), so every row
    of a table starts from the same noise, whatever the batch size."""
    m, seed = cfg["model"], cfg["sampling"]["seed"]
    shape = (m["in_channels"], m["input_size"], m["input_size"])
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
                        for i in range(start, stop)])


def sample_labels(cfg: dict, start: int, stop: int) -> torch.Tensor:
    """Class labels of samples [start, stop): balanced (i mod K) or uniform random from (seed, i)."""
    k = cfg["model"]["num_classes"]
    idx = torch.arange(start, stop)
    if cfg["sampling"]["labels"] == "balanced":
        return idx % k
    g = torch.Generator().manual_seed(cfg["sampling"]["seed"] * 7_919 + 17)
    return torch.randint(0, k, (stop,), generator=g)[start:stop]


def sample_row(cfg: dict, experiment: str, row: str, device=None, progress: bool = True) -> dict:
    """Draw sampling.num_samples images for one row of an experiment, decode them with the codec and
    write samples/<experiment>/<row>.npz (ADM format) and .json (recipe, timing)."""
    from .guidance import resolve_recipe
    from .sampling import sample

    layout, s = X.Layout(cfg), cfg["sampling"]
    exp, spec = X.experiment(cfg, experiment), X.row_spec(cfg, experiment, row)
    device = torch.device(device) if device is not None else device_of(cfg)
    recipe = resolve_recipe(spec["recipe"], num_steps=s["steps"])
    models = {"main": load_run_model(cfg, exp["run"], layout.checkpoint(exp["run"]), device)}
    if spec.get("aux"):
        a = spec["aux"]
        models["aux"] = load_run_model(cfg, a["run"], layout.snapshot(a["run"], a["step"]), device)
    codec = build_codec_of(cfg).to(device)
    n, bs = s["num_samples"], s["batch_size"]
    images, seconds = [], 0.0
    from tqdm.auto import tqdm
    for b, start in enumerate(tqdm(range(0, n, bs), desc=f"sampling {experiment}/{row}", disable=not progress)):
        stop = min(start + bs, n)
        noise, y = sample_noise(cfg, start, stop).to(device), sample_labels(cfg, start, stop).to(device)
        gen = torch.Generator(device=device).manual_seed(s["seed"] * 1_000_003 + 7 * b + 1)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s["bf16"]):
            z = sample(models, recipe, noise, y, steps=s["steps"], solver=s["solver"], generator=gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        images.append(to_uint8(codec.decode(z.float())))
    arr = np.concatenate(images)
    save_images_npz(layout.samples(experiment, row), arr)
    info = {"experiment": experiment, "row": row, "label": spec["label"], "recipe": recipe.to_dict(),
            "aux": spec.get("aux"), "run": exp["run"], "num_samples": n, "steps": s["steps"], "solver": s["solver"],
            "seed": s["seed"], "labels": s["labels"], "image_shape": list(arr.shape[1:]),
            "sampling_seconds": round(seconds, 2), "seconds_per_sample": round(seconds / n, 5),
            "device": str(device), "threads": torch.get_num_threads()}
    write_json(layout.sample_info(experiment, row), info)
    return info


# ---------------------------------------------------------------------------------------------
# Evaluation and FLOPs
# ---------------------------------------------------------------------------------------------

def evaluate_row(cfg: dict, experiment: str, row: str, device=None, progress: bool = True) -> dict:
    """ADM-protocol metrics (metrics.metrics) of the first metrics.n samples of a row against
    data/reference.npz -> metrics/<experiment>/<row>.json."""
    from .metrics import evaluate_npz, resolve_extractor

    layout, m = X.Layout(cfg), cfg["metrics"]
    X.row_spec(cfg, experiment, row)
    ext = resolve_extractor(m["extractor"], weights_path=m["weights_path"], device=device or device_of(cfg))
    with np.load(layout.reference, allow_pickle=False) as z:
        ref_id = str(z["extractor_id"]) if "extractor_id" in z.files else None
    if ref_id is not None and ref_id != ext.extractor_id and cfg["data"]["reference"]["npz"] is None:
        raise ConfigError(f"{layout.reference!r} was built with feature extractor {ref_id}, but metrics now use "
                          f"{ext.extractor_id}; rebuild the reference (delete it and rerun).")
    result = evaluate_npz(layout.samples(experiment, row), layout.reference, n=m["n"], metrics=m["metrics"],
                          extractor=ext, cache_dir=Path(layout.cache) / "metrics", batch_size=m["batch_size"],
                          progress=progress, pr_ref_n=m["pr_ref_n"])
    result = {"experiment": experiment, "row": row, **result}
    write_json(layout.metrics(experiment, row), result)
    return result


def count_flops(cfg: dict, experiment: str) -> dict:
    """GFLOPs per sampling step of every row of an experiment (flops.recipe_gflops, fvcore on the
    real module; weights do not matter) -> flops/<experiment>.json."""
    from .flops import FlopCounter, recipe_gflops

    exp, steps = X.experiment(cfg, experiment), cfg["sampling"]["steps"]
    counters = {}

    def counter(run):
        if run not in counters:
            counters[run] = FlopCounter(X.build_run_model(cfg, run, device="meta").to_empty(device="cpu").eval())
        return counters[run]

    rows = {}
    for rid, spec in exp["rows"].items():
        c = {"main": counter(exp["run"])}
        if spec.get("aux"):
            c["aux"] = counter(spec["aux"]["run"])
        rows[rid] = round(recipe_gflops(c, spec["recipe"], steps), 6)
    base = rows[exp["baseline"]]
    out = {"experiment": experiment, "steps": steps, "model": cfg["model"]["name"], "baseline": exp["baseline"],
           "convention": "multiply-accumulates of linear/conv layers per sampling step (fvcore), attention "
                         "products not counted (the paper's and DiT's convention)",
           "gflops": rows, "delta_gflops": {k: round(v - base, 6) for k, v in rows.items()}}
    write_json(X.Layout(cfg).flops(experiment), out)
    return out


# ---------------------------------------------------------------------------------------------
# Running stages outside Snakemake
# ---------------------------------------------------------------------------------------------

def run_stage(cfg: dict, stage: str, progress: bool = True, **ids):
    """Run one stage in this process (what its notebook does)."""
    from . import report

    fn = {"prepare_data": lambda: prepare_data(cfg), "encode_latents": lambda: encode_latents(cfg, progress=progress),
          "reference_stats": lambda: reference_stats(cfg, progress=progress),
          "train": lambda: run_training(cfg, ids["run"], progress=progress),
          "sample": lambda: sample_row(cfg, ids["experiment"], ids["row"], progress=progress),
          "evaluate": lambda: evaluate_row(cfg, ids["experiment"], ids["row"], progress=progress),
          "flops": lambda: count_flops(cfg, ids["experiment"]),
          "report": lambda: report.write_report(cfg, ids["experiment"])}
    X._check_stage(stage, ids)
    return fn[stage]()


def build_missing(cfg: dict, stage: str, progress: bool = True, **ids) -> list:
    """Run, in this process and in order, every upstream stage whose outputs are missing (what
    ``snakemake`` would do first). A notebook opened on its own calls this; under Snakemake all its
    inputs exist and this does nothing. Returns the stages it ran."""
    ran = []
    for dep, dep_ids in X.stage_deps(cfg, stage, **ids):
        if all(Path(p).exists() for p in X.stage_outputs(cfg, dep, **dep_ids).values()):
            continue
        ran += build_missing(cfg, dep, progress=progress, **dep_ids)
        print(f"building missing input: {dep} {dep_ids}")
        run_stage(cfg, dep, progress=progress, **dep_ids)
        ran.append((dep, dep_ids))
    return ran
