# Evaluation: metrics of every sampled row against the reference statistics, and GFLOPs per
# sampling step of every row of every experiment, in one job (counted on the model, no weights needed).


rule evaluate:
    input:
        unpack(lambda w: X.stage_inputs(CFG, "evaluate", experiment=w.experiment, row=w.row)),
    output:
        **X.stage_outputs(CFG, "evaluate", experiment="{experiment}", row="{row}"),
    log:
        notebook=L.notebook("evaluate", "{experiment}", "{row}"),
        txt=L.log("evaluate", "{experiment}", "{row}"),
    benchmark:
        L.benchmark("evaluate", "{experiment}", "{row}")
    params:
        preset=PRESET,
        args=lambda w: X.notebook_args(CFG, OVERRIDES, "evaluate", experiment=w.experiment, row=w.row),
    threads: X.resources(CFG, "evaluate")["threads"]
    resources:
        **X.rule_resources(CFG, "evaluate"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL


rule flops:
    input:
        **X.stage_inputs(CFG, "flops"),
    output:
        **X.stage_outputs(CFG, "flops"),
    log:
        notebook=L.notebook("flops"),
        txt=L.log("flops"),
    benchmark:
        L.benchmark("flops")
    params:
        preset=PRESET,
        args=X.notebook_args(CFG, OVERRIDES, "flops"),
    threads: X.resources(CFG, "flops")["threads"]
    resources:
        **X.rule_resources(CFG, "flops"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL
