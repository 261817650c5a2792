# Training: one rule per run of the config (train_<run>), because each run declares its own
# snapshot files (train.save_steps: the early checkpoints AutoGuidance and SG_FID guide with, the
# series of Fig. 5). A run with `init: {run, step}` starts from another run's snapshot: the dense
# finetuning stage (finetune_<run>, train.gamma 0, the paper's lr 1e-5).
# A run with `from: {checkpoint, format}` is not trained: import_<run> converts the checkpoint
# (released MaskDiT, SiT, DiT or TREAD weights) to runs/<run>/last.pt, keeping its format, whose
# prediction the sampling stage converts to our velocity (models/adapters.py).
# The resumable state lives in runs/<run>/state/ (not an output, so a rerun or a cluster retry
# continues from its last checkpoint); the declared outputs are published from it at the end.

for _run, _spec in CFG["runs"].items():
    _init = _spec.get("init")
    _family = "finetune" if _init else "train"
    if _spec.get("from"):  # a released checkpoint: imported (converted to our layout), not trained
        continue

    rule:
        name:
            f"{_family}_{_run}"
        input:
            notebook="notebooks/04_train.ipynb",
            latents=f"{R}/latents/train/manifest.json",
            **({"init": weights(_init["run"], _init["step"])} if _init else {}),
        output:
            checkpoint=f"{R}/runs/{_run}/last.pt",
            summary=f"{R}/runs/{_run}/summary.json",
            **{f"step_{s}": weights(_run, s) for s in sorted(set(_spec["train"].get("save_steps", [])))},
        log:
            notebook=f"{R}/notebooks/train-{_run}.ipynb",
            txt=f"{R}/logs/train-{_run}.log",
        benchmark:
            f"{R}/benchmarks/train-{_run}.tsv"
        params:
            ids=ids(run=_run),
            digest=digest("train", run=_run),
        threads: C.resources(CFG, _family)["threads"]
        resources:
            **C.rule_resources(CFG, _family),
        priority: C.train_priority(CFG, _run)  # runs more rows wait for train first
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK


for _run, _spec in CFG["runs"].items():
    if not _spec.get("from"):
        continue

    rule:
        name:
            f"import_{_run}"
        input:
            notebook="notebooks/04_import_checkpoint.ipynb",
            checkpoint=existing(_spec["from"]["checkpoint"]),  # missing: the job says where to get it
        output:
            checkpoint=f"{R}/runs/{_run}/last.pt",
            summary=f"{R}/runs/{_run}/summary.json",
        log:
            notebook=f"{R}/notebooks/import-{_run}.ipynb",
            txt=f"{R}/logs/import-{_run}.log",
        benchmark:
            f"{R}/benchmarks/import-{_run}.tsv"
        params:
            ids=ids(run=_run),
            digest=digest("train", run=_run),
        threads: C.resources(CFG, "report")["threads"]
        resources:
            **C.rule_resources(CFG, "report"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK
