# Reports: per table or figure of the config's experiments, a rule that runs its notebook
# (report_<experiment>) and the target named after it (`snakemake table1`, `snakemake fig6`).
# Tables -> results/<config>/tables/<name>.csv, .md, .tex; figures -> figures/<name>.png, .pdf and
# the data behind them as .csv.

for _exp in CFG["experiments"]:

    rule:
        name:
            f"report_{_exp}"
        input:
            **X.stage_inputs(CFG, "report", experiment=_exp),
        output:
            **X.stage_outputs(CFG, "report", experiment=_exp),
        log:
            notebook=L.notebook("report", _exp),
            txt=L.log("report", _exp),
        benchmark:
            L.benchmark("report", _exp)
        params:
            preset=PRESET,
            args=X.notebook_args(CFG, OVERRIDES, "report", experiment=_exp),
        threads: X.resources(CFG, "report")["threads"]
        resources:
            **X.rule_resources(CFG, "report"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            PAPERMILL

    rule:
        name:
            _exp
        localrule: True
        input:
            **X.stage_outputs(CFG, "report", experiment=_exp),
