"""The workflow's stages: one function per job, of a validated config (config.load_config).

Each reads the outputs of the jobs before it and writes its own, at the paths of layout.Layout,
atomically (io.py); the notebooks in notebooks/ call one of them each, and Snakemake runs the
notebooks (workflow/rules/*.smk own the DAG). Nothing here walks a job graph or knows Snakemake.

    prepare_data(cfg)  encode_latents(cfg)  run_training(cfg, run)  sample_row(cfg, experiment, row)

The evaluation stages (reference statistics, the classifier, a row's metrics) are in evaluation.py.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import config as C, sample_set
from .checkpoint import check_state_dict, load_weights, read_checkpoint, save_atomic
from .data import FashionMNIST, ImageNet, LatentDataset, build_codec, encode_dataset
from .data.fashion_mnist import find_fashion_mnist
from .data.scenes import Scenes
from .data.text_encoders import OnlinePrompts, TextEncoder
from .data.webdataset import CaptionShards, build_index, read_captions
from .errors import ConfigError
from .flops import FlopCounter, recipe_gflops
from .guidance import resolve_recipe
from .models.adapters import as_velocity
from .models.formats import FORMATS, architecture, detect_format, state_dict, without_sigma
from .performance import configure_backends, use_bf16
from .io import copy_file, digest, file_hash, publish, read_json, write_json
from .layout import Layout, job_digest, resume_key, train_outputs
from .train import RESUMABLE_KEYS, TrainConfig, checkpoint_path, rank_world, train
from .tuning import describe as describe_tuning, tuned


# ---------------------------------------------------------------------------------------------
# Devices and images
# ---------------------------------------------------------------------------------------------

def device_of(cfg: dict) -> torch.device:
    want = cfg["compute"]["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("compute.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'.")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def training_images(cfg: dict, output: str = "float"):
    """The training image dataset of the config (items (image, label)), limited by data.train_limit."""
    d = cfg["data"]
    if d["dataset"] == "scenes":  # the text-to-image track: labels index the captions (ds.classes)
        return Scenes("train", n=d["train"]["n"], seed=d["train"]["seed"], tags=d["train"]["tags"], output=output)
    if d["dataset"] == "webdataset":  # the track at the paper's scale: label i is sample i's caption
        return CaptionShards(Layout(cfg).data_dir, image_size=d["image_size"], output=output)
    if d["dataset"] == "fashion_mnist":
        ds = FashionMNIST(d["train_split"], root=d["root"], download=d["download"], output=output)
    else:
        if d["root"] is None:
            raise ConfigError("data.root is not set: give the ImageNet train folder (root/<synset>/<image>.JPEG).")
        ds = ImageNet(d["root"], image_size=d["image_size"], output=output)
    if not d["train_limit"]:
        return ds
    first = torch.utils.data.Subset(ds, range(min(d["train_limit"], len(ds))))
    first.classes = getattr(ds, "classes", None)  # the latent manifest records them
    return first


def prepare_data(cfg: dict) -> dict:
    """Check that the dataset is present and readable (Fashion-MNIST: checksums; downloads if allowed)
    and record what will be used in data/dataset.json (the scenes of the text-to-image track are
    rendered here; their captions are its classes)."""
    d = cfg["data"]
    if d["dataset"] == "webdataset":
        return _index_shards(cfg)
    ds = training_images(cfg, output="uint8")
    base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
    labels = np.asarray(base.targets if hasattr(base, "targets") else [base[i][1] for i in range(len(base))])
    labels = labels[:len(ds)]
    if d["dataset"] == "scenes":
        num_classes, root = len(base.classes), "procedural (data/scenes.py)"
    else:
        num_classes, root = C.DATASETS[d["dataset"]], str(getattr(base, "root", None) or _fashion_root(d))
    info = {"dataset": d["dataset"], "split": d.get("train_split", "train"), "root": root, "count": len(ds),
            "source_count": len(base), "num_classes": num_classes,
            "class_histogram": np.bincount(labels, minlength=num_classes).tolist(),
            "image_shape": list(ds[0][0].shape), "classes": list(getattr(base, "classes", []))}
    write_json(Layout(cfg).dataset, info)
    return info


def _index_shards(cfg: dict) -> dict:
    """The webdataset shards' index (data/webdataset.py: index.npz, captions.jsonl, shards.json) and
    data/dataset.json; the aesthetic filter applied as the config gives it (data.filter)."""
    d, layout = cfg["data"], Layout(cfg)
    f = d["filter"]
    shards = build_index(d["shards"], layout.data_dir, keep_keys=f["keys"], field=f["field"],
                         minimum=f["min"])
    info = {"dataset": "webdataset", "count": shards["count"], "source_count": shards["count"] + sum(
        shards["dropped"].values()), "dropped": shards["dropped"], "num_classes": shards["count"],
            "shards": len(shards["shards"]), "image_shape": [3, d["image_size"], d["image_size"]],
            "captions": layout.captions, "classes": []}
    write_json(layout.dataset, info)
    return info


def training_captions(cfg: dict) -> list[str]:
    """The training captions of the text-to-image track, in the order of the latents' labels."""
    if cfg["data"]["dataset"] == "webdataset":
        return read_captions(Layout(cfg).data_dir)
    return read_json(Layout(cfg).dataset)["classes"]


