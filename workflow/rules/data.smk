# Data: check the dataset, encode the training images to latents, reference statistics for metrics.


rule prepare_data:
    input:
        notebook="notebooks/01_prepare_data.ipynb",
    output:
        dataset=f"{R}/data/dataset.json",
    log:
        notebook=f"{R}/notebooks/prepare_data.ipynb",
        txt=f"{R}/logs/prepare_data.log",
    benchmark:
        f"{R}/benchmarks/prepare_data.tsv"
    params:
        ids=ids(),
        digest=digest("prepare_data"),
    threads: C.resources(CFG, "prepare_data")["threads"]
    resources:
        **C.rule_resources(CFG, "prepare_data"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule encode_latents:
    input:
        notebook="notebooks/02_encode_latents.ipynb",
        dataset=f"{R}/data/dataset.json",
    output:
        manifest=f"{R}/latents/train/manifest.json",
    log:
        notebook=f"{R}/notebooks/encode_latents.ipynb",
        txt=f"{R}/logs/encode_latents.log",
    benchmark:
        f"{R}/benchmarks/encode_latents.tsv"
    params:
        ids=ids(),
        digest=digest("encode_latents"),
    threads: C.resources(CFG, "encode_latents")["threads"]
    resources:
        **C.rule_resources(CFG, "encode_latents"),
    priority: 10  # on the critical path (training waits for it); reference statistics are not
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule reference_stats:
    input:
        notebook="notebooks/03_reference_stats.ipynb",
        # ADM's reference batch (data.reference.npz) needs no dataset check: released weights sample
        # and score without the training images (preset paper-released)
        dataset=[] if CFG["data"]["reference"]["npz"] else f"{R}/data/dataset.json",
    output:
        reference=f"{R}/data/reference.npz",
        info=f"{R}/data/reference.json",
    log:
        notebook=f"{R}/notebooks/reference_stats.ipynb",
        txt=f"{R}/logs/reference_stats.log",
    benchmark:
        f"{R}/benchmarks/reference_stats.tsv"
    params:
        ids=ids(),
        digest=digest("reference_stats"),
    threads: C.resources(CFG, "reference_stats")["threads"]
    resources:
        **C.rule_resources(CFG, "reference_stats"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


# The Fashion-MNIST classifier that figure grids measure with (metrics.extractor: classifier) and its
# reference statistics; only configs that use it have this job.
if "classifier" in CFG:

    rule classifier:
        input:
            notebook="notebooks/08_classifier.ipynb",
            dataset=f"{R}/data/dataset.json",
        output:
            weights=f"{R}/classifier/classifier.pt",
            reference=f"{R}/classifier/reference.npz",
            info=f"{R}/classifier/info.json",
        log:
            notebook=f"{R}/notebooks/classifier.ipynb",
            txt=f"{R}/logs/classifier.log",
        benchmark:
            f"{R}/benchmarks/classifier.tsv"
        params:
            ids=ids(),
            digest=digest("classifier"),
        threads: C.resources(CFG, "classifier")["threads"]
        resources:
            **C.rule_resources(CFG, "classifier"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK
