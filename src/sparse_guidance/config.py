"""The workflow's configuration as data: presets, overrides, validation, experiments as rows.

    cfg = load_config("embedded")                               # workflow/config/embedded.yaml
    cfg = load_config("smoke", {"results_dir": "/tmp/smoke"})   # overrides, deep-merged
    cfg = load_config("my/own.yaml")                            # a preset file by path

Presets (``workflow/config/*.yaml``) hold every knob of a configuration: the data and its codec,
the model, the training runs, sampling, metrics, per-rule resources and the experiments (each a
table or figure of the paper, its rows as data). ``load_config`` deep-merges overrides into the
preset (mappings merge key by key, anything else is replaced) and validates the result: the JSON
Schema ``workflow/schemas/config.schema.yaml`` checks types, ranges and names and fills the defaults
(schema.py; the Snakefile validates the same file), then ``validate`` checks what refers across
sections (snapshot steps a run saves, same_as, routes vs depth, γ_strong < γ_weak, aux runs). A
preset may name another to start from (``extends: embedded``); the chain is merged base first.

Every problem is a ConfigError that names the entry (``experiments.table2.rows.cfg.recipe``) and
what it must be. Nothing here imports Snakemake or walks a job graph: the workflow's DAG is
Snakemake's (workflow/rules/*.smk).
"""
from __future__ import annotations

import copy
import functools
import itertools
import os
import re
from pathlib import Path

import torch
import yaml

from . import schema
from .data.codecs import CODECS
from .errors import ConfigError
from .guidance import resolve_recipe
from .io import check_writable_folder
from .data.text_encoders import ENCODER_WIDTHS
from .models import MODELS, TRDIT_SIZES, build_model, on_meta

PRESETS_DIRNAME = Path("workflow") / "config"
SCHEMA_PATH = Path("workflow") / "schemas" / "config.schema.yaml"
PAPER_RESULTS = Path("workflow") / "data" / "paper_results.yaml"
DEFAULT_PRESET = "embedded"

DATASETS = {"fashion_mnist": 10, "imagenet": 1000}  # dataset -> number of classes
FASHION_MNIST_SPLITS = {"train": 60000, "test": 10000}
FASHION_MNIST_SIZE = 32  # 28 x 28 padded by 2 on each side (data/fashion_mnist.py)
# Experiments the workflow knows how to report (one report rule and notebook each; the schema's
# experiments): the paper's ImageNet tables and figures, and those of the text-to-image track (the
# experiments of its section, text_to_image).
TABLES = ("table1", "table2", "table3")
FIGURES = ("fig1", "fig2", "fig4", "fig5", "fig6", "fig7", "fig8", "figA5", "figA6", "figA7", "figA8", "figA9")
EXPERIMENTS = TABLES + FIGURES
CLAIM_EXPERIMENTS = ("table1", "table2", "fig4", "fig5", "fig6", "fig7", "fig8")  # what claims.py tests
TEXT_DATASETS = ("scenes", "webdataset")  # the text-to-image track's: labels index captions
TEXT_TABLES = ("table4", "table5")
TEXT_FIGURES = ("fig1_t2i", "fig9", "figA2", "figA3", "figA4")  # Fig. A1 (throughput) is its own job
TEXT_EXPERIMENTS = TEXT_TABLES + TEXT_FIGURES
# Tracks: a section of the config that is a configuration of its own (data, model, runs, sampling,
# metrics, experiments) sharing the preset's name, compute and resources (track_config), and the
# folder under results_dir its results go to.
TRACKS = {"text_to_image": "t2i"}
# Resource entries a config may set (rule families of workflow/rules/*.smk; the schema's
# resources), and what each holds.
RESOURCE_RULES = ("default", "prepare_data", "encode_latents", "reference_stats", "classifier", "train",
                  "finetune", "sample", "evaluate", "report", "text_features", "scorers", "throughput")
RESOURCE_KEYS = {"threads": 1, "gpu": 0, "mem_mb": 4000, "runtime": 60}
DECODER_KEYS = {"depth": "decoder_depth", "width": "decoder_width", "heads": "decoder_heads"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

REPO_ENV = "SPARSE_GUIDANCE_REPO"   # a checkout to read the presets from, for a package installed elsewhere


def _is_checkout(p: Path) -> bool:
    return (p / "Snakefile").is_file() and (p / PRESETS_DIRNAME).is_dir()


def repo_root(start=None) -> Path:
    """The repository root: the checkout named by $SPARSE_GUIDANCE_REPO, else the nearest folder
    upwards (from ``start`` or the cwd) holding the Snakefile and workflow/config, else the checkout
    this source tree sits in (an editable install)."""
    named = os.environ.get(REPO_ENV)
    if named:
        root = Path(named).expanduser().resolve()
        if not _is_checkout(root):
            raise ConfigError(f"{REPO_ENV}={named!r} is not a sparse-guidance checkout (no Snakefile and "
                              f"{PRESETS_DIRNAME}/ there); point it at the folder you cloned.")
        return root
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if _is_checkout(p):
            return p
    src_root = Path(__file__).resolve().parents[2]
    if _is_checkout(src_root):
        return src_root
    raise ConfigError(f"cannot find the presets: no sparse-guidance checkout (a folder with Snakefile and "
                      f"{PRESETS_DIRNAME}/) above {str(here)!r}, and this package is not installed from one. Run "
                      f"from inside the checkout, or set {REPO_ENV}=/path/to/sparse-guidance.")


@functools.cache
def paper_results() -> dict:
    """The paper's reported numbers, experiment -> row -> values (workflow/data/paper_results.yaml)."""
    return read_yaml(repo_root() / PAPER_RESULTS)


def config_schema() -> dict:
    """The JSON Schema of a configuration (workflow/schemas/config.schema.yaml)."""
    return schema.load_schema(repo_root() / SCHEMA_PATH)


def presets_dir() -> Path:
    return repo_root() / PRESETS_DIRNAME


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml") if p.stem != "base")  # base.yaml: extended only


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


def canonical_preset(preset: str | Path) -> str:
    """One spelling per preset file: the name of a file in workflow/config/ (``smoke`` for
    ``workflow/config/smoke.yaml`` or its absolute path), else the file's absolute path. The jobs'
    commands carry it, so that naming a preset another way reruns nothing."""
    path = preset_path(preset).resolve()
    return path.stem if path.parent == presets_dir().resolve() else str(path)


def read_yaml(path) -> dict:
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


def _named(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) and "name" in i for i in v)


def deep_merge(base: dict, over: dict, by_name: bool = False) -> dict:
    """A copy of ``base`` with ``over`` merged in: mappings key by key (except ATOMIC_KEYS), anything
    else replaced; null in ``over`` removes an entry that is a mapping (a row, a run; its default, if
    any, applies again). With ``by_name`` (a preset extending another), lists of named entries (grids)
    merge entry by entry by name, new names appended; overrides (``--config``) replace them whole."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None and isinstance(out.get(k), dict):
            del out[k]
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ATOMIC_KEYS:
            out[k] = deep_merge(out[k], v, by_name)
        elif by_name and _named(v) and _named(out.get(k)):
            merged = {i["name"]: copy.deepcopy(i) for i in out[k]}
            for i in v:
                merged[i["name"]] = deep_merge(merged[i["name"]], i, by_name) if i["name"] in merged else copy.deepcopy(i)
            out[k] = list(merged.values())
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_preset(preset, seen=()) -> dict:
    """A preset as written, its ``extends`` chain merged in (base first), before overrides and checks."""
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
    return deep_merge(read_preset(base_ref, (*seen, key)), data, by_name=True)


def load_config(preset: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Read a preset (name or YAML path), deep-merge ``overrides``, fill defaults and validate.

    ``overrides`` is what ``snakemake --config`` / ``--configfile`` add beside ``preset``.
    Returns a new dict; raises ConfigError naming the first problem found.
    """
    raw = read_preset(preset or DEFAULT_PRESET)
    overrides = dict(overrides or {})
    overrides.pop("preset", None)
    return validate(deep_merge(raw, overrides))


# ---------------------------------------------------------------------------------------------
# Validation: the schema (workflow/schemas/config.schema.yaml) checks types, ranges, names and
# unknown keys and fills the defaults; what follows checks what a schema cannot say.
# ---------------------------------------------------------------------------------------------

def codec_geometry(codec: dict) -> tuple[int, int]:
    """(downsample factor, latent channels) of a codec spec, without building it (a VAE needs weights)."""
    if codec["name"] == "space-to-depth":
        f = int(codec.get("factor", 2))
        return f, int(codec.get("image_channels", 1)) * f * f
    return 8, 4  # the SD VAE: 3 x 256 x 256 -> 4 x 32 x 32


def _check_data(d: dict):
    if d["codec"]["name"] not in CODECS:
        raise ConfigError(f"data.codec.name={d['codec']['name']!r}; choose one of {', '.join(CODECS)}.")
    ref = d["reference"]
    if d["dataset"] == "fashion_mnist":
        if d["image_size"] != FASHION_MNIST_SIZE:
            raise ConfigError(f"data.image_size={d['image_size']}: Fashion-MNIST images are padded to "
                              f"{FASHION_MNIST_SIZE}x{FASHION_MNIST_SIZE}.")
        for key, split in (("data.train_split", d["train_split"]), ("data.reference.split", ref["split"])):
            if split not in FASHION_MNIST_SPLITS:
                raise ConfigError(f"{key}={split!r}; choose one of {', '.join(FASHION_MNIST_SPLITS)}.")
        if ref["npz"] is None:
            if ref["n"] is None:
                raise ConfigError("data.reference.n is missing: how many images of the reference split to use.")
            if ref["n"] > FASHION_MNIST_SPLITS[ref["split"]]:
                raise ConfigError(f"data.reference.n={ref['n']} must be <= {FASHION_MNIST_SPLITS[ref['split']]} "
                                  f"(the images of the {ref['split']} split).")
    elif ref["npz"] is None:
        raise ConfigError("data.reference.npz is missing: ImageNet is evaluated against ADM's reference batch "
                          "(VIRTUAL_imagenet256_labeled.npz); give its path.")
    if ref["n"] is not None and ref["npz"] is not None:
        raise ConfigError("data.reference: give either npz (a reference batch used whole) or split + n, not both.")


def _check_text_metrics(cfg: dict):
    """Each text-to-image experiment's scorers fit its data and prompts: the pipeline's own scorers
    (geneval, scene_text) know only the scenes; GenEval's scripts need GenEval's metadata."""
    if "eval" in cfg["data"]["prompt_sets"]:
        raise ConfigError("data.prompt_sets: 'eval' names data.eval (the default set); give the set another name.")
    for name, e in cfg["experiments"].items():
        used = set(e["metrics"]["metrics"])
        if cfg["data"]["dataset"] != "scenes" and used & {"geneval", "scene_text"}:
            raise ConfigError(f"experiments.{name}.metrics: {', '.join(sorted(used & {'geneval', 'scene_text'}))} "
                              "are trained on the embedded scenes; on other data use hpsv3 or geneval_official.")
        spec = prompt_set_spec(cfg, e.get("prompts") or "eval")
        if "geneval_official" in used and spec.get("format", "scenes") not in ("geneval", "scenes"):
            raise ConfigError(f"experiments.{name}: geneval_official scores prompts with GenEval's metadata "
                              f"(include/exclude); prompt set {e.get('prompts') or 'eval'!r} is "
                              f"{spec.get('format')!r}: give it GenEval's evaluation_metadata.jsonl.")


def _check_model(m: dict, data: dict):
    if data["dataset"] in TEXT_DATASETS:
        return _check_text_model(m, data)
    if m["name"] not in MODELS:
        raise ConfigError(f"model.name={m['name']!r} is not a registered model; known: {', '.join(MODELS)}.")
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


def _check_text_data(d: dict):
    enc = d["text_encoder"]
    if enc["name"] == "causal-lm" and not enc["path"]:
        raise ConfigError("data.text_encoder.path is missing: 'causal-lm' reads a local model folder (InternVL3-2B's "
                          "language model saved with save_pretrained; README, text-to-image track).")
    if d["encode"]["flip"]:
        raise ConfigError("data.encode.flip must be false: a flip turns 'left of' into 'right of'.")
    if d["dataset"] == "webdataset":
        if d["codec"]["name"] not in CODECS:
            raise ConfigError(f"data.codec.name={d['codec']['name']!r}; choose one of {', '.join(CODECS)}.")
        if not d.get("shards"):
            raise ConfigError("data.shards is missing: give the (image, caption) tar shards, e.g. "
                              "/data/coyo/{00000..01023}.tar (img2dataset --output_format webdataset).")
        if d["text_features"] == "cached":
            raise ConfigError("data.text_features: 'cached' keeps a bank of every training caption, which a "
                              "web-scale set does not fit; use 'online' with webdataset shards.")
        if (d["filter"]["field"] is None) != (d["filter"]["min"] is None):
            raise ConfigError("data.filter: give field and min together (a number of each sample's .json and its "
                              "minimum), or neither.")
        return
    if d["image_size"] != 32:
        raise ConfigError(f"data.image_size={d['image_size']}: the scenes are 32x32.")
    if d["codec"]["name"] != "space-to-depth":
        raise ConfigError(f"data.codec.name={d['codec']['name']!r}: the scenes are encoded with the lossless "
                          "space-to-depth codec ({name: space-to-depth, image_channels: 3}).")
    if int(d["codec"].get("image_channels", 1)) != 3:
        raise ConfigError("data.codec.image_channels must be 3: the scenes are RGB.")


def _check_text_model(m: dict, data: dict):
    if m["name"] not in TRDIT_SIZES:
        raise ConfigError(f"model.name={m['name']!r} is not a TR-DiT size; known: {', '.join(TRDIT_SIZES)}.")
    size = {**TRDIT_SIZES[m["name"]], **m}
    down, channels = codec_geometry(data["codec"])
    if data["image_size"] // down != m["input_size"] or channels != m["in_channels"]:
        raise ConfigError(f"model: input_size={m['input_size']}, in_channels={m['in_channels']} do not match the "
                          f"latents of {data['image_size']}px RGB images through the codec "
                          f"({data['image_size'] // down}, {channels}).")
    enc = data["text_encoder"]
    if size["text_len"] != enc["max_length"]:
        raise ConfigError(f"model.text_len={size['text_len']} but the text encoder reads max_length="
                          f"{enc['max_length']} tokens (data.text_encoder.max_length); make them equal.")
    width = ENCODER_WIDTHS.get(enc["name"])
    if width is not None and size["text_dim"] != width:
        raise ConfigError(f"model.text_dim={size['text_dim']} but text encoder {enc['name']!r} gives {width}-wide "
                          "token states.")


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

    name, sparsity, kw = model_kwargs(cfg, run)
    with on_meta() if str(device) == "meta" else torch.device(device):
        return build_model(name, sparsity=sparsity, **kw)


def _check_runs(cfg: dict):
    runs = cfg["runs"]
    for name, r in runs.items():
        where = f"runs.{name}"
        if r["sparsity"] != "routing" and r["routes"]:
            raise ConfigError(f"{where}.routes: only sparsity 'routing' takes routes (this run is {r['sparsity']!r}).")
        if r["decoder"] is not None and r["sparsity"] != "masking":
            raise ConfigError(f"{where}.decoder: only sparsity 'masking' has a decoder.")
        tr = r["train"]
        if r.get("from") is not None:
            _check_imported(name, r)
        bad = [s for s in tr.get("save_steps", []) if not 1 <= s <= tr["steps"]]
        if bad:
            raise ConfigError(f"{where}.train.save_steps {bad}: each snapshot step must be an integer in "
                              f"1..{tr['steps']} (train.steps).")
        try:  # routes vs depth, decoder sizes, gamma: the model's own checks, on the meta device
            build_run_model(cfg, name, device="meta")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: the model cannot be built ({type(e).__name__}: {e}).") from e
    for name, r in runs.items():  # finetuning runs start from another run's snapshot (dense finetuning)
        init, where = r["init"], f"runs.{name}.init"
        if init is None:
            continue
        if init["run"] not in runs:
            raise ConfigError(f"{where}.run={init['run']!r} is not a training run; runs: {', '.join(runs)}.")
        if runs[init["run"]].get("from") is not None:
            raise ConfigError(f"{where}.run={init['run']!r} is a released checkpoint (runs.{init['run']}.from), which "
                              "keeps no snapshots and may predict something other than our velocity; finetuning "
                              "one is not supported.")
        if init["run"] == name:
            raise ConfigError(f"{where}.run: a run cannot start from itself.")
        if model_kwargs(cfg, name) != model_kwargs(cfg, init["run"]):
            raise ConfigError(f"{where}: run {name!r} must have the architecture of {init['run']!r} (same sparsity, "
                              "routes and decoder) to start from its weights; set the training sparsity with "
                              "train.gamma (0 for dense finetuning).")
        _check_snapshot(cfg, init["run"], init["step"], f"{where}.step")
        seen, at = {name}, init["run"]
        while runs[at]["init"] is not None:
            if at in seen:
                raise ConfigError(f"{where}: runs start from each other in a cycle ({', '.join(sorted(seen))}).")
            seen.add(at)
            at = runs[at]["init"]["run"]


def _check_metrics(m: dict, sampling: dict, where: str = "metrics"):
    if m["n"] > sampling["num_samples"]:
        raise ConfigError(f"{where}.n={m['n']} exceeds sampling.num_samples={sampling['num_samples']}: "
                          "a metric can only use the samples drawn.")
    if "extractor" in m and {"prec", "rec"} & set(m["metrics"]) and m["n"] < 4:
        raise ConfigError(f"{where}.n={m['n']}: precision/recall (k=3) need at least 4 samples.")
    if {"geneval", "geneval_official"} <= set(m["metrics"]):
        raise ConfigError(f"{where}.metrics: geneval (its rules on the scenes' detector) and geneval_official "
                          "(GenEval's own scripts) fill the same columns; keep one.")
    for name, needs in (("hpsv3", ("python",)), ("geneval_official", ("python", "repo", "detector"))):
        missing = [k for k in needs if name in m["metrics"] and not (m.get(name) or {}).get(k)]
        if missing:
            raise ConfigError(f"{where}.{name}: {', '.join(missing)} not set; the scorer runs in its own environment "
                              "(README, text-to-image track: how to install it and its weights offline).")


def resources(cfg: dict, rule: str) -> dict:
    """threads, gpu, mem_mb and runtime (minutes) of a rule family: its entry over ``default``."""
    if rule not in RESOURCE_RULES:
        raise ConfigError(f"unknown resource entry {rule!r}; known: {', '.join(RESOURCE_RULES)}.")
    res = {k: v or {} for k, v in cfg.get("resources", {}).items()}
    inherited = res.get("train", {}) if rule == "finetune" else {}  # finetuning jobs are training jobs
    return {**RESOURCE_KEYS, **res.get("default", {}), **inherited, **res.get(rule, {})}


# ---------------------------------------------------------------------------------------------
# Experiments (tables and figures as data)
# ---------------------------------------------------------------------------------------------

# The paper's numbers a row may carry beside ours (Tables 1-3; the schema's $defs.paper).
PAPER_KEYS = ("label", "epochs", "fid", "sfid", "is", "prec", "rec", "gflops", "delta_gflops")
# Grid axes that set a row's fields (the others are arguments of the recipe preset: omega, gamma_strong, ...).
# 'gammas' is one list for both branches: it expands to every pair gamma_strong < gamma_weak (Figs. 6, 8).
ROW_AXES = ("run", "step", "aux_step", "seed")
AXIS_ABBR = {"omega": "w", "gamma_strong": "gs", "gamma_weak": "gw", "gamma": "g", "step": "it", "aux_step": "aux",
             "seed": "s", "run": ""}


def resolve_row_recipe(spec, num_steps: int, where: str):
    """The Recipe of a row's ``recipe`` (preset name, {preset: ..., overrides} or a full recipe dict)."""
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


def expand_grid(g: dict, where: str) -> dict:
    """The rows of one (schema-checked) grid entry: the product of its axes (``gammas`` gives the pairs γs < γw).

    ``{name: sg, recipe: sg, axes: {omega: [1.5, 2], gammas: [0, 0.5, 0.9]}}`` -> rows
    ``sg-w1.5-gs0-gw0.5``, ``sg-w1.5-gs0-gw0.9``, ... each tagged with its axis values."""
    names, values = [], []
    for k, v in g["axes"].items():
        if k == "gammas":
            pairs = [(a, b) for a in v for b in v if a < b]
            if not pairs:
                raise ConfigError(f"{where}.axes.gammas={v!r} gives no pair gamma_strong < gamma_weak.")
            names.append(("gamma_strong", "gamma_weak"))
            values.append(pairs)
        else:
            names.append((k,))
            values.append([(x,) for x in v])
    base = {"preset": g["recipe"]} if isinstance(g["recipe"], str) else g["recipe"]
    recipe_axes = [k for ks in names for k in ks if k not in ROW_AXES]
    if recipe_axes and "preset" not in base:
        raise ConfigError(f"{where}: axes {recipe_axes} are recipe arguments, so {where}.recipe must be a preset "
                          "name or {preset: <name>, ...}.")
    rows = {}
    for combo in itertools.product(*values):
        vals = {k: x for ks, xs in zip(names, combo) for k, x in zip(ks, xs)}
        rid = g["name"] + "".join(f"-{AXIS_ABBR.get(k, k)}{_fmt_axis(x)}" for k, x in vals.items())
        row = {"label": str(g.get("label", g["name"])), "tags": {**(g.get("tags") or {}), "grid": g["name"], **vals},
               "recipe": {**copy.deepcopy(base), **{k: x for k, x in vals.items() if k not in ROW_AXES}}}
        row.update({k: copy.deepcopy(g[k]) for k in ("run", "step", "aux") if g.get(k) is not None})
        row.update({k: vals[k] for k in ("run", "step", "seed") if k in vals})
        if "aux_step" in vals:
            row["aux"] = {"run": (g.get("aux") or {}).get("run", row.get("run")), "step": vals["aux_step"]}
        rows[rid] = row
    return rows


IMPORTED_SPARSITY = {"maskdit": ("masking",), "ours": ("none", "routing", "masking")}  # others: none, routing


def _check_imported(name: str, r: dict):
    """A run from a checkpoint (runs.<run>.from) is not trained: it starts from nothing else, keeps
    no snapshots, and its sparsity fits its format (MaskDiT: masking; SiT, DiT, TREAD: dense or
    routed at inference, routing having no weights)."""
    where, src = f"runs.{name}", r["from"]
    if r["init"] is not None:
        raise ConfigError(f"{where}: a run from a checkpoint (from:) does not also start from another run (init:).")
    if r["train"].get("save_steps"):
        raise ConfigError(f"{where}.train.save_steps: a run from a checkpoint is not trained here, so it has no "
                          "snapshots; remove save_steps (rows sample its weights: no step).")
    fmt = src.get("format")
    allowed = IMPORTED_SPARSITY.get(fmt, ("none", "routing")) if fmt else ("none", "routing", "masking")
    if r["sparsity"] not in allowed:
        raise ConfigError(f"{where}.sparsity={r['sparsity']!r} does not fit a {fmt} checkpoint; use "
                          f"{' or '.join(map(repr, allowed))}.")


def is_imported(cfg: dict, run: str) -> bool:
    """Whether a run's weights come from a checkpoint (runs.<run>.from) rather than from training."""
    return cfg["runs"][run].get("from") is not None


def _check_snapshot(cfg: dict, run: str, step, where: str):
    saved = list(cfg["runs"][run]["train"].get("save_steps", []))
    if step not in saved:
        raise ConfigError(
            f"{where}={step!r}: run {run!r} does not save a checkpoint at that step "
            f"(runs.{run}.train.save_steps = {saved}); pick one of those or add the step "
            "to save_steps (before that run trains past it).")


def _check_run_name(cfg: dict, run, where: str):
    if run not in cfg["runs"]:
        raise ConfigError(f"{where}={run!r} is not a training run; runs: {', '.join(cfg['runs'])}.")


def _check_row(row: dict, rwhere: str, e: dict, cfg: dict, sampling: dict) -> dict:
    """Fill a row's run, step (None: the final weights) and seed, and check them against the runs."""
    for k in ("label", "recipe"):
        if k not in row:
            raise ConfigError(f"{rwhere} is missing {rwhere}.{k}.")
    row["run"] = row.get("run") or e.get("run")
    if row["run"] is None:
        raise ConfigError(f"{rwhere}: no run; give {rwhere}.run or the experiment's run.")
    _check_run_name(cfg, row["run"], f"{rwhere}.run")
    step = row.get("step")
    if step is not None and step == cfg["runs"][row["run"]]["train"]["steps"]:
        step = None  # the final weights (last.pt)
    if step is not None:
        _check_snapshot(cfg, row["run"], step, f"{rwhere}.step")
    row["step"] = step
    row["seed"] = row.get("seed", sampling["seed"])
    row["tags"] = row.get("tags") or {}
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
        if aux.get("step") is None:
            raise ConfigError(f"{rwhere}.aux is missing {rwhere}.aux.step (or give the grid an aux_step axis).")
        _check_run_name(cfg, aux["run"], f"{rwhere}.aux.run")
        _check_snapshot(cfg, aux["run"], aux["step"], f"{rwhere}.aux.step")
    return row


TUNE_SUFFIX = ".tune"  # <experiment>.tune: the validation samples of an experiment's tuned rows
TUNE_PAIRS = "gamma_pairs"  # a tune axis of [gamma_strong, gamma_weak] pairs
BY_DIRECTION = {"fid": min, "sfid": min, "acc": max}  # a tuning score -> how it chooses


def tuning_name(experiment: str) -> str:
    return f"{experiment}{TUNE_SUFFIX}"


def tune_cells(rid: str, tune: dict, where: str) -> dict:
    """The arguments of a tuned row's candidates, by candidate id: the product of its ``tune`` axes
    (``gamma_pairs`` sets gamma_strong and gamma_weak together).

    ``tune_cells("cfg", {"omega": [1.5, 2]}, ...)`` -> ``{"cfg-w1.5": {"omega": 1.5}, "cfg-w2": {"omega": 2}}``"""
    axes = []
    for k, values in tune.items():
        if k in ROW_AXES:
            raise ConfigError(f"{where}.{k}: a row tunes its recipe's arguments (omega, gamma_strong, gamma_weak, "
                              f"{TUNE_PAIRS}, ...), not its {k}; give those rows of their own.")
        if k == TUNE_PAIRS:
            if not all(isinstance(v, list) and len(v) == 2 for v in values):
                raise ConfigError(f"{where}.{TUNE_PAIRS}={values!r} must list [gamma_strong, gamma_weak] pairs.")
            axes.append([{"gamma_strong": a, "gamma_weak": b} for a, b in values])
        else:
            axes.append([{k: v} for v in values])
    cells = {}
    for combo in itertools.product(*axes):
        args = {k: v for part in combo for k, v in part.items()}
        cells[rid + "".join(f"-{AXIS_ABBR.get(k, k)}{_fmt_axis(v)}" for k, v in args.items())] = args
    return cells


def tuning_experiment(name: str, e: dict, track: bool = False, sampling: dict | None = None) -> dict | None:
    """The experiment ``<name>.tune`` of an experiment whose rows have ``tune:``: one row per candidate
    of each tuned row, sampled on the tuning's validation seed with its sampling and metrics settings
    (over the experiment's), tagged ``tuned: <row>`` and its arguments. None if no row is tuned.

    Selection and report never share samples: the validation seed is none the experiment reports
    (``sampling``: the experiment's sampling settings, whose seed its rows default to)."""
    where, rows = f"experiments.{name}", (e or {}).get("rows") or {}
    tuned = {rid: r for rid, r in rows.items() if (r or {}).get("tune")}
    if not tuned:
        return None
    if track:
        raise ConfigError(f"{where}.rows.{next(iter(tuned))}.tune: tuned rows are the ImageNet track's (Tables "
                          "1-2, Fig. 1); give the text-to-image rows their settings.")
    default_seed = (sampling or {}).get("seed", 0)
    t = e.get("tuning")
    if t is None:
        raise ConfigError(f"{where}.rows.{next(iter(tuned))}.tune needs {where}.tuning: {{seed: <a validation "
                          "seed>, by: fid, sampling: {...}, metrics: {...}}}, how its candidates are scored.")
    if e.get("seeds") is not None:
        reported = set(e["seeds"])
    else:
        reported = {r.get("seed", default_seed) for r in rows.values() if not r.get("same_as")}
        reported |= {default_seed} if e.get("grids") else set()
    if t["seed"] in reported:
        raise ConfigError(f"{where}.tuning.seed={t['seed']} is a seed the experiment reports; choose on another "
                          "(validation) seed, so that selection and report never share samples.")
    out_rows = {}
    for rid, r in tuned.items():
        recipe = r.get("recipe")
        base = {"preset": recipe} if isinstance(recipe, str) else copy.deepcopy(recipe)
        if not isinstance(base, dict) or "preset" not in base:
            raise ConfigError(f"{where}.rows.{rid}.tune: the tuned arguments are a preset's, so "
                              f"{where}.rows.{rid}.recipe must be a preset name or {{preset: <name>, ...}}.")
        for cid, args in tune_cells(rid, r["tune"], f"{where}.rows.{rid}.tune").items():
            resolve_row_recipe({**base, **args}, 1, f"{where}.rows.{rid}.tune (candidate {cid})")
            row = {k: copy.deepcopy(v) for k, v in r.items() if k not in ("tune", "seed", "tags")}
            row.update(recipe={**base, **args}, seed=t["seed"], tags={"tuned": rid, **args})
            out_rows[cid] = row
    return {"run": e.get("run"), "rows": out_rows, "tuning_of": name,
            "sampling": {**(e.get("sampling") or {}), **t["sampling"]},
            "metrics": {**(e.get("metrics") or {}), **t["metrics"]},
            "caption": f"the candidates of {name}'s tuned rows (seed {t['seed']}, by {t['by']})"}


def tuned_base(rid: str, spec: dict) -> str:
    """The row a (replicated) row was written as: its tuning and its choice are that row's."""
    return (spec.get("tags") or {}).get("base", rid)


def tuning_candidates(cfg: dict, experiment: str, row: str) -> dict:
    """A tuned row's candidates (rows of ``<experiment>.tune``, by id) -> the arguments each sets."""
    exp = cfg["experiments"].get(tuning_name(experiment))
    cells = {cid: {k: v for k, v in r["tags"].items() if k != "tuned"}
             for cid, r in (exp or {"rows": {}})["rows"].items() if r["tags"].get("tuned") == row}
    if not cells:
        raise ConfigError(f"row {experiment}/{row} is not tuned (it has no tune:), so it has no candidates.")
    return cells


def score_label(extractor: str, key: str, n: int | None = None) -> str:
    """How a score is named in tables and on axes: FD in the classifier's features is never called FID."""
    at = "" if n is None else f"@{n}"
    return {"fid": f"{'classifier FD' if extractor == 'classifier' else 'FID'}{at}", "acc": "class accuracy",
            "sfid": f"sFID{at}", "prec": "precision", "rec": "recall"}.get(key, key)


def _refuse_made(exps: dict) -> dict:
    """A preset's experiments, none of them named like the ones the config makes (<name>.tune)."""
    for name, e in exps.items():
        if name.endswith(TUNE_SUFFIX) or (e or {}).get("tuning_of"):
            raise ConfigError(f"experiments.{name}: experiments named *{TUNE_SUFFIX} (tuning_of) are made by the "
                              "config from an experiment's tuning; give the rows tune: instead.")
    return exps


def _seeded(rows: dict, rid: str) -> list[str]:
    """The replicates ``<rid>.s<seed>`` of a row over an experiment's seeds (none if unseeded)."""
    return [r for r, spec in rows.items() if r != rid and spec.get("tags", {}).get("base") == rid]


def _expand_same_as(out: dict) -> None:
    """same_as naming a row replicated over its experiment's seeds: the replicate of the same seed (a
    seeded experiment's), or one row per replicate (``<row>.s<seed>``, tagged base and seed)."""
    for name, e in out.items():
        rows = {}
        for rid, row in e["rows"].items():
            ref = row.get("same_as")
            target = ref.split("/") if isinstance(ref, str) and ref.count("/") == 1 else None
            if target is None or target[0] not in out or target[1] in out[target[0]]["rows"]:
                rows[rid] = row
                continue
            reps = _seeded(out[target[0]]["rows"], target[1])
            if not reps:
                rows[rid] = row  # resolve_source names the missing row
            elif "seed" in row.get("tags", {}):  # this experiment's own seeds: the same seed there
                want = f"{target[1]}.s{row['tags']['seed']}"
                if want not in out[target[0]]["rows"]:
                    raise ConfigError(f"experiments.{name}.rows.{rid}.same_as={ref!r}: {target[0]} has no "
                                      f"seed {row['tags']['seed']} (it has rows {', '.join(reps)}).")
                rows[rid] = {**row, "same_as": f"{target[0]}/{want}"}
            else:
                for rep in reps:
                    sd = out[target[0]]["rows"][rep]["tags"]["seed"]
                    rows[f"{rid}.s{sd}"] = {**copy.deepcopy(row), "same_as": f"{target[0]}/{rep}",
                                            "tags": {**(row.get("tags") or {}), "base": rid, "seed": sd}}
        e["rows"] = rows


def _check_experiment(cfg: dict, name: str, e: dict) -> dict:
    """One experiment's rows (its grids expanded, replicated over its seeds) checked against the runs."""
    where = f"experiments.{name}"
    e = copy.deepcopy(e)
    if e.get("run") is not None:
        _check_run_name(cfg, e["run"], f"{where}.run")
    sampling = schema.validate({**cfg["sampling"], **(e.get("sampling") or {})}, config_schema(), "sampling",
                               f"{where}.sampling")
    metrics_def = "text_metrics" if cfg.get("track") == "text_to_image" else "metrics"
    scorer_keys = {"detector", "scene_text"} & set(e.get("metrics") or {})
    if scorer_keys:  # one pair of scorers per track (the scorers job), not one per experiment
        raise ConfigError(f"{where}.metrics: {', '.join(sorted(scorer_keys))} belong to the track's metrics "
                          "(text_to_image.metrics), which train the scorers every experiment uses.")
    metrics = schema.validate({**cfg["metrics"], **(e.get("metrics") or {})}, config_schema(), metrics_def,
                              f"{where}.metrics")
    _check_metrics(metrics, sampling, f"{where}.metrics")
    rows = dict(e.get("rows") or {})
    origin = {rid: f"{where}.rows.{rid}" for rid in rows}  # where each row was written (errors name it)
    for i, g in enumerate(e.get("grids") or []):
        for rid, row in expand_grid(g, f"{where}.grids[{i}]").items():
            if rid in rows:
                raise ConfigError(f"{where}.grids[{i}] makes row {rid!r}, which the experiment already has.")
            rows[rid] = row
            origin[rid] = f"{where}.grids[{i}] (row {rid})"
    if not rows:
        raise ConfigError(f"{where} has no rows: give rows: or grids:.")
    if e.get("seeds") is not None:
        origin = {f"{rid}.s{sd}": origin[rid] for rid in rows for sd in e["seeds"]}
        rows = {f"{rid}.s{sd}": {**copy.deepcopy(r), **({} if r.get("same_as") else {"seed": sd}),
                                 "tags": {**(r.get("tags") or {}), "base": rid, "seed": sd}}
                for rid, r in rows.items() for sd in e["seeds"]}
    for rid, row in rows.items():
        if not ID_RE.match(rid):
            raise ConfigError(f"{where}.rows: {rid!r} is not a usable name (letters, digits and _ . + -, "
                              "starting with a letter or digit; it becomes part of file names).")
        if row.get("same_as") is None:
            _check_row(row, origin[rid], e, cfg, sampling)
    for sd in {r.get("tags", {}).get("seed") for r in rows.values()}:  # per sampling seed (experiment seeds:)
        roles = [r.get("tags", {}).get("role") for r in rows.values() if r.get("tags", {}).get("seed") == sd]
        if "compare" in roles and roles.count("conditional") != 1:
            raise ConfigError(f"{where}: rows tagged role: compare are measured against the one row tagged role: "
                              f"conditional (the unguided prediction, same noise); found {roles.count('conditional')}.")
    sets = ("eval", *cfg["data"].get("prompt_sets", {})) if cfg.get("track") == "text_to_image" else ()
    if e.get("prompts") is not None and e["prompts"] not in sets:
        raise ConfigError(f"{where}.prompts={e['prompts']!r}: " + (
            f"the prompt sets are {', '.join(sets)} (data.eval and data.prompt_sets)." if sets else
            "only the text-to-image track's experiments sample prompt sets."))
    return {**e, "rows": rows, "baseline": e.get("baseline"), "caption": e.get("caption", ""),
            "sampling": sampling, "metrics": metrics, "plot": e.get("plot") or {}, "run": e.get("run")}


def _check_experiments(cfg: dict) -> dict:
    exps = _refuse_made(cfg["experiments"])
    out = {name: _check_experiment(cfg, name, e) for name, e in exps.items()}
    for name, e in exps.items():  # then the tuning experiments (their rows' own errors come first)
        tuned = tuning_experiment(name, e, bool(cfg.get("track")), {**cfg["sampling"], **(e.get("sampling") or {})})
        if tuned is not None:
            out[tuning_name(name)] = _check_experiment(cfg, tuning_name(name), tuned)
    _expand_same_as(out)
    for name, e in out.items():  # references between experiments: checked once every experiment is known
        e["baseline"] = _baseline(e, f"experiments.{name}")
        for rid, row in e["rows"].items():
            if row.get("same_as") is not None:
                src = resolve_source(out, name, rid, f"experiments.{name}.rows.{rid}.same_as")
                target = out[src[0]]["rows"][src[1]]
                if (e.get("prompts") or "eval") != (out[src[0]].get("prompts") or "eval"):
                    raise ConfigError(f"experiments.{name}.rows.{rid}.same_as={row['same_as']!r}: that row samples "
                                      f"prompt set {out[src[0]].get('prompts') or 'eval'!r}, this experiment "
                                      f"{e.get('prompts') or 'eval'!r}; give the row its own recipe.")
                row.setdefault("label", _chain_label(out, name, rid))
                row["tags"] = {**target.get("tags", {}), **(row.get("tags") or {})}
    return out


def _chain_label(exps: dict, experiment: str, row: str) -> str:
    """The label of a same_as row: its own, else that of the nearest row along its chain that has one
    (Fig. A6's rows -> Fig. A5's 'SG', not Table 2's '+SG_FLOPS' that Fig. A5's rows point to)."""
    while exps[experiment]["rows"][row].get("label") is None:
        experiment, row = exps[experiment]["rows"][row]["same_as"].split("/")
    return exps[experiment]["rows"][row]["label"]


def _baseline(e: dict, where: str) -> str:
    """An experiment's baseline row (default: its first); a row replicated over seeds: its first replicate."""
    rows, baseline = e["rows"], e.get("baseline") or next(iter(e["rows"]))
    if baseline not in rows:
        reps = _seeded(rows, baseline)
        if not reps:
            raise ConfigError(f"{where}.baseline={baseline!r} is not one of its rows ({', '.join(rows)}).")
        baseline = reps[0]
    return baseline


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
    """The schema (types, ranges, unknown keys; defaults filled), then the cross-references between
    sections (see the module docstring); returns a new dict."""
    cfg = copy.deepcopy(cfg)
    if isinstance((cfg.get("data") or {}).get("codec"), str):
        cfg["data"]["codec"] = {"name": cfg["data"]["codec"]}
    m = cfg.get("metrics")
    if isinstance(m, dict) and isinstance(m.get("metrics"), str):  # --config metrics="fid,sfid"
        m["metrics"] = [x.strip() for x in m["metrics"].split(",") if x.strip()]
    t2i = cfg.get("text_to_image")
    if isinstance(t2i, dict) and set(t2i) <= {"experiments"}:
        del cfg["text_to_image"]  # base.yaml's experiments alone: a preset without the track
    schema.validate(cfg, config_schema())
    if cfg["results_dir"] is None:
        cfg["results_dir"] = f"results/{cfg['name']}"
    cfg["results_dir"] = cfg["results_dir"].rstrip("/") or "/"
    check_writable_folder(cfg["results_dir"], "results_dir", "choose another results_dir")
    _check_sections(cfg)
    if cfg.get("text_to_image") is not None:
        track_config(cfg, "text_to_image")  # its own checks, at load time (errors name the section)
    return cfg


def _check_sections(cfg: dict) -> None:
    """The checks across data, model, runs, metrics and experiments, of a config or of a track."""
    if cfg["data"]["dataset"] in TEXT_DATASETS:
        _check_text_data(cfg["data"])
    else:
        _check_data(cfg["data"])
    _check_model(cfg["model"], cfg["data"])
    _check_runs(cfg)
    _check_metrics(cfg["metrics"], cfg["sampling"])
    cfg["experiments"] = _check_experiments(cfg)
    if cfg.get("track"):
        return _check_text_metrics(cfg)
    uses_classifier = any(e["metrics"]["extractor"] == "classifier" for e in cfg["experiments"].values())
    if uses_classifier or cfg.get("classifier") is not None:
        cfg["classifier"] = schema.validate(cfg.get("classifier") or {}, config_schema(), "classifier", "classifier")
        if cfg["data"]["dataset"] != "fashion_mnist":
            raise ConfigError("metrics.extractor 'classifier' is the pipeline's Fashion-MNIST classifier; with "
                              f"{cfg['data']['dataset']} use an Inception extractor (auto).")


def track_config(cfg: dict, track: str = "text_to_image") -> dict:
    """A track of a validated config as a configuration of its own: its section (data, model, runs,
    sampling, metrics, experiments; schema-checked and filled by validate) with the config's name,
    compute and resources, results under ``<results_dir>/<TRACKS[track]>``, and ``track`` set.
    Stages, layouts, digests and results take it as they take the config itself."""
    if track not in TRACKS:
        raise ConfigError(f"unknown track {track!r}; tracks: {', '.join(TRACKS)}.")
    if cfg.get("track"):
        if cfg["track"] == track:
            return cfg
        raise ConfigError(f"this is the config of track {cfg['track']!r}, not of a whole preset.")
    if cfg.get(track) is None:
        raise ConfigError(f"config {cfg['name']!r} has no {track} section (embedded, smoke and paper have one).")
    section = copy.deepcopy(cfg[track])
    resources = deep_merge(cfg.get("resources") or {}, section.pop("resources", None) or {})  # the track's over the preset's
    out = {"name": cfg["name"], "track": track, "results_dir": f"{cfg['results_dir']}/{TRACKS[track]}",
           "reports_dir": cfg["results_dir"],  # its tables and figures beside the others
           "compute": copy.deepcopy(cfg["compute"]), "resources": resources, **section}
    try:
        _check_sections(out)
        out["throughput"]["run"] = out["throughput"]["run"] or next(iter(out["runs"]))
        _check_run_name(out, out["throughput"]["run"], "throughput.run")
    except ConfigError as e:
        raise ConfigError(f"{track}: {e}") from e
    return out


# ---------------------------------------------------------------------------------------------
# Readers used by the stages, the results and the rules
# ---------------------------------------------------------------------------------------------

def prompt_set(cfg: dict, experiment_name: str) -> str:
    """The prompt set an experiment of the text-to-image track samples: 'eval' (data.eval) or a name
    of data.prompt_sets."""
    return experiment(cfg, experiment_name).get("prompts") or "eval"


def prompt_set_spec(cfg: dict, name: str) -> dict:
    """The settings of a prompt set (data/prompt_sets.py: format, path, ...)."""
    if name == "eval":
        return cfg["data"]["eval"]
    sets = cfg["data"].get("prompt_sets") or {}
    if name not in sets:
        raise ConfigError(f"prompt set {name!r} is not in data.prompt_sets ({', '.join(sets) or 'none'}).")
    return sets[name]


def eval_split(name: str) -> str:
    """The text features' split of a prompt set: 'eval' for data.eval, 'eval-<name>' for the others."""
    return "eval" if name == "eval" else f"eval-{name}"


def reported(cfg: dict) -> list[str]:
    """The experiments with a table or figure (the tuning experiments <name>.tune have none)."""
    return [e for e, spec in cfg["experiments"].items() if not spec.get("tuning_of")]


def experiment(cfg: dict, name: str) -> dict:
    if name not in cfg["experiments"]:
        raise ConfigError(f"experiment {name!r} is not in config {cfg['name']!r}; it has "
                          f"{', '.join(cfg['experiments']) or 'none'}.")
    return cfg["experiments"][name]


def metrics_of(cfg: dict, name: str) -> dict:
    """The metrics settings an experiment's numbers were measured with: its own, or, when every row
    reuses (same_as) the rows of one other experiment, that experiment's (Fig. 1 and Table 3 show
    Table 2's rows, scored at Table 2's n)."""
    exp = experiment(cfg, name)
    rows = exp.get("rows") or {}
    sources = {r["same_as"].split("/")[0] for r in rows.values() if r.get("same_as")}
    if rows and len(sources) == 1 and all(r.get("same_as") for r in rows.values()):
        (source,) = sources
        if source != name and source in cfg["experiments"]:
            return metrics_of(cfg, source)
    return exp["metrics"]


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


def source_row(cfg: dict, experiment: str, row: str) -> dict:
    """The validated spec of the row whose samples a row uses (itself, or what same_as names)."""
    e2, r2 = resolve_source(cfg["experiments"], experiment, row)
    return cfg["experiments"][e2]["rows"][r2]


def distance_reference(cfg: dict, experiment: str, row: str) -> str | None:
    """The row a row's samples are compared with, sample by sample (Fig. 7: rows tagged role: compare
    against the experiment's role: conditional row of the same seed); None for other rows."""
    rows = cfg["experiments"][experiment]["rows"]
    tags = rows[row].get("tags", {})
    if tags.get("role") != "compare":
        return None
    return next(r for r, spec in rows.items() if spec.get("tags", {}).get("role") == "conditional"
                and spec["tags"].get("seed") == tags.get("seed"))  # the same noise: the same seed


def iteration(cfg: dict, run: str, step: int | None) -> int:
    """Training iterations behind a run's checkpoint (``step``, None = the run's end), counting those
    of the run it started from: a dense finetuning run branched at step s of its parent has seen
    s + its own steps. Tables show this as #Steps; ``steps`` is the run's own length."""
    r = cfg["runs"][run]
    own = step if step is not None else r["train"]["steps"]
    init = r.get("init")
    return own + (iteration(cfg, init["run"], init["step"]) if init else 0)


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
