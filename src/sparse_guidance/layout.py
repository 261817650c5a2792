"""Where every job writes under ``results_dir`` (one method per output file), and what each job's
result depends on (its configuration digest: a rule's params, so an edit reruns that job alone).

    layout = Layout(cfg)
    layout.samples("table2", "cfg")            # results/embedded/samples/table2/cfg.npz
    job_digest(cfg, "sample", experiment="table2", row="cfg")

The rules in workflow/rules/*.smk write these same paths as readable patterns (a test checks that
they agree); the stages and the results loader find files through this class.
"""
from __future__ import annotations

import copy

from .config import CLAIM_EXPERIMENTS, distance_reference, source_row, tuned_base, tuning_candidates, tuning_name
from .errors import ConfigError
from .flops import COUNTED_OPS
from .io import digest, read_json
from .train import RESUMABLE_KEYS, TrainConfig


class Layout:
    """Where each job writes, under ``results_dir``: one attribute or method per file."""

    def __init__(self, cfg: dict):
        self.root = cfg["results_dir"]
        self.reports_root = cfg.get("reports_dir") or self.root  # a track's tables and figures go with the others
        p = self.path
        self.data_dir = p("data")                                      # prepare_data: dataset.json, captions, index
        self.dataset = p("data", "dataset.json")                      # prepare_data
        self.latents_dir = p("latents", "train")                       # encode_latents: shards ...
        self.latents = p("latents", "train", "manifest.json")          # ... and their manifest
        self.reference = p("data", "reference.npz")                    # reference_stats (ADM layout) ...
        self.reference_info = p("data", "reference.json")              # ... and what it was built from
        self.classifier = p("classifier", "classifier.pt")             # the Fashion-MNIST classifier (figure grids)
        self.classifier_reference = p("classifier", "reference.npz")   # ... its reference statistics
        self.classifier_info = p("classifier", "info.json")
        self.cache = p("cache")                                        # feature caches of the metrics
        # the text-to-image track (config.track_config: results_dir is <results>/t2i)
        self.prompts = p("data", "prompts.json")                       # prepare_data: evaluation prompts + metadata
        self.captions = p("data", "captions.jsonl")                    # prepare_data (webdataset): the captions ...
        self.shard_index = p("data", "index.npz")                      # ... and where each sample's image is
        self.shape_classifier = p("scorers", "shape_classifier.pt")    # scorers: GenEval's detector ...
        self.scene_text_scorer = p("scorers", "scene_text.pt")         # ... the scene-text score
        self.scorers_info = p("scorers", "info.json")                  # ... and their checks on real renders
        self.throughput = p("throughput", "figA1.csv")                 # throughput: Fig. A1's cells ...
        self.throughput_info = p("throughput", "figA1.json")           # ... and what they were measured on

    def path(self, *parts) -> str:
        return "/".join([self.root, *map(str, parts)])

    def text_features(self, split): return self.path("text", f"{split}.pt")  # noqa: E704  text_features: train, eval, eval-<set>

    def prompts_file(self, prompt_set="eval"):
        """The prompts (with their metadata) of an evaluation prompt set: data.eval, or data.prompt_sets.<name>."""
        return self.prompts if prompt_set == "eval" else self.path("data", f"prompts-{prompt_set}.json")

    # training: the resumable state (not a workflow output: a rerun continues it) and the published files
    def run_dir(self, run): return self.path("runs", run)                                   # noqa: E704
    def state_dir(self, run): return self.path("runs", run, "state")                        # noqa: E704
    def checkpoint(self, run): return self.path("runs", run, "last.pt")                     # noqa: E704
    def snapshot(self, run, step): return self.path("runs", run, f"step-{int(step):07d}.pt")  # noqa: E704
    def run_summary(self, run): return self.path("runs", run, "summary.json")               # noqa: E704

    def weights(self, run, step=None):
        """A run's final checkpoint (step None) or one of its kept snapshots."""
        return self.checkpoint(run) if step is None else self.snapshot(run, step)

    # sampling (ADM npz + a description with GFLOPs per step), metrics, reports
    def samples(self, experiment, row): return self.path("samples", experiment, f"{row}.npz")       # noqa: E704
    def sample_info(self, experiment, row): return self.path("samples", experiment, f"{row}.json")  # noqa: E704
    def metrics(self, experiment, row): return self.path("metrics", experiment, f"{row}.json")      # noqa: E704
    # tuning: a tuned row's choice among its candidates (experiment <name>.tune), and their scores drawn
    def tuning(self, experiment, row): return self.path("tuning", experiment, f"{row}.json")       # noqa: E704
    def tuning_figure(self, experiment, row, ext="png"): return self.path("tuning", experiment, f"{row}.{ext}")  # noqa: E704
    def table(self, experiment, ext): return f"{self.table_stem(experiment)}.{ext}"                  # noqa: E704
    def table_stem(self, experiment): return f"{self.reports_root}/tables/{experiment}"             # noqa: E704
    def figure(self, experiment, ext): return f"{self.reports_root}/figures/{experiment}.{ext}"     # noqa: E704


def train_outputs(cfg: dict, run: str) -> dict:
    """The named outputs of a run's training job: last.pt, summary.json and one file per snapshot."""
    layout = Layout(cfg)
    out = {"checkpoint": layout.checkpoint(run), "summary": layout.run_summary(run)}
    for s in sorted(set(cfg["runs"][run]["train"].get("save_steps", []))):
        out[f"step_{s}"] = layout.snapshot(run, s)
    return out


# ---------------------------------------------------------------------------------------------
# What each job's result depends on
# ---------------------------------------------------------------------------------------------

def _runs_of(cfg: dict, rows) -> dict:
    names = {r["run"] for r in rows} | {r["aux"]["run"] for r in rows if r.get("aux")}
    return {r: cfg["runs"][r] for r in sorted(names)}


def data_identity(d: dict) -> dict:
    """What names a config's training data (not where it is read from, nor how it is encoded; for
    the scenes not the evaluation prompts either: those are the text features' eval job's)."""
    if d["dataset"] == "scenes":
        return {k: d[k] for k in ("dataset", "image_size", "train")}
    if d["dataset"] == "webdataset":
        return {k: d[k] for k in ("dataset", "shards", "filter", "image_size")}
    return {k: d[k] for k in ("dataset", "root", "train_split", "train_limit", "image_size")}


def text_encoder_identity(d: dict) -> dict:
    """What the prompt features depend on: the encoder, not the batch size it reads them in."""
    return {k: v for k, v in d["text_encoder"].items() if k != "batch_size"}


# Settings of the external scorers that say where they run, not what they compute
WHERE_SCORERS_RUN = {"hpsv3": ("python", "device", "batch_size"), "geneval_official": ("python",)}


def metrics_identity(m: dict) -> dict:
    """What a row's scores depend on: the metrics settings without the external scorers it does not
    use, nor where those it uses run (their environment's python, device, batch size)."""
    out = {k: v for k, v in m.items() if k not in WHERE_SCORERS_RUN}
    for name, where in WHERE_SCORERS_RUN.items():
        if name in m.get("metrics", []):
            out[name] = {k: v for k, v in (m.get(name) or {}).items() if k not in where}
    return out


def job_config(cfg: dict, stage: str, **ids) -> dict:
    """The part of the configuration one job's result depends on. Stages: prepare_data,
    encode_latents, reference_stats, classifier, train (run), sample and evaluate (experiment, row),
    report (experiment), tune (experiment, row: a tuned row's base), claims; in the text-to-image track also text_features (split: train, the training
    captions; eval, the evaluation prompts), scorers and throughput."""
    data = data_identity(cfg["data"])
    if stage == "text_features":  # split: train, eval (data.eval) or eval-<name> (data.prompt_sets.<name>)
        split = ids["split"]
        source = ({"data": data} if split == "train" else {"eval": cfg["data"]["eval"]} if split == "eval" else
                  {"eval": cfg["data"]["prompt_sets"][split.removeprefix("eval-")]})
        return {**source, "text_encoder": text_encoder_identity(cfg["data"])}
    if stage == "scorers":
        return {"data": data, "eval": cfg["data"]["eval"], "text_encoder": text_encoder_identity(cfg["data"]),
                "metrics": {k: cfg["metrics"][k] for k in ("detector", "scene_text")}}
    if stage == "throughput":
        return {"model": cfg["model"], "runs": cfg["runs"], "throughput": cfg["throughput"],
                "sampling": {k: cfg["sampling"][k] for k in ("steps", "bf16")}}
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
        return {"model": cfg["model"], "run": cfg["runs"][ids["run"]], **masked_loss(cfg["runs"][ids["run"]])}
    if stage == "claims":  # what the tables and figures the claims rest on depend on
        return {"reports": {e: job_config(cfg, "report", experiment=e) for e in CLAIM_EXPERIMENTS
                            if e in cfg["experiments"]}}
    exp = cfg["experiments"][ids["experiment"]]
    if stage == "tune":  # ids: the experiment and the tuned row (a replicated row: its base)
        cells = tuning_candidates(cfg, ids["experiment"], ids["row"])
        scored = tuning_name(ids["experiment"])
        return {"tuning": exp["tuning"], "candidates": {c: {
            "sample": job_digest(cfg, "sample", experiment=scored, row=c),
            "evaluate": job_digest(cfg, "evaluate", experiment=scored, row=c)} for c in cells}}
    if stage == "sample":
        row = exp["rows"][ids["row"]]
        out = {"model": cfg["model"], "runs": _runs_of(cfg, [row]), "row": row, "sampling": exp["sampling"],
               "codec": cfg["data"]["codec"], "counted_ops": sorted(COUNTED_OPS)}  # GFLOPs per step, too
        if exp.get("prompts") is not None:  # a text-to-image experiment's own prompt set
            out["prompts"] = exp["prompts"]
        if row.get("tune"):  # its arguments: the choice of its tuning job
            out["tuning"] = job_config(cfg, "tune", experiment=ids["experiment"], row=tuned_base(ids["row"], row))
        return out
    if stage == "evaluate":
        ref = distance_reference(cfg, ids["experiment"], ids["row"])
        out = {"metrics": metrics_identity(exp["metrics"]), "row": exp["rows"][ids["row"]],
               "distance_to": None if ref is None else {"row": ref, "sample": job_config(
                   cfg, "sample", experiment=ids["experiment"], row=ref)}}
        if exp.get("prompts") is not None:  # a text-to-image experiment's own prompt set
            out["prompts"] = exp["prompts"]
        return out
    rows = {r: source_row(cfg, ids["experiment"], r) for r in exp["rows"]}
    if stage == "report":
        return {"experiment": {**exp, "metrics": metrics_identity(exp["metrics"])}, "rows": list(rows.values()),
                "runs": _runs_of(cfg, rows.values())}
    raise ValueError(f"unknown stage {stage!r}")


def job_digest(cfg: dict, stage: str, **ids) -> str:
    return digest(job_config(cfg, stage, **ids))


def read_made(cfg: dict, stage: str, path: str, **ids) -> dict:
    """The JSON record a job of ``stage`` wrote at ``path``, checked against the digest this config
    gives that job: a record made under other settings is never used (the error names the command
    that remakes it)."""
    record = read_json(path)
    want = job_digest(cfg, stage, **ids)
    if record.get("config_digest") != want:
        raise ConfigError(f"{path!r} was made under other settings than config {cfg['name']!r} gives its {stage} "
                          f"job ({record.get('config_digest')} vs {want}); remake it first: snakemake {path} "
                          f"--config preset={cfg['name']}.")
    return record


def masked_loss(run: dict) -> dict:
    """A masking run's MAE target as it trains (train.mae_target, else the default: Eq. A4 as printed),
    so that runs trained before the default changed from the clean-data target rerun; {} otherwise."""
    if run["sparsity"] != "masking":
        return {}
    return {"mae_target": run["train"].get("mae_target", TrainConfig.mae_target)}


def resume_key(cfg: dict, run: str) -> dict:
    """What a run's training state depends on: everything but the options that may grow (steps, ...)."""
    r = copy.deepcopy(cfg["runs"][run])
    r.pop("label", None)
    for k in RESUMABLE_KEYS:
        r["train"].pop(k, None)
    data = {**{k: v for k, v in data_identity(cfg["data"]).items() if k != "root"}, "codec": cfg["data"]["codec"]}
    data["encode"] = {k: cfg["data"]["encode"][k] for k in ("flip", "dtype", "seed")}
    if "text_encoder" in cfg["data"]:  # other prompt features: another model
        data["text_encoder"] = text_encoder_identity(cfg["data"])
    return {"model": cfg["model"], "run": r, "data": data, **masked_loss(cfg["runs"][run])}
