# Training: one rule per run of the config (train_<run>), because each run declares its own
# snapshot files (train.save_steps: the early checkpoints AutoGuidance and SG_FID guide with, the
# series of Fig. 5). A run with `init: {run, step}` starts from another run's snapshot: the dense
# finetuning stage (finetune_<run>, train.gamma 0, the paper's lr 1e-5).
# The resumable state lives in runs/<run>/state/ (not an output, so a rerun or a cluster retry
# continues from its last checkpoint); the declared outputs are published from it at the end.

for _run in CFG["runs"]:

    rule:
        name:
            f"{'finetune' if CFG['runs'][_run].get('init') else 'train'}_{_run}"
        input:
            **X.stage_inputs(CFG, "train", run=_run),
        output:
            **X.stage_outputs(CFG, "train", run=_run),
        log:
            notebook=L.notebook("train", _run),
            txt=L.log("train", _run),
        benchmark:
            L.benchmark("train", _run)
        params:
            preset=PRESET,
            args=X.notebook_args(CFG, OVERRIDES, "train", run=_run),
        threads: X.resources(CFG, X.train_family(CFG, _run))["threads"]
        resources:
            **X.rule_resources(CFG, X.train_family(CFG, _run)),
        priority: X.train_priority(CFG, _run)  # runs more rows wait for train first
        conda:
            f"../../{CONDA_ENV}"
        shell:
            PAPERMILL
