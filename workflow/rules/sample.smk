# Sampling: one job per row of an experiment (a guidance recipe on the experiment's run, with an
# auxiliary checkpoint where the recipe has one) -> samples/<experiment>/<row>.npz (ADM format).


rule sample:
    input:
        unpack(lambda w: X.stage_inputs(CFG, "sample", experiment=w.experiment, row=w.row)),
    output:
        **X.stage_outputs(CFG, "sample", experiment="{experiment}", row="{row}"),
    log:
        notebook=L.notebook("sample", "{experiment}", "{row}"),
        txt=L.log("sample", "{experiment}", "{row}"),
    benchmark:
        L.benchmark("sample", "{experiment}", "{row}")
    params:
        preset=PRESET,
        args=lambda w: X.notebook_args(CFG, OVERRIDES, "sample", experiment=w.experiment, row=w.row),
    threads: X.resources(CFG, "sample")["threads"]
    resources:
        **X.rule_resources(CFG, "sample"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL
