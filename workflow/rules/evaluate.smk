# Evaluation: metrics of every sampled row against the reference statistics of its feature network
# (Fig. 7's rows also their paired distance to the conditional row). GFLOPs per sampling step are
# counted by the sampling job (samples/<experiment>/<row>.json).


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
