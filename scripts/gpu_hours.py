"""GPU-hours each target of a preset needs, estimated from FLOPs (no step time is measured).

    python scripts/gpu_hours.py [--preset paper] [--tflops 400] [--format md|csv]

An estimate, not a measurement: every network evaluation is counted in multiply-accumulates (MACs)
of its linear and conv layers by fvcore (``sparse_guidance.flops``, the paper's "GFLOPs"
convention; attention products, norms and element-wise ops are not counted), turned into FLOPs
(2 per MAC) and divided by one assumed sustained throughput (--tflops, default 400 TFLOP/s, about
40 % of an H100's dense bf16 peak). Models are built on the meta device and materialised with
uninitialised weights (``to_empty``): counts do not depend on weight values.

What is counted (the jobs of Snakemake's own dry run of each target, from nothing: --forceall):
  training       2 x 3 (forward + backward) x forward MACs per image at the run's training sparsity
                 (train.gamma if set, else the model's train_gamma; masking models include their
                 decoder) x batch_size x steps. A finetuning run needs the run it starts from.
  sampling       per row actually sampled (rows with same_as reuse another row's samples):
                 2 x recipe MACs per step (flops.recipe_gflops, the count the workflow's flops job
                 reports) x steps (x2 for Heun) x num_samples, plus the codec's decode per image.
  metrics        2 x feature-network MACs (Inception at 299x299, or the Fashion-MNIST classifier)
                 per evaluated sample (metrics.n), plus the reference statistics once.
  data           encoding the training set once (x2 with flips) through the codec's encoder.

A target's line is what it costs built alone from nothing (every job it needs, in full); `all` is
the union of the targets' jobs, each counted once (so it is less than the sum of the lines). The
sampling table charges each sampled row to the experiment that owns it.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import warnings

from concurrent.futures import ThreadPoolExecutor

import torch

from sparse_guidance import config as X
from sparse_guidance import workflow
from sparse_guidance.flops import COUNTED_OPS, FlopCounter, recipe_gflops
from sparse_guidance.models import on_meta

FLOP_PER_MAC = 2
TRAIN_PASSES = 3              # forward + backward (about twice the forward)
DEFAULT_TFLOPS = 400.0        # sustained FLOP/s per GPU, ~40 % of an H100 SXM's 989 TFLOP/s dense bf16
IMAGENET_TRAIN_IMAGES = 1_281_167
ADM_REFERENCE_IMAGES = 10_000  # VIRTUAL_imagenet256_labeled.npz (ADM's reference batch) holds 10k images
INCEPTION_GMACS_FALLBACK = 5.7  # Inception-v3 at 299x299, if torch-fidelity's network cannot be built
INCEPTION_SIZE = 299
# stabilityai/sd-vae-ft-ema's config.json (the architecture only; no weights are downloaded).
SD_VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                     up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                     layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=256)


# ---------------------------------------------------------------------------------------------
# Counting MACs of one evaluation
# ---------------------------------------------------------------------------------------------

def fvcore_gmacs(module: torch.nn.Module, *inputs) -> float:
    """GMACs of linear/conv layers of one call module(*inputs) (flops.COUNTED_OPS, fvcore)."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(module.eval(), inputs)
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return sum(v for k, v in fa.by_operator().items() if k in COUNTED_OPS) / 1e9


class _Call(torch.nn.Module):
    def __init__(self, fn, owner):
        super().__init__()
        self.fn, self.owner = fn, owner  # owner registers the weights as a submodule

    def forward(self, x):
        return self.fn(x)


def sd_vae_gmacs() -> dict:
    """Encoder MACs of one 3x256x256 image and decoder MACs of one 4x32x32 latent, counted on an
    AutoencoderKL with the sd-vae-ft-ema architecture and uninitialised weights."""
    from diffusers import AutoencoderKL

    with on_meta():
        vae = AutoencoderKL(**SD_VAE_CONFIG)
    vae = vae.to_empty(device="cpu").eval()
    size, down = SD_VAE_CONFIG["sample_size"], 2 ** (len(SD_VAE_CONFIG["block_out_channels"]) - 1)
    enc = _Call(lambda x: vae.encode(x, return_dict=False)[0].mean, vae)
    dec = _Call(lambda z: vae.decode(z, return_dict=False)[0], vae)
    return {"encode": fvcore_gmacs(enc, torch.zeros(1, 3, size, size)),
            "decode": fvcore_gmacs(dec, torch.zeros(1, SD_VAE_CONFIG["latent_channels"], size // down, size // down)),
            "source": "diffusers AutoencoderKL, sd-vae-ft-ema architecture (fvcore)"}


def inception_gmacs() -> tuple[float, str]:
    """MACs of torch-fidelity's Inception-v3 (the TF FID network) on one 299x299 image; its weight
    loading is skipped (nothing is downloaded). Falls back to a constant if it cannot be built."""
    try:
        from unittest import mock

        import torch_fidelity.feature_extractor_inceptionv3 as fi

        class Unloaded(fi.FeatureExtractorInceptionV3):
            def load_state_dict(self, *args, **kwargs):  # keep the uninitialised weights
                return None

        with mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: {}), on_meta():
            net = Unloaded("inception-v3-compat", ["2048", "logits_unbiased"])
        net = net.to_empty(device="cpu")
        x = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)
        return fvcore_gmacs(net, x), "torch-fidelity inception-v3-compat at 299x299 (fvcore)"
    except Exception as e:  # noqa: BLE001 - any failure: the stated constant
        return INCEPTION_GMACS_FALLBACK, f"constant {INCEPTION_GMACS_FALLBACK} (counting failed: {type(e).__name__})"


def classifier_gmacs() -> float:
    from sparse_guidance.metrics.classifier import FashionClassifier

    return fvcore_gmacs(FashionClassifier(), torch.zeros(1, 1, 32, 32))


class Counts:
    """Per-evaluation GMACs, counted once per architecture (runs with the same model share them)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self._models: dict[str, FlopCounter] = {}
        self._codec: dict | None = None
        self.feature_nets: dict[str, tuple[float, str]] = {}

    def model(self, run: str) -> FlopCounter:
        key = json.dumps(X.model_kwargs(self.cfg, run), sort_keys=True)
        if key not in self._models:
            model = X.build_run_model(self.cfg, run, device="meta").to_empty(device="cpu").eval()
            self._models[key] = FlopCounter(model)
        return self._models[key]

    def codec(self) -> dict:
        """GMACs per image of the codec's encode and decode (space-to-depth has no MACs)."""
        if self._codec is None:
            name = self.cfg["data"]["codec"]["name"]
            self._codec = (sd_vae_gmacs() if name == "sd-vae-ft-ema"
                           else {"encode": 0.0, "decode": 0.0, "source": f"{name}: no linear/conv layers"})
        return self._codec

    def features(self, extractor: str) -> tuple[float, str]:
        """(GMACs per image, where the number comes from) of a metrics feature network."""
        kind = "classifier" if extractor == "classifier" else "inception"
        if kind not in self.feature_nets:
            self.feature_nets[kind] = ((classifier_gmacs(), "Fashion-MNIST classifier (fvcore)")
                                    if kind == "classifier" else inception_gmacs())
        return self.feature_nets[kind]


# ---------------------------------------------------------------------------------------------
# FLOPs of each job
# ---------------------------------------------------------------------------------------------

def train_gamma(cfg: dict, run: str, counts: Counts) -> float:
    """The sparsity a run trains at: train.gamma if set, else the model's train_gamma (train.train)."""
    g = cfg["runs"][run]["train"].get("gamma")
    return float(counts.model(run).model.train_gamma if g is None else g)


def training_cost(cfg: dict, run: str, counts: Counts) -> dict:
    tr = cfg["runs"][run]["train"]
    gamma = train_gamma(cfg, run, counts)
    gmacs = counts.model(run)(gamma)  # forward MACs of one image, decoder included for masking
    flops = FLOP_PER_MAC * TRAIN_PASSES * gmacs * 1e9 * tr["batch_size"] * tr["steps"]
    return {"run": run, "model": cfg["model"]["name"], "sparsity": cfg["runs"][run]["sparsity"], "gamma": gamma,
            "fwd_gmacs": gmacs, "batch_size": tr["batch_size"], "steps": tr["steps"],
            "init": cfg["runs"][run].get("init"), "flops": flops, "imported": X.is_imported(cfg, run)}


def sample_cost(cfg: dict, experiment: str, row: str, counts: Counts) -> dict:
    """One sample job (a row that is not same_as): the denoiser over all steps, then the decode."""
    exp = cfg["experiments"][experiment]
    spec, s = exp["rows"][row], exp["sampling"]
    counters = {"main": counts.model(spec["run"])}
    if spec.get("aux"):
        counters["aux"] = counts.model(spec["aux"]["run"])
    per_step = recipe_gflops(counters, spec["recipe"], s["steps"])  # GMACs, as flops/<experiment>.json
    evals = 2 if s["solver"] == "heun" else 1  # Heun evaluates the recipe twice per step
    denoise = FLOP_PER_MAC * per_step * 1e9 * s["steps"] * evals * s["num_samples"]
    decode = FLOP_PER_MAC * counts.codec()["decode"] * 1e9 * s["num_samples"]
    return {"experiment": experiment, "row": row, "recipe_gmacs": per_step, "num_samples": s["num_samples"],
            "steps": s["steps"], "denoise_flops": denoise, "decode_flops": decode, "flops": denoise + decode}


def evaluate_cost(cfg: dict, experiment: str, row: str, counts: Counts) -> dict:
    m = cfg["experiments"][experiment]["metrics"]
    gmacs, _ = counts.features(m["extractor"])
    return {"experiment": experiment, "row": row, "n": m["n"], "flops": FLOP_PER_MAC * gmacs * 1e9 * m["n"]}


def training_images(cfg: dict) -> int:
    d = cfg["data"]
    n = IMAGENET_TRAIN_IMAGES if d["dataset"] == "imagenet" else X.FASHION_MNIST_SPLITS[d["train_split"]]
    if d["train_limit"] is not None:
        n = min(n, d["train_limit"])
    return n * (2 if d["encode"]["flip"] else 1)


def data_cost(cfg: dict, stage: str, counts: Counts) -> float:
    """FLOPs of the one-off jobs: encoding the training set, reference statistics, the classifier."""
    if stage == "encode_latents":
        return FLOP_PER_MAC * counts.codec()["encode"] * 1e9 * training_images(cfg)
    if stage == "reference_stats":
        ref = cfg["data"]["reference"]
        n = ref["n"] if ref["n"] is not None else ADM_REFERENCE_IMAGES
        return FLOP_PER_MAC * counts.features(cfg["metrics"]["extractor"])[0] * 1e9 * n
    if stage == "classifier":
        c = cfg["classifier"]
        images = TRAIN_PASSES * c["steps"] * c["batch_size"] + c["reference_n"]
        return FLOP_PER_MAC * counts.features("classifier")[0] * 1e9 * images
    return 0.0  # prepare_data, flops: CPU only


# ---------------------------------------------------------------------------------------------
# What each target needs (the workflow's own job graph)
# ---------------------------------------------------------------------------------------------

def stage_of(rule: str, wildcards: dict, cfg: dict) -> tuple[str, dict]:
    """A job of the dry run as (stage, ids): train_<run> and finetune_<run> are ("train", {run})."""
    for family in ("train_", "finetune_"):
        if rule.startswith(family) and rule[len(family):] in cfg["runs"]:
            return "train", {"run": rule[len(family):]}
    if rule.startswith("import_") and rule[len("import_"):] in cfg["runs"]:  # a released checkpoint: no FLOPs
        return "import", {"run": rule[len("import_"):]}
    return rule, wildcards


def target_jobs(cfg: dict, targets, preset=None, overrides=None) -> dict[str, set[str]]:
    """Every job (as a JSON key [stage, ids]) of each target, as Snakemake's dry run lists it."""
    preset = preset or cfg["name"]
    with ThreadPoolExecutor(4) as pool:
        listed = pool.map(lambda t: workflow.jobs([t], preset, overrides), targets)
        return {t: {json.dumps(stage_of(r, w, cfg), sort_keys=True) for r, w in jobs}
                for t, jobs in zip(targets, listed)}


def job_flops(cfg: dict, key: str, counts: Counts, memo: dict) -> tuple[str, float]:
    """(category, FLOPs) of one job: train, sample (+ evaluate = sampling+metrics), data, or none."""
    if key not in memo:
        stage, ids = json.loads(key)
        if stage == "train":
            memo[key] = ("train", training_cost(cfg, ids["run"], counts)["flops"])
        elif stage == "sample":
            memo[key] = ("sample", sample_cost(cfg, ids["experiment"], ids["row"], counts)["flops"])
        elif stage == "evaluate":
            memo[key] = ("sample", evaluate_cost(cfg, ids["experiment"], ids["row"], counts)["flops"])
        elif stage in ("encode_latents", "reference_stats", "classifier"):
            memo[key] = ("data", data_cost(cfg, stage, counts))
        else:
            memo[key] = ("none", 0.0)
    return memo[key]


def target_cost(cfg: dict, jobs: set[str], counts: Counts, memo: dict) -> dict:
    """FLOPs by category of a target's jobs, each counted once."""
    out = {"train": 0.0, "sample": 0.0, "data": 0.0, "none": 0.0}
    for key in jobs:
        cat, f = job_flops(cfg, key, counts, memo)
        out[cat] += f
    stages = [json.loads(k) for k in jobs]
    out["runs"] = sorted(ids["run"] for s, ids in stages if s in ("train", "import"))
    out["samples"] = sorted((ids["experiment"], ids["row"]) for s, ids in stages if s == "sample")
    out["total"] = out["train"] + out["sample"] + out["data"]
    return out


def sampled_rows(cfg: dict, experiment: str) -> list[str]:
    """The rows an experiment samples itself (not the ones that reuse another row's samples)."""
    return [r for r, spec in cfg["experiments"][experiment]["rows"].items() if spec.get("same_as") is None]


def ordered_experiments(cfg: dict) -> list[str]:
    return [e for e in X.EXPERIMENTS if e in cfg["experiments"]] + \
           [e for e in cfg["experiments"] if e not in X.EXPERIMENTS]


def estimate(cfg: dict, counts: Counts | None = None, preset=None, overrides=None) -> dict:
    """Everything the tables print, in FLOPs: per run, per experiment's own samples, per target (its
    jobs from the workflow's dry run of ``preset``, by default the config's name, with ``overrides``)."""
    counts = counts or Counts(cfg)
    memo: dict = {}
    exps = ordered_experiments(cfg)
    runs = {r: training_cost(cfg, r, counts) for r in cfg["runs"]}
    sampling = {}
    for e in exps:
        rows = sampled_rows(cfg, e)
        jobs = [sample_cost(cfg, e, r, counts) for r in rows]
        evals = [evaluate_cost(cfg, e, r, counts) for r in rows]
        sampling[e] = {"rows": len(rows), "samples": sum(j["num_samples"] for j in jobs),
                       "denoise": sum(j["denoise_flops"] for j in jobs),
                       "decode": sum(j["decode_flops"] for j in jobs),
                       "metrics": sum(j["flops"] for j in evals)}
        sampling[e]["total"] = sampling[e]["denoise"] + sampling[e]["decode"] + sampling[e]["metrics"]
    reported = [e for e in exps if e in X.reported(cfg)]  # <experiment>.tune has no target of its own
    jobs = target_jobs(cfg, [*reported, "all"], preset, overrides)
    targets = {t: target_cost(cfg, jobs[t], counts, memo) for t in [*reported, "all"]}
    codec = counts.codec()
    return {"runs": runs, "sampling": sampling, "targets": targets, "codec": codec,
            "features": {k: v for k, v in counts.feature_nets.items()}}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def gpu_hours(flops: float, tflops: float) -> float:
    return flops / (tflops * 1e12) / 3600


def fmt_h(h: float) -> str:
    if h >= 100:
        return f"{h:,.0f}"
    if h >= 1:
        return f"{h:.1f}"
    return f"{h:.3g}" if h else "0"


def tables(cfg: dict, est: dict, tflops: float, pretty: bool = True) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of the three tables; pretty: rounded for reading, else plain numbers (CSV)."""
    H = (lambda f: fmt_h(gpu_hours(f, tflops))) if pretty else (lambda f: f"{gpu_hours(f, tflops):.6g}")
    N = (lambda n: f"{n:,}") if pretty else str
    t1 = []
    for name, t in est["targets"].items():
        t1.append([name, ", ".join(t["runs"]), H(t["train"]), len(t["samples"]), H(t["sample"]), H(t["data"]),
                   H(t["total"])])
    users = {r: [e for e, t in est["targets"].items() if e != "all" and r in t["runs"]] for r in est["runs"]}
    t2 = []
    for r, c in est["runs"].items():
        init = f"{c['init']['run']}@{c['init']['step']}" if c["init"] else "—"
        if c["imported"]:  # runs.<run>.from: trained by its authors, imported here at no cost
            init = "released checkpoint"
        t2.append([r, c["model"], c["sparsity"], f"{c['gamma']:g}", f"{c['fwd_gmacs']:.4g}", c["batch_size"],
                   N(c["steps"]), init, f"{c['flops'] / 1e18:.3g}",
                   f"({H(c['flops'])}, not here)" if c["imported"] and pretty else H(c["flops"]),
                   ", ".join(users[r]) or "—"])
    t3 = []
    for e, s in est["sampling"].items():
        t3.append([e, s["rows"], N(s["samples"]), H(s["denoise"]), H(s["decode"]), H(s["metrics"]),
                   H(s["total"])])
    tot = {k: sum(s[k] for s in est["sampling"].values()) for k in ("denoise", "decode", "metrics", "total")}
    t3.append(["total", sum(s["rows"] for s in est["sampling"].values()),
               N(sum(s["samples"] for s in est["sampling"].values())), H(tot["denoise"]), H(tot["decode"]),
               H(tot["metrics"]), H(tot["total"])])
    return [
        ("GPU-hours per target (each built alone from nothing; `all`: the union of jobs, each once)",
         ["target", "training runs", "training GPU-h", "rows sampled", "sampling+metrics GPU-h", "data GPU-h",
          "total GPU-h"], t1),
        ("Training runs", ["run", "model", "sparsity", "train γ", "fwd GMACs/img", "batch", "steps", "init",
                           "EFLOP", "GPU-h", "needed by"], t2),
        ("Sampling and metrics per experiment (rows it samples itself; same_as rows are charged to their owner)",
         ["experiment", "rows", "samples", "denoiser GPU-h", "decode GPU-h", "metrics GPU-h", "total GPU-h"], t3),
    ]


def assumptions(cfg: dict, est: dict, tflops: float) -> list[str]:
    codec, feats = est["codec"], est["features"]
    feat = "; ".join(f"{k}: {v[0]:.3f} GMACs/image from {v[1]}" for k, v in feats.items())
    s = cfg["sampling"]
    return [
        (f"Estimated from FLOPs, not measured: GPU-h = FLOPs / ({tflops:g} TFLOP/s sustained per GPU) / 3600. "
         f"{DEFAULT_TFLOPS:g} TFLOP/s is ~40 % of an H100 SXM's 989 TFLOP/s dense bf16 peak; change it with --tflops."),
        ("MACs of linear/conv layers only (fvcore; the paper's 'GFLOPs'); attention products, norms, element-wise "
         "ops, the optimizer and EMA updates, data loading and checkpoint I/O are not counted. 2 FLOPs per MAC."),
        (f"Training: {FLOP_PER_MAC} x {TRAIN_PASSES} (forward + backward) x forward MACs per image at the run's "
         "training γ (train.gamma, else the model's train_gamma; masking counts its decoder) x batch x steps. "
         "A finetuning run's line needs the run it starts from (its init), counted in full. A run from a released "
         "checkpoint (runs.<run>.from) was trained by its authors: its line shows that cost in parentheses, and no "
         "target pays it (its import job costs nothing)."),
        (f"Sampling: 2 x recipe MACs per step (flops.recipe_gflops: every guidance branch, γ schedules averaged) "
         f"x steps (x2 for Heun) x num_samples; defaults {s['steps']} {s['solver']} steps, {s['num_samples']:,} "
         "samples, experiments override. Rows with same_as are not sampled again."),
        (f"Codec ({cfg['data']['codec']['name']}): {codec['encode']:.1f} GMACs to encode one image, "
         f"{codec['decode']:.1f} GMACs to decode one latent; {codec['source']}."),
        (f"Metrics: one feature-network pass per evaluated sample (metrics.n; FID, sFID, IS share it): {feat}. "
         "k-NN precision/recall and Fréchet distances are CPU work and not counted. Reference statistics once "
         f"({ADM_REFERENCE_IMAGES:,} images of ADM's reference batch where data.reference is an npz)."),
        (f"Data: the training set encoded once: {training_images(cfg):,} images "
         f"({'with' if cfg['data']['encode']['flip'] else 'without'} flips) through the codec's encoder."),
        ("Each line costs its target built alone: jobs shared between targets (the routing run, Table 2's "
         "samples reused by Table 3 and Fig. 1) appear in every line that needs them; `all` counts each job once."),
    ]


def render_md(cfg: dict, est: dict, tflops: float) -> str:
    out = [f"# GPU-hours of preset `{cfg['name']}` at {tflops:g} TFLOP/s sustained (estimated from FLOPs)", ""]
    for title, header, rows in tables(cfg, est, tflops):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        out.append("")
    out += ["## Assumptions", ""] + [f"- {a}" for a in assumptions(cfg, est, tflops)]
    return "\n".join(out) + "\n"


def render_csv(cfg: dict, est: dict, tflops: float) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for title, header, rows in tables(cfg, est, tflops, pretty=False):
        buf.write(f"# {title}\n")
        w.writerow(header)
        w.writerows(rows)
        buf.write("\n")
    for a in assumptions(cfg, est, tflops):
        buf.write(f"# {a}\n")
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", help="preset name or YAML path (default paper)")
    p.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                   help=f"sustained TFLOP/s per GPU (default {DEFAULT_TFLOPS:g})")
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the counting passes (default 1)")
    a = p.parse_args(argv)
    if a.tflops <= 0:
        p.error("--tflops must be positive")
    torch.set_num_threads(a.threads)
    try:
        cfg = X.load_config(a.preset)
    except X.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    est = estimate(cfg, preset=a.preset)
    print((render_md if a.format == "md" else render_csv)(cfg, est, a.tflops), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
