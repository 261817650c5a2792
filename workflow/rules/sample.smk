# Sampling: one job per row of an experiment (a guidance recipe on the row's run, with an auxiliary
# checkpoint where the recipe has one) -> samples/<experiment>/<row>.npz (ADM format) and .json.
# A row with tune: samples with the arguments its tune job chose (tuning/<experiment>/<row>.json) among
# its candidates, the rows of <experiment>.tune, sampled and scored on the tuning's validation seed.


rule sample:
    input:
        unpack(sample_inputs),
        notebook="notebooks/05_sample.ipynb",
    output:
        npz=f"{R}/samples/{{experiment}}/{{row}}.npz",
        info=f"{R}/samples/{{experiment}}/{{row}}.json",
    log:
        notebook=f"{R}/notebooks/sample-{{experiment}}-{{row}}.ipynb",
        txt=f"{R}/logs/sample-{{experiment}}-{{row}}.log",
    benchmark:
        f"{R}/benchmarks/sample-{{experiment}}-{{row}}.tsv"
    params:
        ids=ids(),
        digest=digest("sample"),
    threads: C.resources(CFG, "sample")["threads"]
    resources:
        **C.rule_resources(CFG, "sample"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule tune:
    input:
        unpack(tune_inputs),
        notebook="notebooks/06_tune.ipynb",
    output:
        choice=f"{R}/tuning/{{experiment}}/{{row}}.json",
        png=f"{R}/tuning/{{experiment}}/{{row}}.png",
        pdf=f"{R}/tuning/{{experiment}}/{{row}}.pdf",
        scores=f"{R}/tuning/{{experiment}}/{{row}}.csv",   # the plotted scores, one line per candidate
    log:
        notebook=f"{R}/notebooks/tune-{{experiment}}-{{row}}.ipynb",
        txt=f"{R}/logs/tune-{{experiment}}-{{row}}.log",
    benchmark:
        f"{R}/benchmarks/tune-{{experiment}}-{{row}}.tsv"
    params:
        ids=ids(),
        digest=digest("tune"),
    threads: C.resources(CFG, "report")["threads"]
    resources:
        **C.rule_resources(CFG, "report"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK
