"""Workflow configuration as data: presets, validation, the results layout and the stage graph.

Nothing here imports Snakemake; the Snakefile, the notebooks and the tests all read the
configuration through this module, so a bad value fails the same way everywhere: a ConfigError
that names the key (``experiments.table2.rows.cfg.recipe``) and what would be allowed.

    cfg = load_config("embedded")                               # workflow/config/embedded.yaml
    cfg = load_config("smoke", {"results_dir": "/tmp/smoke"})   # overrides, deep-merged
    cfg = load_config("my/own.yaml")                            # a preset file by path
    layout = Layout(cfg)                                         # where every stage writes

Presets (``workflow/config/*.yaml``) hold every knob of a configuration: the data and its codec,
the model, the training runs, sampling, metrics, per-rule resources and the experiments (each a
table or figure of the paper, its rows as data). ``load_config`` deep-merges overrides into the
preset (mappings merge key by key, anything else is replaced), fills documented defaults and
validates the result (see ``validate``). A preset may name another to start from
(``extends: embedded``); the chain is merged base first.

Stages (the workflow's jobs) and what they depend on live here too (``stage_deps``,
``stage_outputs``), so the Snakefile and a notebook run on its own build the same graph.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

from .errors import ConfigError

PRESETS_DIRNAME = Path("workflow") / "config"
DEFAULT_PRESET = "embedded"

DATASETS = {"fashion_mnist": 10, "imagenet": 1000}  # dataset -> number of classes
FASHION_MNIST_SPLITS = {"train": 60000, "test": 10000}
FASHION_MNIST_SIZE = 32  # 28 x 28 padded by 2 on each side (data/fashion_mnist.py)
LATENT_DTYPES = ("float32", "float16")
SOLVERS = ("euler", "heun")  # sampling.SOLVERS
LABELS = ("balanced", "random")
DEVICES = ("auto", "cpu", "cuda")
# metrics.evaluate.METRICS and the extractor names of metrics.inception.resolve_extractor, kept here
# so that reading a config does not import torch-fidelity (a test checks that they agree).
METRICS = ("fid", "sfid", "is", "prec", "rec", "acc")
EXTRACTORS = ("auto", "offline", "fid-inception-torchscript", "inception-v3-compat", "classifier")
# Experiments the workflow knows how to report (one report rule and notebook each): the paper's
# ImageNet tables and figures. The text-to-image ones (Tables 4-5, Figs. 9, A1-A4) come later.
TABLES = ("table1", "table2", "table3")
FIGURES = ("fig1", "fig2", "fig4", "fig5", "fig6", "fig7", "fig8", "figA5", "figA6", "figA7", "figA8", "figA9")
EXPERIMENTS = TABLES + FIGURES
# Resource entries a config may set (rule families of workflow/rules/*.smk), and what each holds.
RESOURCE_RULES = ("default", "prepare_data", "encode_latents", "reference_stats", "classifier", "train",
                  "finetune", "sample", "evaluate", "flops", "report")
RESOURCE_KEYS = {"threads": 1, "gpu": 0, "mem_mb": 4000, "runtime": 60}
# Training options that may change while a run keeps its state (everything else needs a fresh run).
RESUMABLE_TRAIN_KEYS = ("steps", "save_steps", "ckpt_every", "log_every")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def repo_root(start=None) -> Path:
    """The repository root: the nearest folder upwards (from ``start`` or the cwd) holding the
    Snakefile and workflow/config, else the folder this source tree sits in."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "Snakefile").is_file() and (p / PRESETS_DIRNAME).is_dir():
            return p
    src_root = Path(__file__).resolve().parents[2]
    if (src_root / PRESETS_DIRNAME).is_dir():
        return src_root
    raise ConfigError(f"cannot find the repository (a folder with Snakefile and {PRESETS_DIRNAME}/) above "
                      f"{str(here)!r}; run from inside the sparse-guidance checkout.")


def presets_dir() -> Path:
    return repo_root() / PRESETS_DIRNAME


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_path(preset: str | Path) -> Path:
    """A preset name (``embedded``) -> workflow/config/embedded.yaml; a path is taken as it is."""
    s = str(preset)
    if s.endswith((".yaml", ".yml")) or "/" in s or Path(s).is_file():
        path = Path(s).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {s!r} does not exist.")
        return path
    path = presets_dir() / f"{s}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown config preset {s!r}; presets: {', '.join(list_presets())} "
                          "(or give the path of a YAML file).")
    return path


def read_yaml(path) -> dict:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, not a {type(data).__name__}.")
    return data


ATOMIC_KEYS = ("recipe",)  # replaced whole by an override, never merged (a recipe is one value)


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over`` merged in: mappings key by key (except ATOMIC_KEYS), anything
    else replaced."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ATOMIC_KEYS:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_preset(preset, seen=()) -> dict:
    path = preset_path(preset)
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    key = str(path.resolve())
    if key in seen:
        raise ConfigError(f"config {str(path)!r}: 'extends' forms a cycle.")
    base_ref = parent
    if ("/" in str(parent) or str(parent).endswith((".yaml", ".yml"))) and not Path(parent).is_absolute():
        base_ref = path.parent / parent  # a relative path is relative to the file that names it
    return deep_merge(_read_preset(base_ref, (*seen, key)), data)


def load_config(preset: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Read a preset (name or YAML path), deep-merge ``overrides``, fill defaults and validate.

    ``overrides`` is what ``snakemake --config`` / ``--configfile`` add beside ``preset``.
    Returns a new dict; raises ConfigError naming the first problem found.
    """
    raw = _read_preset(preset or DEFAULT_PRESET)
    overrides = dict(overrides or {})
    overrides.pop("preset", None)
    return validate(deep_merge(raw, overrides))


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------

def _keys(d, where: str, required=(), optional=()) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__} {d!r}.")
    allowed = set(required) | set(optional)
    extra = sorted(set(d) - allowed)
    if extra:
        prefix = "" if where == "config" else f"{where}."
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + str(k) for k in extra)}; "
                          f"{'the config' if where == 'config' else where} takes {', '.join(sorted(allowed))}.")
    missing = [k for k in required if k not in d]
    if missing:
        prefix = "" if where == "config" else f"{where}."
        raise ConfigError(f"{'the config' if where == 'config' else where} is missing "
                          f"{', '.join(prefix + k for k in missing)}.")
    return d


def _int(v, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}={v!r} must be an integer.")
    if lo is not None and v < lo:
        raise ConfigError(f"{where}={v} must be >= {lo}.")
    if hi is not None and v > hi:
        raise ConfigError(f"{where}={v} must be <= {hi}.")
    return v


def _bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}={v!r} must be true or false.")
    return v


def _choice(v, where: str, choices) -> str:
    if v not in choices:
        raise ConfigError(f"{where}={v!r}; choose one of {', '.join(map(str, choices))}.")
    return v


def _str(v, where: str, allow_none: bool = False):
    if v is None and allow_none:
        return v
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}={v!r} must be a non-empty string.")
    return v


def _id(v, where: str) -> str:
    if not isinstance(v, str) or not ID_RE.match(v):
        raise ConfigError(f"{where}: {v!r} is not a usable name (letters, digits and _ . + -, starting with a "
                          "letter or digit; it becomes part of file names).")
    return v


def _with_defaults(d: dict, defaults: dict) -> dict:
    return {**copy.deepcopy(defaults), **d}


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

TOP_REQUIRED = ("name", "data", "model", "runs", "sampling", "metrics", "experiments")
TOP_OPTIONAL = ("results_dir", "compute", "resources", "classifier")
# The Fashion-MNIST classifier some figures measure with (metrics.extractor: classifier); its defaults
# train in about a minute on 2 cores (metrics/classifier.py).
CLASSIFIER_KEYS = ("steps", "batch_size", "lr", "seed", "reference_n")
CLASSIFIER_DEFAULTS = dict(steps=1500, batch_size=128, lr=2e-3, seed=0, reference_n=10000)

DATA_DEFAULTS = dict(root=None, download=False, train_split="train", train_limit=None)
ENCODE_DEFAULTS = dict(flip=False, batch_size=256, shard_size=10000, dtype="float32", seed=0, num_workers=0)
REFERENCE_DEFAULTS = dict(split="test", n=None, npz=None, batch_size=32)
SAMPLING_DEFAULTS = dict(steps=40, solver="euler", seed=0, batch_size=256, labels="balanced", bf16=False)
METRICS_DEFAULTS = dict(metrics=["fid"], extractor="auto", weights_path=None, batch_size=32, pr_ref_n=10000)
MODEL_OPTIONAL = ("depth", "hidden_size", "num_heads", "mlp_ratio", "learn_sigma", "patch_size")
RUN_DEFAULTS = dict(routes=[], train_gamma=None, decoder=None, init=None)
DECODER_KEYS = {"depth": "decoder_depth", "width": "decoder_width", "heads": "decoder_heads"}


def _check_data(d: dict) -> dict:
    d = _with_defaults(_keys(d, "data", ("dataset", "image_size", "codec", "reference"),
                             ("root", "download", "train_split", "train_limit", "encode")), DATA_DEFAULTS)
    _choice(d["dataset"], "data.dataset", tuple(DATASETS))
    _int(d["image_size"], "data.image_size", 1)
    _str(d["root"], "data.root", allow_none=True)
    _bool(d["download"], "data.download")
    if d["train_limit"] is not None:
        _int(d["train_limit"], "data.train_limit", 1)
    codec = d["codec"]
    if isinstance(codec, str):
        codec = {"name": codec}
    _keys(codec, "data.codec", ("name",), ("path", "posterior", "factor", "image_channels", "shift", "scale",
                                            "scale_factor"))
    from .data.codecs import CODECS  # light: no torch-fidelity, no diffusers until a VAE is built
    _choice(codec["name"], "data.codec.name", tuple(CODECS))
    d["codec"] = codec
    d["encode"] = _with_defaults(_keys(d.get("encode") or {}, "data.encode", (), tuple(ENCODE_DEFAULTS)),
                                 ENCODE_DEFAULTS)
    e = d["encode"]
    _bool(e["flip"], "data.encode.flip")
    for k in ("batch_size", "shard_size"):
        _int(e[k], f"data.encode.{k}", 1)
    _int(e["seed"], "data.encode.seed")
    _int(e["num_workers"], "data.encode.num_workers", 0)
    _choice(e["dtype"], "data.encode.dtype", LATENT_DTYPES)
    ref = d["reference"] = _with_defaults(_keys(d["reference"], "data.reference", (), tuple(REFERENCE_DEFAULTS)),
                                          REFERENCE_DEFAULTS)
    _int(ref["batch_size"], "data.reference.batch_size", 1)
    if d["dataset"] == "fashion_mnist":
        if d["image_size"] != FASHION_MNIST_SIZE:
            raise ConfigError(f"data.image_size={d['image_size']}: Fashion-MNIST images are padded to "
                              f"{FASHION_MNIST_SIZE}x{FASHION_MNIST_SIZE}.")
        _choice(d["train_split"], "data.train_split", tuple(FASHION_MNIST_SPLITS))
        if ref["npz"] is None:
            _choice(ref["split"], "data.reference.split", tuple(FASHION_MNIST_SPLITS))
            if ref["n"] is None:
                raise ConfigError("data.reference.n is missing: how many images of the reference split to use.")
            _int(ref["n"], "data.reference.n", 2, FASHION_MNIST_SPLITS[ref["split"]])
    elif ref["npz"] is None:
        raise ConfigError("data.reference.npz is missing: ImageNet is evaluated against ADM's reference batch "
                          "(VIRTUAL_imagenet256_labeled.npz); give its path.")
    if ref["npz"] is not None:
        _str(ref["npz"], "data.reference.npz")
    if ref["n"] is not None and ref["npz"] is not None:
        raise ConfigError("data.reference: give either npz (a reference batch used whole) or split + n, not both.")
    return d


def codec_geometry(codec: dict) -> tuple[int, int]:
    """(downsample factor, latent channels) of a codec spec, without building it (a VAE needs weights)."""
    if codec["name"] == "space-to-depth":
        f = int(codec.get("factor", 2))
        return f, int(codec.get("image_channels", 1)) * f * f
    return 8, 4  # the SD VAE: 3 x 256 x 256 -> 4 x 32 x 32


def _check_model(m: dict, data: dict) -> dict:
    _keys(m, "model", ("name", "input_size", "in_channels", "num_classes"), MODEL_OPTIONAL)
    from .models import MODELS
    if m["name"] not in MODELS:
        raise ConfigError(f"model.name={m['name']!r} is not a registered model; known: {', '.join(MODELS)}.")
    for k in ("input_size", "in_channels", "num_classes"):
        _int(m[k], f"model.{k}", 1)
    down, channels = codec_geometry(data["codec"])
    if data["image_size"] % down or data["image_size"] // down != m["input_size"]:
        raise ConfigError(f"model.input_size={m['input_size']} does not match the latents: {data['image_size']}px "
                          f"images through codec {data['codec']['name']!r} (downsampling x{down}) give "
                          f"{data['image_size'] / down:g}.")
    if channels != m["in_channels"]:
        raise ConfigError(f"model.in_channels={m['in_channels']} but codec {data['codec']['name']!r} gives "
                          f"{channels}-channel latents.")
    if m["num_classes"] != DATASETS[data["dataset"]]:
        raise ConfigError(f"model.num_classes={m['num_classes']} but {data['dataset']} has "
                          f"{DATASETS[data['dataset']]} classes.")
    return m


def model_kwargs(cfg: dict, run: str) -> tuple[str, str, dict]:
    """(registry name, sparsity, build_model kwargs) of a training run's model."""
    m, r = cfg["model"], cfg["runs"][run]
    kw = {k: v for k, v in m.items() if k != "name"}
    if r["sparsity"] == "routing":
        kw["routes"] = list(r["routes"])
    if r.get("train_gamma") is not None:
        kw["train_gamma"] = r["train_gamma"]
    for k, arg in DECODER_KEYS.items():
        if r.get("decoder") and k in r["decoder"]:
            kw[arg] = r["decoder"][k]
    return m["name"], r["sparsity"], kw


def build_run_model(cfg: dict, run: str, device="cpu"):
    """The (untrained) model of a run; device="meta" builds it without allocating weights."""
    import torch

    from .models import build_model

    name, sparsity, kw = model_kwargs(cfg, run)
    with torch.device(device):
        return build_model(name, sparsity=sparsity, **kw)


def _check_runs(runs: dict, cfg: dict) -> dict:
    if not isinstance(runs, dict) or not runs:
        raise ConfigError("runs must map at least one run name to its settings (sparsity, routes, train, ...).")
    from .models import SPARSITY
    from .train import TrainConfig
    out = {}
    for name, r in runs.items():
        where = f"runs.{name}"
        _id(name, "runs")
        r = _with_defaults(_keys(r, where, ("sparsity", "train"), ("routes", "train_gamma", "decoder", "label",
                                                                    "init")), RUN_DEFAULTS)
        _choice(r["sparsity"], f"{where}.sparsity", SPARSITY)
        if r["sparsity"] != "routing" and r["routes"]:
            raise ConfigError(f"{where}.routes: only sparsity 'routing' takes routes (this run is {r['sparsity']!r}).")
        if r["decoder"] is not None:
            if r["sparsity"] != "masking":
                raise ConfigError(f"{where}.decoder: only sparsity 'masking' has a decoder.")
            _keys(r["decoder"], f"{where}.decoder", (), tuple(DECODER_KEYS))
        tr = r["train"]
        _keys(tr, f"{where}.train", ("steps", "batch_size"),
              tuple(f for f in TrainConfig.__dataclass_fields__))
        try:
            tc = TrainConfig.from_dict(copy.deepcopy(tr))
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{where}.train: {e}") from e
        bad = [s for s in tc.save_steps if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= tc.steps]
        if bad:
            raise ConfigError(f"{where}.train.save_steps {bad}: each snapshot step must be an integer in "
                              f"1..{tc.steps} (train.steps).")
        out[name] = r
        try:  # routes vs depth, decoder sizes, gamma: the model's own checks, on the meta device
            build_run_model({**cfg, "runs": out}, name, device="meta")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: the model cannot be built ({type(e).__name__}: {e}).") from e
    for name, r in out.items():  # finetuning runs start from another run's snapshot (dense finetuning)
        if r["init"] is None:
            continue
        where = f"runs.{name}.init"
        init = _keys(r["init"], where, ("run", "step"))
        if init["run"] not in out:
            raise ConfigError(f"{where}.run={init['run']!r} is not a training run; runs: {', '.join(out)}.")
        if init["run"] == name:
            raise ConfigError(f"{where}.run: a run cannot start from itself.")
        if model_kwargs({**cfg, "runs": out}, name) != model_kwargs({**cfg, "runs": out}, init["run"]):
            raise ConfigError(f"{where}: run {name!r} must have the architecture of {init['run']!r} (same sparsity, "
                              "routes and decoder) to start from its weights; set the training sparsity with "
                              "train.gamma (0 for dense finetuning).")
        _check_snapshot({**cfg, "runs": out}, init["run"], init["step"], f"{where}.step")
        seen, at = {name}, init["run"]
        while out[at]["init"] is not None:
            if at in seen:
                raise ConfigError(f"{where}: runs start from each other in a cycle ({', '.join(sorted(seen))}).")
            seen.add(at)
            at = out[at]["init"]["run"]
    return out


def _check_sampling(s: dict) -> dict:
    s = _with_defaults(_keys(s, "sampling", ("num_samples",), tuple(SAMPLING_DEFAULTS)), SAMPLING_DEFAULTS)
    _int(s["steps"], "sampling.steps", 1)
    _choice(s["solver"], "sampling.solver", SOLVERS)
    _int(s["seed"], "sampling.seed", 0)
    _int(s["batch_size"], "sampling.batch_size", 1)
    _int(s["num_samples"], "sampling.num_samples", 1)
    _choice(s["labels"], "sampling.labels", LABELS)
    _bool(s["bf16"], "sampling.bf16")
    return s


def _check_metrics(m: dict, sampling: dict, where: str = "metrics") -> dict:
    m = _with_defaults(_keys(m, where, ("n",), tuple(METRICS_DEFAULTS)), METRICS_DEFAULTS)
    names = m["metrics"]
    if isinstance(names, str):
        names = [x.strip() for x in names.split(",") if x.strip()]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{where}.metrics={m['metrics']!r} must list metrics, e.g. [fid].")
    for x in names:
        _choice(x, f"{where}.metrics", METRICS)
    m["metrics"] = names
    _int(m["n"], f"{where}.n", 2)
    if m["n"] > sampling["num_samples"]:
        raise ConfigError(f"{where}.n={m['n']} exceeds sampling.num_samples={sampling['num_samples']}: "
                          "a metric can only use the samples drawn.")
    _choice(m["extractor"], f"{where}.extractor", EXTRACTORS)
    _str(m["weights_path"], f"{where}.weights_path", allow_none=True)
    _int(m["batch_size"], f"{where}.batch_size", 1)
    _int(m["pr_ref_n"], f"{where}.pr_ref_n", 4)
    if {"prec", "rec"} & set(names) and m["n"] < 4:
        raise ConfigError(f"{where}.n={m['n']}: precision/recall (k=3) need at least 4 samples.")
    return m


def _check_resources(res: dict) -> dict:
    res = _keys(res or {}, "resources", (), RESOURCE_RULES)
    out = {}
    for rule, spec in res.items():
        spec = _keys(spec or {}, f"resources.{rule}", (), tuple(RESOURCE_KEYS))
        for k, v in spec.items():
            _int(v, f"resources.{rule}.{k}", 1 if k == "threads" else 0)
        out[rule] = spec
    return out


def resources(cfg: dict, rule: str) -> dict:
    """threads, gpu, mem_mb and runtime (minutes) of a rule family: its entry over ``default``."""
    if rule not in RESOURCE_RULES:
        raise ConfigError(f"unknown resource entry {rule!r}; known: {', '.join(RESOURCE_RULES)}.")
    res = cfg.get("resources", {})
    inherited = res.get("train", {}) if rule == "finetune" else {}  # finetuning jobs are training jobs
    return {**RESOURCE_KEYS, **res.get("default", {}), **inherited, **res.get(rule, {})}


# ---------------------------------------------------------------------------------------------
# Experiments (tables and figures as data)
# ---------------------------------------------------------------------------------------------

ROW_KEYS = ("label", "recipe", "run", "step", "aux", "seed", "tags", "paper", "same_as")
# The paper's numbers a row may carry beside ours (Tables 1-3).
PAPER_KEYS = ("label", "epochs", "fid", "sfid", "is", "prec", "rec", "gflops", "delta_gflops")
EXPERIMENT_KEYS = ("run", "rows", "grids", "baseline", "caption", "sampling", "metrics", "seeds", "literature",
                   "plot")
GRID_KEYS = ("name", "label", "recipe", "run", "step", "aux", "axes", "tags")
# Grid axes that set a row's fields (the others are arguments of the recipe preset: omega, gamma_strong, ...).
# 'gammas' is one list for both branches: it expands to every pair gamma_strong < gamma_weak (Figs. 6, 8).
ROW_AXES = ("run", "step", "aux_step", "seed")
AXIS_ABBR = {"omega": "w", "gamma_strong": "gs", "gamma_weak": "gw", "gamma": "g", "step": "it", "aux_step": "aux",
             "seed": "s", "run": ""}
SAMPLING_OVERRIDES = ("num_samples", "batch_size", "seed", "steps", "solver", "labels", "bf16")


def resolve_row_recipe(spec, num_steps: int, where: str):
    """The Recipe of a row's ``recipe`` (preset name, {preset: ..., overrides} or a full recipe dict)."""
    from .guidance import resolve_recipe
    try:
        return resolve_recipe(copy.deepcopy(spec), num_steps=num_steps)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    except (TypeError, ValueError, AttributeError) as e:  # e.g. {preset: cfg, name: x}
        raise ConfigError(f"{where}: {spec!r} is not a usable recipe ({type(e).__name__}: {e}); give a preset "
                          "name, {preset: <name>, <its arguments>} or a full recipe {name, omega, strong, "
                          "weak}.") from e


def _fmt_axis(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_grid(grid: dict, where: str) -> dict:
    """The rows of one grid entry: the product of its axes (``gammas`` gives the pairs γs < γw).

    ``{name: sg, recipe: sg, axes: {omega: [1.5, 2], gammas: [0, 0.5, 0.9]}}`` -> rows
    ``sg-w1.5-gs0-gw0.5``, ``sg-w1.5-gs0-gw0.9``, ... each tagged with its axis values."""
    import itertools

    g = _keys(grid, where, ("name", "recipe", "axes"), GRID_KEYS)
    _id(g["name"], f"{where}.name")
    axes = g["axes"]
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{where}.axes must map axis names (omega, gamma_strong, gamma_weak, gammas, step, "
                          "aux_step, seed, run, or another argument of the recipe preset) to lists of values.")
    names, values = [], []
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.axes.{k}={v!r} must be a non-empty list.")
        if k == "gammas":
            pairs = [(a, b) for a in v for b in v if a < b]
            if not pairs:
                raise ConfigError(f"{where}.axes.gammas={v!r} gives no pair gamma_strong < gamma_weak.")
            names.append(("gamma_strong", "gamma_weak"))
            values.append(pairs)
        else:
            names.append((k,))
            values.append([(x,) for x in v])
    base = g["recipe"]
    if isinstance(base, str):
        base = {"preset": base}
    recipe_axes = [k for ks in names for k in ks if k not in ROW_AXES]
    if recipe_axes and not (isinstance(base, dict) and "preset" in base):
        raise ConfigError(f"{where}: axes {recipe_axes} are recipe arguments, so {where}.recipe must be a preset "
                          "name or {preset: <name>, ...}.")
    rows = {}
    for combo in itertools.product(*values):
        vals = {k: x for ks, xs in zip(names, combo) for k, x in zip(ks, xs)}
        rid = g["name"] + "".join(f"-{AXIS_ABBR.get(k, k)}{_fmt_axis(x)}" for k, x in vals.items())
        row = {"label": str(g.get("label", g["name"])), "tags": {**(g.get("tags") or {}), "grid": g["name"], **vals}}
        row["recipe"] = {**copy.deepcopy(base), **{k: x for k, x in vals.items() if k not in ROW_AXES}}
        for k in ("run", "step", "aux"):
            if g.get(k) is not None:
                row[k] = copy.deepcopy(g[k])
        if "run" in vals:
            row["run"] = vals["run"]
        if "step" in vals:
            row["step"] = vals["step"]
        if "seed" in vals:
            row["seed"] = vals["seed"]
        if "aux_step" in vals:
            row["aux"] = {"run": (g.get("aux") or {}).get("run", row.get("run")), "step": vals["aux_step"]}
        rows[rid] = row
    return rows


def _check_snapshot(cfg: dict, run: str, step, where: str):
    saved = list(cfg["runs"][run]["train"].get("save_steps", []))
    if step not in saved:
        raise ConfigError(
            f"{where}={step!r}: run {run!r} does not save a checkpoint at that step "
            f"(runs.{run}.train.save_steps = {saved}); pick one of those or add the step "
            "to save_steps (before that run trains past it).")


def _check_row(row: dict, rwhere: str, e: dict, cfg: dict, sampling: dict) -> dict:
    row = _keys(row, rwhere, ("label", "recipe"), ROW_KEYS[2:])
    _str(row["label"], f"{rwhere}.label")
    row["run"] = row.get("run") or e.get("run")
    if row["run"] is None:
        raise ConfigError(f"{rwhere}: no run; give {rwhere}.run or the experiment's run.")
    if row["run"] not in cfg["runs"]:
        raise ConfigError(f"{rwhere}.run={row['run']!r} is not a training run; runs: {', '.join(cfg['runs'])}.")
    step = row.get("step")
    if step is not None and step == cfg["runs"][row["run"]]["train"]["steps"]:
        step = None  # the final weights (last.pt)
    if step is not None:
        _check_snapshot(cfg, row["run"], step, f"{rwhere}.step")
    row["step"] = step
    row["seed"] = _int(row.get("seed", sampling["seed"]), f"{rwhere}.seed", 0)
    tags = row.get("tags") or {}
    if not isinstance(tags, dict):
        raise ConfigError(f"{rwhere}.tags must be a mapping of names to values (used by the figures).")
    row["tags"] = tags
    recipe = resolve_row_recipe(row["recipe"], sampling["steps"], f"{rwhere}.recipe")
    unknown_models = recipe.models - {"main", "aux"}
    if unknown_models:
        raise ConfigError(f"{rwhere}.recipe uses model(s) {sorted(unknown_models)}; a row has 'main' (its run) "
                          "and, with aux:, 'aux'.")
    aux = row.get("aux")
    if "aux" in recipe.models and aux is None:
        raise ConfigError(f"{rwhere}: recipe {recipe.name!r} guides with an auxiliary model; give "
                          f"{rwhere}.aux: {{run: <run>, step: <a snapshot step of that run>}}.")
    if aux is not None:
        if "aux" not in recipe.models:
            raise ConfigError(f"{rwhere}.aux is given but recipe {recipe.name!r} uses no auxiliary model; "
                              "remove aux or use a recipe with an 'aux' branch.")
        _keys(aux, f"{rwhere}.aux", ("run", "step"))
        if aux["run"] not in cfg["runs"]:
            raise ConfigError(f"{rwhere}.aux.run={aux['run']!r} is not a training run; runs: "
                              f"{', '.join(cfg['runs'])}.")
        _check_snapshot(cfg, aux["run"], aux["step"], f"{rwhere}.aux.step")
    paper = row.get("paper")
    if paper is not None:
        _keys(paper, f"{rwhere}.paper", (), PAPER_KEYS)
    return row


def _check_experiments(exps: dict, cfg: dict) -> dict:
    _keys(exps, "experiments", (), EXPERIMENTS)
    if not exps:
        raise ConfigError(f"experiments is empty; give at least one of {', '.join(EXPERIMENTS)}.")
    out = {}
    for name, e in exps.items():
        where = f"experiments.{name}"
        e = copy.deepcopy(_keys(e, where, (), EXPERIMENT_KEYS))
        if e.get("run") is not None and e["run"] not in cfg["runs"]:
            raise ConfigError(f"{where}.run={e['run']!r} is not a training run; runs: {', '.join(cfg['runs'])}.")
        over = _keys(e.get("sampling") or {}, f"{where}.sampling", (), SAMPLING_OVERRIDES)
        sampling = _check_sampling({**cfg["sampling"], **over})
        m_over = e.get("metrics") or {}
        if not isinstance(m_over, dict):
            raise ConfigError(f"{where}.metrics must be a mapping of metrics settings (n, extractor, metrics, ...).")
        metrics = _check_metrics({**cfg["metrics"], **m_over}, sampling, f"{where}.metrics")
        rows = dict(e.get("rows") or {})
        if not isinstance(rows, dict):
            raise ConfigError(f"{where}.rows must map row ids to rows ({{label, recipe, ...}}).")
        grids = e.get("grids") or []
        if not isinstance(grids, list):
            raise ConfigError(f"{where}.grids must be a list of grid entries ({{name, recipe, axes, ...}}).")
        origin = {rid: f"{where}.rows.{rid}" for rid in rows}  # where each row was written (errors name it)
        for i, g in enumerate(grids):
            for rid, row in expand_grid(g, f"{where}.grids[{i}]").items():
                if rid in rows:
                    raise ConfigError(f"{where}.grids[{i}] makes row {rid!r}, which the experiment already has.")
                rows[rid] = row
                origin[rid] = f"{where}.grids[{i}] (row {rid})"
        if not rows:
            raise ConfigError(f"{where} has no rows: give rows: or grids:.")
        seeds = e.get("seeds")
        if seeds is not None:
            if not isinstance(seeds, list) or not seeds:
                raise ConfigError(f"{where}.seeds={seeds!r} must be a non-empty list of sampling seeds.")
            for sd in seeds:
                _int(sd, f"{where}.seeds", 0)
            origin = {f"{rid}.s{sd}": origin[rid] for rid in rows for sd in seeds}
            rows = {f"{rid}.s{sd}": {**copy.deepcopy(r), "seed": sd,
                                     "tags": {**(r.get("tags") or {}), "base": rid, "seed": sd}}
                    for rid, r in rows.items() for sd in seeds}
        checked = {}
        for rid, row in rows.items():
            rwhere = origin[rid]
            _id(rid, f"{where}.rows")
            if isinstance(row, dict) and row.get("same_as") is not None:
                _keys(row, rwhere, ("same_as",), ("label", "tags", "paper"))
                checked[rid] = row
                continue
            checked[rid] = _check_row(row, rwhere, e, cfg, sampling)
        baseline = e.get("baseline", next(iter(checked)))
        if baseline not in checked:
            raise ConfigError(f"{where}.baseline={baseline!r} is not one of its rows ({', '.join(checked)}).")
        if e.get("literature") is not None:
            _str(e["literature"], f"{where}.literature")
        plot = e.get("plot") or {}
        if not isinstance(plot, dict):
            raise ConfigError(f"{where}.plot must be a mapping of plot options.")
        out[name] = {**e, "rows": checked, "baseline": baseline, "caption": e.get("caption", ""),
                     "sampling": sampling, "metrics": metrics, "plot": plot, "run": e.get("run")}
    for name, e in out.items():  # references between experiments: checked once every experiment is known
        for rid, row in e["rows"].items():
            if row.get("same_as") is not None:
                src = resolve_source(out, name, rid, f"experiments.{name}.rows.{rid}.same_as")
                target = out[src[0]]["rows"][src[1]]
                row.setdefault("label", target["label"])
                row["tags"] = {**target.get("tags", {}), **(row.get("tags") or {})}
    return out


def resolve_source(exps: dict, experiment: str, row: str, where: str = "same_as") -> tuple[str, str]:
    """(experiment, row) whose samples and metrics a row uses: itself, or what its ``same_as`` names."""
    seen = set()
    while True:
        spec = exps[experiment]["rows"][row]
        ref = spec.get("same_as")
        if ref is None:
            return experiment, row
        if (experiment, row) in seen:
            raise ConfigError(f"{where}: same_as references form a cycle.")
        seen.add((experiment, row))
        if not isinstance(ref, str) or ref.count("/") != 1:
            raise ConfigError(f"{where}={ref!r} must name another experiment's row as '<experiment>/<row>'.")
        e2, r2 = ref.split("/")
        if e2 not in exps or r2 not in exps[e2]["rows"]:
            raise ConfigError(f"{where}={ref!r}: no such row (experiments in this config: {', '.join(exps)}).")
        experiment, row = e2, r2


def validate(cfg: dict) -> dict:
    """Check every section (see the module docstring) and fill defaults; returns a new dict."""
    cfg = copy.deepcopy(cfg)
    _keys(cfg, "config", TOP_REQUIRED, TOP_OPTIONAL)
    _id(cfg["name"], "name")
    if cfg.get("results_dir") is None:
        cfg["results_dir"] = f"results/{cfg['name']}"
    _str(cfg["results_dir"], "results_dir")
    cfg["results_dir"] = cfg["results_dir"].rstrip("/") or "/"
    compute = cfg["compute"] = _with_defaults(_keys(cfg.get("compute") or {}, "compute", (), ("device", "nproc")),
                                              {"device": "auto", "nproc": "auto"})
    _choice(compute["device"], "compute.device", DEVICES)
    if compute["nproc"] != "auto":
        _int(compute["nproc"], "compute.nproc", 1)  # training processes per job ("auto": one per visible GPU)
    cfg["data"] = _check_data(cfg["data"])
    cfg["model"] = _check_model(cfg["model"], cfg["data"])
    cfg["runs"] = _check_runs(cfg["runs"], cfg)
    cfg["sampling"] = _check_sampling(cfg["sampling"])
    cfg["metrics"] = _check_metrics(cfg["metrics"], cfg["sampling"])
    cfg["resources"] = _check_resources(cfg.get("resources"))
    cfg["experiments"] = _check_experiments(cfg["experiments"], cfg)
    uses_classifier = any(e["metrics"]["extractor"] == "classifier" for e in cfg["experiments"].values())
    if uses_classifier or cfg.get("classifier") is not None:
        c = cfg["classifier"] = _with_defaults(_keys(cfg.get("classifier") or {}, "classifier", (), CLASSIFIER_KEYS),
                                               CLASSIFIER_DEFAULTS)
        for k in ("steps", "batch_size", "reference_n"):
            _int(c[k], f"classifier.{k}", 1)
        _int(c["seed"], "classifier.seed", 0)
        if not isinstance(c["lr"], (int, float)) or isinstance(c["lr"], bool) or c["lr"] <= 0:
            raise ConfigError(f"classifier.lr={c['lr']!r} must be a positive number.")
        if cfg["data"]["dataset"] != "fashion_mnist":
            raise ConfigError("metrics.extractor 'classifier' is the pipeline's Fashion-MNIST classifier; with "
                              f"{cfg['data']['dataset']} use an Inception extractor (auto).")
    return cfg


# ---------------------------------------------------------------------------------------------
# Results layout
# ---------------------------------------------------------------------------------------------

class Layout:
    """Where each stage writes, under ``results_dir``. Arguments may be Snakemake wildcards
    (``layout.samples("{experiment}", "{row}")`` gives the rule's output pattern)."""

    def __init__(self, cfg: dict):
        self.root = cfg["results_dir"]

    def path(self, *parts) -> str:
        return "/".join([self.root, *map(str, parts)])

    # data
    @property
    def dataset(self):
        return self.path("data", "dataset.json")

    @property
    def latents_dir(self):
        return self.path("latents", "train")

    @property
    def latents(self):
        return self.path("latents", "train", "manifest.json")

    @property
    def reference(self):
        return self.path("data", "reference.npz")

    @property
    def reference_info(self):
        return self.path("data", "reference.json")

    @property
    def cache(self):
        return self.path("cache")

    # training
    def run_dir(self, run):
        return self.path("runs", run)

    def state_dir(self, run):
        """Training state (resumable checkpoints, log); not a Snakemake output, so a rerun keeps it."""
        return self.path("runs", run, "state")

    def checkpoint(self, run):
        return self.path("runs", run, "last.pt")

    def snapshot(self, run, step):
        return self.path("runs", run, f"step-{int(step):07d}.pt")  # train.checkpoint_path's name

    def run_summary(self, run):
        return self.path("runs", run, "summary.json")

    def weights(self, run, step=None):
        """A run's final checkpoint (step None) or one of its snapshots."""
        return self.checkpoint(run) if step is None else self.snapshot(run, step)

    # the Fashion-MNIST classifier (a cheap feature network for figure grids) and its reference stats
    @property
    def classifier(self):
        return self.path("classifier", "classifier.pt")

    @property
    def classifier_reference(self):
        return self.path("classifier", "reference.npz")

    @property
    def classifier_info(self):
        return self.path("classifier", "info.json")

    # sampling, metrics, reports
    def samples(self, experiment, row):
        return self.path("samples", experiment, f"{row}.npz")

    def sample_info(self, experiment, row):
        return self.path("samples", experiment, f"{row}.json")

    def metrics(self, experiment, row):
        return self.path("metrics", experiment, f"{row}.json")

    def flops(self, experiment):
        return self.path("flops", f"{experiment}.json")

    def table(self, experiment, ext):
        return self.path("tables", f"{experiment}.{ext}")

    def figure(self, experiment, ext):
        return self.path("figures", f"{experiment}.{ext}")

    # executed notebooks, logs and benchmarks of each job
    def notebook(self, stage, *ids):
        return self.path("notebooks", "-".join([stage, *map(str, ids)]) + ".ipynb")

    def log(self, stage, *ids):
        return self.path("logs", "-".join([stage, *map(str, ids)]) + ".log")

    def benchmark(self, stage, *ids):
        return self.path("benchmarks", "-".join([stage, *map(str, ids)]) + ".tsv")


# ---------------------------------------------------------------------------------------------
# Stages: what each job writes and which jobs it needs
# ---------------------------------------------------------------------------------------------

STAGES = ("prepare_data", "encode_latents", "reference_stats", "classifier", "train", "sample", "evaluate", "flops",
          "report")
STAGE_IDS = {"prepare_data": (), "encode_latents": (), "reference_stats": (), "classifier": (), "train": ("run",),
             "sample": ("experiment", "row"), "evaluate": ("experiment", "row"), "flops": (),
             "report": ("experiment",)}
NOTEBOOKS = {"prepare_data": "notebooks/01_prepare_data.ipynb",
             "encode_latents": "notebooks/02_encode_latents.ipynb",
             "reference_stats": "notebooks/03_reference_stats.ipynb",
             "classifier": "notebooks/08_classifier.ipynb",
             "train": "notebooks/04_train.ipynb",
             "sample": "notebooks/05_sample.ipynb",
             "evaluate": "notebooks/06_evaluate.ipynb",
             "flops": "notebooks/07_flops.ipynb",
             "report": {"table1": "notebooks/11_table1.ipynb", "table2": "notebooks/10_table2.ipynb",
                        "table3": "notebooks/12_table3.ipynb", "fig1": "notebooks/20_fig1.ipynb",
                        "fig2": "notebooks/21_fig2.ipynb", "fig4": "notebooks/22_fig4.ipynb",
                        "fig5": "notebooks/23_fig5.ipynb", "fig6": "notebooks/24_fig6.ipynb",
                        "fig7": "notebooks/25_fig7.ipynb", "fig8": "notebooks/26_fig8.ipynb",
                        **{f: "notebooks/30_sample_grids.ipynb" for f in ("figA5", "figA6", "figA7", "figA8", "figA9")}}}


def _check_stage(stage: str, ids: dict):
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}.")
    if set(ids) != set(STAGE_IDS[stage]):
        raise ConfigError(f"stage {stage!r} takes {list(STAGE_IDS[stage])}, got {sorted(ids)}.")


def notebook_for(stage: str, **ids) -> str:
    nb = NOTEBOOKS[stage]
    return nb[ids["experiment"]] if isinstance(nb, dict) else nb


def train_outputs(cfg: dict, run: str) -> dict:
    layout = Layout(cfg)
    out = {"checkpoint": layout.checkpoint(run), "summary": layout.run_summary(run)}
    for s in sorted(set(cfg["runs"][run]["train"].get("save_steps", []))):
        out[f"step_{s}"] = layout.snapshot(run, s)
    return out


def stage_outputs(cfg: dict, stage: str, **ids) -> dict:
    """Named output files of one job (wildcard strings give patterns, except for ``train``)."""
    _check_stage(stage, ids)
    layout = Layout(cfg)
    if stage == "prepare_data":
        return {"dataset": layout.dataset}
    if stage == "encode_latents":
        return {"manifest": layout.latents}
    if stage == "reference_stats":
        return {"reference": layout.reference, "info": layout.reference_info}
    if stage == "classifier":
        return {"weights": layout.classifier, "reference": layout.classifier_reference, "info": layout.classifier_info}
    if stage == "train":
        return train_outputs(cfg, ids["run"])
    if stage == "sample":
        return {"npz": layout.samples(ids["experiment"], ids["row"]),
                "info": layout.sample_info(ids["experiment"], ids["row"])}
    if stage == "evaluate":
        return {"metrics": layout.metrics(ids["experiment"], ids["row"])}
    if stage == "flops":  # one job counts every experiment (fvcore on the model; seconds)
        return {e: layout.flops(e) for e in cfg["experiments"]}
    if ids["experiment"] in TABLES:
        return {ext: layout.table(ids["experiment"], ext) for ext in ("csv", "md", "tex")}
    return {ext: layout.figure(ids["experiment"], ext) for ext in ("png", "pdf", "csv")}


def stage_deps(cfg: dict, stage: str, **ids) -> list[tuple[str, dict]]:
    """The jobs (stage, ids) whose outputs this job reads."""
    _check_stage(stage, ids)
    if stage == "prepare_data" or stage == "flops":
        return []
    if stage in ("encode_latents", "reference_stats", "classifier"):
        return [("prepare_data", {})]
    if stage == "train":
        init = cfg["runs"][ids["run"]].get("init")
        return [("encode_latents", {})] + ([("train", {"run": init["run"]})] if init else [])
    exp = cfg["experiments"][ids["experiment"]]
    if stage == "sample":
        row = exp["rows"][ids["row"]]
        runs = [row["run"]] + ([row["aux"]["run"]] if row.get("aux") else [])
        return [("train", {"run": r}) for r in dict.fromkeys(runs)]
    if stage == "evaluate":
        ref = "classifier" if exp["metrics"]["extractor"] == "classifier" else "reference_stats"
        return [("sample", dict(ids)), (ref, {})]
    deps = []
    for r in exp["rows"]:
        e2, r2 = resolve_source(cfg["experiments"], ids["experiment"], r)
        deps += [("evaluate", {"experiment": e2, "row": r2}), ("sample", {"experiment": e2, "row": r2})]
    runs = report_runs(cfg, ids["experiment"])
    deps += [("flops", {})] + [("train", {"run": r}) for r in runs]
    return list({json.dumps(d, sort_keys=True): d for d in deps}.values())


def report_runs(cfg: dict, experiment: str) -> list[str]:
    """The training runs whose summaries a report reads: every run its rows sample from."""
    exps = cfg["experiments"]
    runs = []
    for r in exps[experiment]["rows"]:
        e2, r2 = resolve_source(exps, experiment, r)
        runs.append(exps[e2]["rows"][r2]["run"])
    return list(dict.fromkeys(runs))


def source_row(cfg: dict, experiment: str, row: str) -> dict:
    """The validated spec of the row whose samples a row uses (itself, or what same_as names)."""
    e2, r2 = resolve_source(cfg["experiments"], experiment, row)
    return cfg["experiments"][e2]["rows"][r2]


def stage_inputs(cfg: dict, stage: str, **ids) -> dict:
    """Named input files of one job: the notebook and the outputs of the jobs it depends on."""
    out = {"notebook": notebook_for(stage, **ids)}
    for dep, dep_ids in stage_deps(cfg, stage, **ids):
        tag = re.sub(r"[^A-Za-z0-9_]", "_", "_".join([dep, *map(str, dep_ids.values())]))
        for k, v in stage_outputs(cfg, dep, **dep_ids).items():
            out[f"{tag}_{k}"] = v
    return out


def job_config(cfg: dict, stage: str, **ids) -> dict:
    """The part of the configuration one job's result depends on (its digest triggers reruns)."""
    _check_stage(stage, ids)
    data = {k: cfg["data"][k] for k in ("dataset", "root", "train_split", "train_limit", "image_size")}
    if stage == "prepare_data":
        return {"data": data}
    if stage == "encode_latents":
        return {"data": data, "codec": cfg["data"]["codec"], "encode": cfg["data"]["encode"]}
    if stage == "reference_stats":
        return {"data": data, "reference": cfg["data"]["reference"],
                "metrics": {k: cfg["metrics"][k] for k in ("extractor", "weights_path", "pr_ref_n")}}
    if stage == "classifier":
        return {"data": data, "classifier": cfg.get("classifier")}
    if stage == "train":
        return {"model": cfg["model"], "run": cfg["runs"][ids["run"]]}

    def runs_of(rows):
        names = {r["run"] for r in rows} | {r["aux"]["run"] for r in rows if r.get("aux")}
        return {r: cfg["runs"][r] for r in sorted(names)}

    if stage == "flops":
        out = {}
        for e, exp in cfg["experiments"].items():
            rows = [source_row(cfg, e, r) for r in exp["rows"]]
            out[e] = {"steps": exp["sampling"]["steps"], "baseline": exp["baseline"],
                      "rows": {k: {"recipe": r["recipe"], "aux": r.get("aux"), "run": r["run"]}
                               for k, r in zip(exp["rows"], rows)}}
        return {"model": cfg["model"], "runs": runs_of([source_row(cfg, e, r) for e, x in cfg["experiments"].items()
                                                        for r in x["rows"]]), "experiments": out}
    exp = cfg["experiments"][ids["experiment"]]

    if stage == "sample":
        row = exp["rows"][ids["row"]]
        return {"model": cfg["model"], "runs": runs_of([row]), "row": row, "sampling": exp["sampling"],
                "codec": cfg["data"]["codec"]}
    if stage == "evaluate":
        return {"metrics": exp["metrics"], "row": exp["rows"][ids["row"]]}
    rows = [source_row(cfg, ids["experiment"], r) for r in exp["rows"]]
    return {"experiment": exp, "rows": rows, "metrics_n": exp["metrics"]["n"], "sampling": exp["sampling"]}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_digest(cfg: dict, stage: str, **ids) -> str:
    return digest(job_config(cfg, stage, **ids))


def check_digest(cfg: dict, stage: str, expected: str | None, **ids):
    """A job scheduled with one configuration must not run with another (e.g. a preset edited between
    ``snakemake`` building its DAG and a cluster job starting). expected=None skips the check."""
    if expected is None:
        return
    got = job_digest(cfg, stage, **ids)
    if got != expected:
        raise ConfigError(f"the configuration of job {stage} {ids} changed after the workflow was planned "
                          f"(digest {got}, planned {expected}); rerun snakemake.")


def resume_key(cfg: dict, run: str) -> dict:
    """What a run's training state depends on: everything but the options that may grow (steps, ...)."""
    r = copy.deepcopy(cfg["runs"][run])
    r.pop("label", None)
    for k in RESUMABLE_TRAIN_KEYS:
        r["train"].pop(k, None)
    data = {k: cfg["data"][k] for k in ("dataset", "train_split", "train_limit", "image_size", "codec")}
    data["encode"] = {k: cfg["data"]["encode"][k] for k in ("flip", "dtype", "seed")}
    return {"model": cfg["model"], "run": r, "data": data}


# ---------------------------------------------------------------------------------------------
# Small readers used by notebooks and reports
# ---------------------------------------------------------------------------------------------

def experiment(cfg: dict, name: str) -> dict:
    if name not in cfg["experiments"]:
        raise ConfigError(f"experiment {name!r} is not in config {cfg['name']!r}; it has "
                          f"{', '.join(cfg['experiments']) or 'none'}.")
    return cfg["experiments"][name]


def row_spec(cfg: dict, exp_name: str, row: str) -> dict:
    exp = experiment(cfg, exp_name)
    if row not in exp["rows"]:
        raise ConfigError(f"experiment {exp_name!r} has no row {row!r}; rows: {', '.join(exp['rows'])}.")
    return exp["rows"][row]


def describe_recipe(recipe, aux: dict | None = None, steps: int | None = None) -> str:
    """A short human description of a recipe's setting: ω, the γ of each branch, the aux checkpoint."""
    if recipe.weak is None or recipe.omega == 1.0:
        return "—"

    def gamma(g):
        if isinstance(g, dict):
            if g["schedule"] == "constant":
                return f"{g['value']:g}"
            return f"{g['schedule']} {g['start']:g}→{g['end']:g}"
        return f"{g:g}"

    parts = [f"ω={recipe.omega:g}"]
    gs, gw = recipe.strong.gamma, recipe.weak.gamma
    if gs != 0 or gw != 0:
        parts.append(f"γ {gamma(gs)} / {gamma(gw)}")
    if recipe.weak.cond != "class":
        parts.append({"null": "weak: ∅", "random": "weak: random class"}[recipe.weak.cond])
    if aux is not None:
        parts.append(f"aux: {aux['run']}@{aux['step']}")
    return ", ".join(parts)


def notebook_args(cfg: dict, overrides: dict | None, stage: str, **ids) -> str:
    """The papermill parameters (as one JSON/YAML string for ``-y``) of a workflow job: the config
    overrides beside the preset, the job's ids, and the digest of the config it was planned with."""
    _check_stage(stage, ids)
    return json.dumps({"overrides": dict(overrides or {}), **ids, "config_digest": job_digest(cfg, stage, **ids),
                       "build_missing": False}, sort_keys=True)


def rule_resources(cfg: dict, rule: str) -> dict:
    """Snakemake ``resources:`` of a rule family: gpu, mem_mb, runtime (minutes) and cpus_per_task.

    cpus_per_task repeats the rule's threads for the SLURM executor: Snakemake caps a job's threads
    at --cores, which the local profile (profiles/default: cores: all) sets to the submitting
    machine's count, so a cluster job's CPU request must not come from threads alone."""
    r = resources(cfg, rule)
    return {"gpu": r["gpu"], "mem_mb": r["mem_mb"], "runtime": r["runtime"], "cpus_per_task": r["threads"]}


def train_family(cfg: dict, run: str) -> str:
    """The resource entry of a run's job: 'finetune' for a run that starts from another's snapshot."""
    return "finetune" if cfg["runs"][run].get("init") else "train"


def train_priority(cfg: dict, run: str) -> int:
    """Snakemake priority of a run's training job: 5 plus the number of sampled rows that need it
    (as main or auxiliary model), so the run most of the tables wait for trains first."""
    rows = [r for e in cfg["experiments"].values() for r in e["rows"].values() if not r.get("same_as")]
    needs = {run} | {r for r, spec in cfg["runs"].items() if (spec.get("init") or {}).get("run") == run}
    return 5 + sum(1 for r in rows if r["run"] in needs or (r.get("aux") or {}).get("run") in needs)