def _fashion_root(d):
    return find_fashion_mnist(d["root"], d["train_split"], d["download"])


def build_codec_of(cfg: dict):
    spec = dict(cfg["data"]["codec"])
    return build_codec(spec.pop("name"), **spec)


def encode_latents(cfg: dict, device=None, progress: bool = True) -> dict:
    """Encode the training images with the config's codec into latent shards (resumable)."""
    e = cfg["data"]["encode"]
    # webdataset images go to the encoder as uint8: a quarter of the bytes from the DataLoader's workers
    images = training_images(cfg, output="uint8" if cfg["data"]["dataset"] == "webdataset" else "float")
    report = encode_dataset(images, build_codec_of(cfg), Layout(cfg).latents_dir,
                            shard_size=e["shard_size"], batch_size=e["batch_size"], flip=e["flip"],
                            device=device or device_of(cfg), dtype=e["dtype"], seed=e["seed"],
                            num_workers=e["num_workers"], progress=progress)
    return report.manifest


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def run_training(cfg: dict, run: str, device=None, progress: bool = True) -> dict:
    """Train one run (train.py's loop) in runs/<run>/state/ and publish its final checkpoint and
    snapshots as runs/<run>/last.pt and step-XXXXXXX.pt, plus summary.json.

    The state folder is not a Snakemake output, so a job that is killed (a cluster time limit) or
    rerun because ``train.steps`` grew continues from the last checkpoint. A state trained under
    other settings (model, optimiser, data) is never reused silently: ConfigError says what to do.

    Under torch.distributed (launch.py: one process per GPU) every rank trains its slice of each
    global batch; rank 0 alone writes resume_key.json, the published outputs and summary.json, and
    the other ranks wait for it, then return the same summary."""
    if run not in cfg["runs"]:
        raise ConfigError(f"run {run!r} is not in config {cfg['name']!r}; runs: {', '.join(cfg['runs'])}.")
    layout = Layout(cfg)
    state = Path(layout.state_dir(run))
    tc = TrainConfig.from_dict(dict(cfg["runs"][run]["train"]))
    _check_state(cfg, run, state, tc)
    state.mkdir(parents=True, exist_ok=True)
    rank, world = rank_world()
    if rank == 0:
        write_json(state / "resume_key.json", resume_key(cfg, run))
    dataset = LatentDataset(layout.latents_dir, verify="sha256" if rank == 0 else "size")  # rank 0 hashes them
    if tuple(dataset.latent_shape) != (cfg["model"]["in_channels"], cfg["model"]["input_size"],
                                       cfg["model"]["input_size"]):
        raise ConfigError(f"latents in {layout.latents_dir!r} have shape {dataset.latent_shape}; model "
                          f"{cfg['model']['name']} expects ({cfg['model']['in_channels']}, "
                          f"{cfg['model']['input_size']}, {cfg['model']['input_size']}). Re-encode them.")
    text = is_text(cfg)
    if not text and dataset.num_classes != cfg["model"]["num_classes"]:
        raise ConfigError(f"latents in {layout.latents_dir!r} have {dataset.num_classes} classes; model "
                          f"{cfg['model']['name']} has model.num_classes={cfg['model']['num_classes']}. Re-encode them.")
    with torch.random.fork_rng(devices=[]):  # initial weights from train.seed, not from the process's RNG
        torch.manual_seed(2**62 + tc.seed)    # (apart from the per-step seeds seed * 1_000_003 + step)
        model = C.build_run_model(cfg, run)
    device = device or device_of(cfg)
    if world > 1 and torch.device(device).type == "cuda" and torch.device(device).index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # DDP: this rank's GPU
    conditions = None
    if text and cfg["data"]["text_features"] == "online":  # each batch's captions encoded at its step
        conditions = OnlinePrompts(TextEncoder.from_config(cfg["data"]["text_encoder"], device),
                                   training_captions(cfg), model.cond_embedder,
                                   batch_size=cfg["data"]["text_encoder"]["batch_size"])
        if len(conditions.captions) != dataset.num_classes:
            raise ConfigError(f"latents in {layout.latents_dir!r} have {dataset.num_classes} captions, "
                              f"{layout.captions!r} {len(conditions.captions)}; re-encode them (snakemake --forcerun "
                              "t2i_encode_latents).")
    elif text:  # the captions' features, in the order of the latents' labels
        bank = prompt_features(cfg, "train", expect=training_captions(cfg))
        if len(bank["prompts"]) != dataset.num_classes:
            raise ConfigError(f"latents in {layout.latents_dir!r} have {dataset.num_classes} captions, the prompt "
                              f"features {len(bank['prompts'])}; re-encode them (snakemake --forcerun "
                              "t2i_encode_latents).")
        model.cond_embedder.set_bank(bank["features"], bank["mask"])
    t0 = time.perf_counter()
    init = cfg["runs"][run].get("init")  # dense finetuning: start from another run's snapshot
    init_from = layout.snapshot(init["run"], init["step"]) if init else None
    train(model, dataset, tc, state, device=device, progress=progress, init_from=init_from, conditions=conditions)
    seconds = time.perf_counter() - t0
    outputs = train_outputs(cfg, run)
    if rank != 0:
        torch.distributed.barrier()  # until rank 0 has published
        return read_json(outputs["summary"])
    publish(state / "last.pt", outputs["checkpoint"])
    for s in tc.save_steps:
        publish(checkpoint_path(state, s), layout.snapshot(run, s))
    if (state / "log.csv").exists():
        copy_file(state / "log.csv", Path(layout.run_dir(run)) / "log.csv")
    log = _read_log(state / "log.csv")
    summary = {"run": run, "steps": tc.steps, "batch_size": tc.batch_size, "images_seen": tc.steps * tc.batch_size,
               "save_steps": sorted(tc.save_steps), "seconds_this_job": round(seconds, 1),
               "final_loss": log[-1]["loss"] if log else None, "num_latents": len(dataset),
               "parameters": sum(p.numel() for p in model.parameters()),
               "bf16": use_bf16(tc.bf16, device)}   # what train.bf16 resolved to on this device
    if world > 1:
        summary["processes"] = world
    write_json(outputs["summary"], summary)
    if world > 1:
        torch.distributed.barrier()
    return summary


def _read_log(path: Path) -> list[dict]:
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
    if key_file.exists() and json.loads(key_file.read_text()) != json.loads(json.dumps(resume_key(cfg, run))):
        raise ConfigError(f"run {run!r}: its training state in {str(state)!r} was trained with other settings "
                          f"(model, optimiser or data changed; only {', '.join(RESUMABLE_KEYS)} may change "
                          f"while a run continues). To start over, {fix}")
    step = int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["step"])
    if step > tc.steps:
        raise ConfigError(f"run {run!r} is already trained for {step} steps, more than train.steps={tc.steps}; "
                          f"raise steps, or {fix}")
    lost = [s for s in tc.save_steps if s <= step and not checkpoint_path(state, s).exists()]
    if lost:
        raise ConfigError(f"run {run!r}: snapshot step(s) {lost} were not saved when training passed them (it is at "
                          f"step {step}); choose saved steps, or {fix}")


def load_run_model(cfg: dict, run: str, checkpoint, device=None, weights: str = "ema", prompt_set: str = "eval"):
    """A run's model with the weights of a checkpoint (the EMA by default), in eval mode; a text
    model reads the features of an evaluation prompt set (its conditions index them). A run from a
    released checkpoint (runs.<run>.from) is wrapped in its format's adapter (models/adapters.py),
    so it is sampled as our velocity."""
    model = C.build_run_model(cfg, run)
    obj = read_checkpoint(checkpoint)
    load_weights(model, obj, weights)
    if is_text(cfg):
        bank = prompt_features(cfg, C.eval_split(prompt_set))
        model.cond_embedder.set_bank(bank["features"], bank["mask"])
    if C.is_imported(cfg, run):
        want = FORMATS[obj.get("format", "ours")][0] if isinstance(obj, dict) else "velocity"
        model = as_velocity(model, want)
    device = device or device_of(cfg)
    configure_backends(device)  # TF32 outside autocast on a GPU; nothing on the CPU
    return model.to(device).eval()


def import_run(cfg: dict, run: str) -> dict:
    """A run from a checkpoint (runs.<run>.from: released weights, no training): read it in its format
    (models/formats.py), check that it is the run's architecture (the model section, the run's
    sparsity and decoder), and publish its weights in our layout as runs/<run>/last.pt, which keeps
    the format (its prediction is converted when sampled: load_run_model) and where it came from;
    plus summary.json. A learned-Σ head is cut to its velocity (or noise) channels (exact)."""
    if run not in cfg["runs"] or not C.is_imported(cfg, run):
        raise ConfigError(f"run {run!r} of config {cfg['name']!r} has no from: (a checkpoint to import).")
    src, layout = cfg["runs"][run]["from"], Layout(cfg)
    path = Path(src["checkpoint"]).expanduser()
    if not path.is_file():
        raise ConfigError(f"runs.{run}.from.checkpoint={str(path)!r} does not exist: download it (README, Released "
                          "checkpoints in the workflow) and set the path (--configfile with runs.<run>.from.checkpoint).")
    obj = read_checkpoint(path)
    fmt = src.get("format") or detect_format(obj, path)[0]
    sd = state_dict(obj, fmt, src.get("weights", "ema"))
    arch = architecture(sd)
    sd = without_sigma(sd, arch)
    model = C.build_run_model(cfg, run)
    try:
        check_state_dict(model, sd)
    except ConfigError as e:
        raise ConfigError(f"runs.{run}.from: {path.name} ({fmt}; depth {arch['depth']}, width {arch['hidden_size']}, "
                          f"patch {arch['patch_size']}, {arch['num_classes']} classes, input {arch['input_size']}) is "
                          f"not the run's architecture ({cfg['model']['name']}, sparsity {cfg['runs'][run]['sparsity']}): "
                          f"{e} Set model: and the run's decoder: to the checkpoint's.") from e
    source = {"path": str(path), "sha256": file_hash(path), "format": fmt, "weights": src.get("weights", "ema"),
              "parameterization": FORMATS[fmt][0], "learn_sigma_dropped": arch["learn_sigma"],
              **({"source": src["source"]} if src.get("source") else {})}
    out = layout.checkpoint(run)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"model": sd, "ema": sd, "step": cfg["runs"][run]["train"]["steps"], "format": fmt, "source": source},
                out)
    summary = {"run": run, "imported": source, "architecture": arch,
               "config_digest": job_digest(cfg, "train", run=run)}
    write_json(layout.run_summary(run), summary)
    return summary


def is_text(cfg: dict) -> bool:
    """Whether a config is the text-to-image track's (conditions index prompts, not classes)."""
    return cfg["data"]["dataset"] in C.TEXT_DATASETS


def prompt_features(cfg: dict, split: str, expect=None) -> dict:
    """The cached prompt bank of the text-to-image track (text_features job): 'train' (the training
    captions, in the latents' label order) or 'eval' (the evaluation prompts)."""
    path = Layout(cfg).text_features(split)
    bank = read_checkpoint(path)
    if expect is not None and list(bank["prompts"]) != list(expect):
        raise ConfigError(f"the prompt features in {path!r} are not those of the latents' captions; remake them "
                          f"(snakemake {path} --config preset={cfg['name']}).")
    return bank


def num_conditions(cfg: dict, prompt_set: str = "eval") -> int:
    """How many conditions samples cycle through: the classes, or the prompts of an evaluation set."""
    if is_text(cfg):
        return len(read_json(Layout(cfg).prompts_file(prompt_set))["prompts"])
    return cfg["model"]["num_classes"]


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def sample_noise(cfg: dict, start: int, stop: int, seed: int | None = None) -> torch.Tensor:
    """Initial noise of samples [start, stop) of the config's latent shape (sample_set.noise: sample
    i's noise depends only on (seed, i), so every row of a table starts from the same noise)."""
    m = cfg["model"]
    return sample_set.noise((m["in_channels"], m["input_size"], m["input_size"]), start, stop,
                            cfg["sampling"]["seed"] if seed is None else seed)


def sample_labels(cfg: dict, start: int, stop: int, seed: int | None = None, labels: str | None = None,
                  k: int | None = None) -> torch.Tensor:
    """Class labels (or prompt indices) of samples [start, stop): balanced (i mod K) or uniform random
    from (seed, i); ``k`` conditions (None: num_conditions)."""
    return sample_set.labels(num_conditions(cfg) if k is None else k, start, stop,
                             cfg["sampling"]["seed"] if seed is None else seed, labels or cfg["sampling"]["labels"])


def row_checkpoints(cfg: dict, spec: dict) -> dict:
    """The checkpoint files of a row's networks: 'main' (its run at its step, the final weights by
    default) and, with aux:, 'aux' (a snapshot)."""
    layout = Layout(cfg)
    files = {"main": layout.weights(spec["run"], spec.get("step"))}
    if spec.get("aux"):
        files["aux"] = layout.snapshot(spec["aux"]["run"], spec["aux"]["step"])
    return files


def row_models(cfg: dict, spec: dict, device, prompt_set: str = "eval") -> dict:
    """The networks a row's recipe uses, by name (row_checkpoints), with their EMA weights (a text
    model with the bank of the row's prompt set)."""
    runs = {"main": spec["run"], "aux": (spec.get("aux") or {}).get("run")}
    return {name: load_run_model(cfg, runs[name], path, device, prompt_set=prompt_set)
            for name, path in row_checkpoints(cfg, spec).items()}


def sample_row(cfg: dict, experiment: str, row: str, device=None, progress: bool = True) -> dict:
    """Draw the samples of one row of an experiment, decode them with the codec and write
    samples/<experiment>/<row>.npz (ADM format: arr_0 uint8 images, arr_1 class labels) and .json
    (the setting, the sampling time and GFLOPs per sampling step: flops.recipe_gflops, fvcore on the
    row's networks; multiply-accumulates of linear/conv layers, attention products not counted, the
    paper's and DiT's convention).

    Each batch is kept in samples/<experiment>/.<row>.parts/ as it finishes, so a job killed half-way
    through a 50k set continues where it stopped (the parts are checked against the job's settings)."""
    layout = Layout(cfg)
    exp, (spec, choice) = C.experiment(cfg, experiment), tuned(cfg, experiment, row)  # a tuned row: its choice
    if spec.get("same_as"):
        raise ConfigError(f"row {experiment}/{row} reuses the samples of {spec['same_as']}; sample that row.")
    s, seed = exp["sampling"], spec["seed"]
    device = torch.device(device) if device is not None else device_of(cfg)
    recipe = resolve_recipe(spec["recipe"], num_steps=s["steps"])
    prompt_set = C.prompt_set(cfg, experiment) if is_text(cfg) else "eval"
    models = row_models(cfg, spec, device, prompt_set)
    codec = build_codec_of(cfg).to(device)
    key = job_digest(cfg, "sample", experiment=experiment, row=row)
    # finished batches are reused only if made from these very inputs: the settings, the data they
    # were trained on, the bytes of each checkpoint (a retrained or replaced one starts over), the
    # decoder's weights and the precision bf16 resolved to on this device
    bf16 = use_bf16(s["bf16"], device)
    parts_key = digest({"job": key, "data": cfg["data"], "codec_weights": codec.weights_digest(), "recipe": spec["recipe"],
                        "checkpoints": {k: file_hash(p) for k, p in row_checkpoints(cfg, spec).items()}, "bf16": bf16})
    latent = cfg["model"]
    drawn = sample_set.draw(models, recipe, layout.samples(experiment, row), num_samples=s["num_samples"],
                            batch_size=s["batch_size"], shape=(latent["in_channels"], latent["input_size"], latent["input_size"]),
                            num_conditions=num_conditions(cfg, prompt_set), seed=seed, decode=codec.decode,
                            key=parts_key, label_mode=s["labels"], steps=s["steps"], solver=s["solver"],
                            bf16=bf16, device=device, progress=progress, desc=f"sampling {experiment}/{row}")
    gflops = recipe_gflops({k: FlopCounter(m) for k, m in models.items()}, spec["recipe"], s["steps"])
    n, total = drawn["num_samples"], drawn["sampling_seconds"]
    info = {"experiment": experiment, "row": row, "label": spec["label"], "recipe": recipe.to_dict(),
            "run": spec["run"], "step": spec.get("step"), "aux": spec.get("aux"), "tags": spec.get("tags", {}),
            "num_samples": n, "steps": s["steps"], "solver": s["solver"], "seed": seed, "labels": s["labels"],
            "image_shape": drawn["image_shape"], "sampling_seconds": total,
            "seconds_per_sample": round(total / n, 5), "gflops": round(gflops, 6),
            "batches_resumed": drawn["batches_resumed"], "device": str(device),
            "threads": torch.get_num_threads(), "bf16": bf16, "tuned": describe_tuning(choice),
            "config_digest": key}
    if is_text(cfg):
        info["prompts"] = prompt_set
    write_json(layout.sample_info(experiment, row), info)
    return info
