# Input functions: only where a job's inputs depend on its row's configuration. Everything else
# names its paths in the rule itself.


def ids(**fixed):
    """params.ids of a job: its wildcards (and fixed ids) as JSON for the notebook's parameters."""
    return lambda w: json.dumps({**dict(w.items()), **fixed}, sort_keys=True)


def digest(stage, cfg=None, **fixed):
    """params.digest of a job: the digest of the config (CFG, or a track's) it depends on (Snakemake
    reruns it on a change)."""
    return lambda w: job_digest(cfg or CFG, stage, **{**dict(w.items()), **fixed})


def weights(run, step=None, cfg=None):
    """A run's final checkpoint (step None) or one of its kept snapshots (of CFG or of a track's config)."""
    root = (cfg or CFG)["results_dir"]
    return f"{root}/runs/{run}/last.pt" if step is None else f"{root}/runs/{run}/step-{int(step):07d}.pt"


def sample_inputs(w, cfg=None):
    """The networks a row samples with: its run at its step, and the auxiliary snapshot of AG / SG_FID."""
    row = C.row_spec(cfg or CFG, w.experiment, w.row)
    inputs = {"main": weights(row["run"], row["step"], cfg)}
    if row.get("aux"):
        inputs["aux"] = weights(row["aux"]["run"], row["aux"]["step"], cfg)
    if row.get("tune"):  # a tuned row samples with the arguments its tune job chose
        inputs["tuning"] = f"{(cfg or CFG)['results_dir']}/tuning/{w.experiment}/{C.tuned_base(w.row, row)}.json"
    return inputs


def tune_inputs(w):
    """The scores (and sample descriptions) of a tuned row's candidates, rows of <experiment>.tune."""
    scored = C.tuning_name(w.experiment)
    return {f"{kind}_{c}": f"{R}/{kind}/{scored}/{c}.json"
            for c in C.tuning_candidates(CFG, w.experiment, w.row) for kind in ("metrics", "samples")}


def existing(path):
    """A data file as an input (an edit reruns its job) where it exists; where not, the job itself
    says what is missing (a dry run of the paper preset, whose paths are placeholders, still plans)."""
    return [path] if path and Path(path).expanduser().is_file() else []


def prompt_file(name, cfg):
    """A text-to-image prompt set's file (GenEval's metadata, a tagged JSON Lines file); none if drawn."""
    spec = C.prompt_set_spec(cfg, name)
    return [] if spec.get("format", "scenes") == "scenes" else existing(spec.get("path"))


def prompt_inputs(w, cfg):
    """The prompt set a text-to-image experiment samples: its prompts (and metadata) and their features."""
    name = C.prompt_set(cfg, w.experiment)
    layout = Layout(cfg)
    return {"prompts": layout.prompts_file(name), "text": layout.text_features(C.eval_split(name))}


def evaluate_inputs(w):
    """The reference statistics of the row's feature network; Fig. 7's rows tagged role: compare also
    read the samples of the conditional row they are compared with."""
    if C.experiment(CFG, w.experiment)["metrics"]["extractor"] == "classifier":
        inputs = {"reference": f"{R}/classifier/reference.npz", "classifier": f"{R}/classifier/classifier.pt"}
    else:
        inputs = {"reference": f"{R}/data/reference.npz"}
    conditional = C.distance_reference(CFG, w.experiment, w.row)
    if conditional is not None:
        inputs["conditional"] = f"{R}/samples/{w.experiment}/{conditional}.npz"
    return inputs


def report_inputs(w, cfg=None):
    """The metrics of every row an experiment shows (a same_as row: the row it names), their samples'
    descriptions (with GFLOPs per step) and, for figures that show images, the samples; of CFG or of
    a track's config."""
    cfg = cfg or CFG
    root, inputs = cfg["results_dir"], {}
    for row in cfg["experiments"][w.experiment]["rows"]:
        e, r = C.resolve_source(cfg["experiments"], w.experiment, row)
        inputs[f"metrics_{row}"] = f"{root}/metrics/{e}/{r}.json"
        inputs[f"samples_{row}"] = f"{root}/samples/{e}/{r}.json"
        if w.experiment in IMAGE_FIGURES:
            inputs[f"images_{row}"] = f"{root}/samples/{e}/{r}.npz"
    literature = cfg["experiments"][w.experiment].get("literature")
    if literature:  # the literature rows a table shows (an edit redraws it)
        inputs["literature"] = literature
    return inputs


def claims_inputs(w):
    """The results of every experiment the claims rest on (their tables' and figures' inputs)."""
    inputs = {}
    for e in C.CLAIM_EXPERIMENTS:
        if e in CFG["experiments"]:
            inputs.update({f"{e}_{k}": v for k, v in report_inputs(SimpleNamespace(experiment=e)).items()
                           if not k.startswith("images_")})
    return inputs


def report_outputs(experiment):
    if experiment in C.TABLES or experiment in C.TEXT_TABLES:
        return [f"{R}/tables/{experiment}.{ext}" for ext in ("csv", "md", "tex")]
    return [f"{R}/figures/{experiment}.{ext}" for ext in ("png", "pdf", "csv")]
