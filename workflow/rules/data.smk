# Data: check the dataset, encode the training images to latents, reference statistics for metrics.


rule prepare_data:
    input:
        **X.stage_inputs(CFG, "prepare_data"),
    output:
        **X.stage_outputs(CFG, "prepare_data"),
    log:
        notebook=L.notebook("prepare_data"),
        txt=L.log("prepare_data"),
    benchmark:
        L.benchmark("prepare_data")
    params:
        preset=PRESET,
        args=X.notebook_args(CFG, OVERRIDES, "prepare_data"),
    threads: X.resources(CFG, "prepare_data")["threads"]
    resources:
        **X.rule_resources(CFG, "prepare_data"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL


rule encode_latents:
    input:
        **X.stage_inputs(CFG, "encode_latents"),
    output:
        **X.stage_outputs(CFG, "encode_latents"),
    log:
        notebook=L.notebook("encode_latents"),
        txt=L.log("encode_latents"),
    benchmark:
        L.benchmark("encode_latents")
    params:
        preset=PRESET,
        args=X.notebook_args(CFG, OVERRIDES, "encode_latents"),
    threads: X.resources(CFG, "encode_latents")["threads"]
    resources:
        **X.rule_resources(CFG, "encode_latents"),
    priority: 10  # on the critical path (training waits for it); reference statistics are not
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL


rule reference_stats:
    input:
        **X.stage_inputs(CFG, "reference_stats"),
    output:
        **X.stage_outputs(CFG, "reference_stats"),
    log:
        notebook=L.notebook("reference_stats"),
        txt=L.log("reference_stats"),
    benchmark:
        L.benchmark("reference_stats")
    params:
        preset=PRESET,
        args=X.notebook_args(CFG, OVERRIDES, "reference_stats"),
    threads: X.resources(CFG, "reference_stats")["threads"]
    resources:
        **X.rule_resources(CFG, "reference_stats"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        PAPERMILL


# The Fashion-MNIST classifier that figure grids measure with (metrics.extractor: classifier) and its
# reference statistics; only configs that use it have this job.
if "classifier" in CFG:

    rule classifier:
        input:
            **X.stage_inputs(CFG, "classifier"),
        output:
            **X.stage_outputs(CFG, "classifier"),
        log:
            notebook=L.notebook("classifier"),
            txt=L.log("classifier"),
        benchmark:
            L.benchmark("classifier")
        params:
            preset=PRESET,
            args=X.notebook_args(CFG, OVERRIDES, "classifier"),
        threads: X.resources(CFG, "classifier")["threads"]
        resources:
            **X.rule_resources(CFG, "classifier"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            PAPERMILL
