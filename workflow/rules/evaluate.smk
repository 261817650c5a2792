# Evaluation: metrics of every sampled row against the reference statistics of its feature network
# (Fig. 7's rows also their paired distance to the conditional row), and GFLOPs per sampling step of
# every row of an experiment (counted on the model; no weights needed).


rule evaluate:
    input:
        unpack(evaluate_inputs),
        notebook="notebooks/06_evaluate.ipynb",
        samples=f"{R}/samples/{{experiment}}/{{row}}.npz",
    output:
        metrics=f"{R}/metrics/{{experiment}}/{{row}}.json",
    log:
        notebook=f"{R}/notebooks/evaluate-{{experiment}}-{{row}}.ipynb",
        txt=f"{R}/logs/evaluate-{{experiment}}-{{row}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate-{{experiment}}-{{row}}.tsv"
    params:
        ids=ids(),
        digest=digest("evaluate"),
    threads: C.resources(CFG, "evaluate")["threads"]
    resources:
        **C.rule_resources(CFG, "evaluate"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule flops:
    input:
        notebook="notebooks/07_flops.ipynb",
    output:
        flops=f"{R}/flops/{{experiment}}.json",
    log:
        notebook=f"{R}/notebooks/flops-{{experiment}}.ipynb",
        txt=f"{R}/logs/flops-{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/flops-{{experiment}}.tsv"
    params:
        ids=ids(),
        digest=digest("flops"),
    threads: C.resources(CFG, "flops")["threads"]
    resources:
        **C.rule_resources(CFG, "flops"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK
