# Reports: per table or figure, a rule that runs its notebook (report_<experiment>) and the target
# named after it. Defined for the experiments the config holds.

if "table2" in CFG["experiments"]:

    rule report_table2:
        input:
            **X.stage_inputs(CFG, "report", experiment="table2"),
        output:
            **X.stage_outputs(CFG, "report", experiment="table2"),
        log:
            notebook=L.notebook("report", "table2"),
            txt=L.log("report", "table2"),
        benchmark:
            L.benchmark("report", "table2")
        params:
            preset=PRESET,
            args=X.notebook_args(CFG, OVERRIDES, "report", experiment="table2"),
        threads: X.resources(CFG, "report")["threads"]
        resources:
            **X.rule_resources(CFG, "report"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            PAPERMILL

    # Table 2 (paper §4.2): unguided, CFG, AG, ICG, SG_FLOPS and SG_FID on one routed run ->
    # results/<config>/tables/table2.csv, .md and .tex.
    rule table2:
        input:
            **X.stage_outputs(CFG, "report", experiment="table2"),
