# Reports: each table or figure is its notebook, run on the results of its own rows (no GPU). Tables
# -> results/<preset>/tables/<name>.csv, .md, .tex; figures -> figures/<name>.png, .pdf and the
# data behind them as .csv. `snakemake table1`, `snakemake fig6`: the target named after each.
# `snakemake claims`: tables/claims.csv, .md, .tex, each claim of the paper tested on those results.

REPORT_NOTEBOOKS = {"table1": "notebooks/11_table1.ipynb", "table2": "notebooks/10_table2.ipynb",
                    "table3": "notebooks/12_table3.ipynb", "fig1": "notebooks/20_fig1.ipynb",
                    "fig2": "notebooks/21_fig2.ipynb", "fig4": "notebooks/22_fig4.ipynb",
                    "fig5": "notebooks/23_fig5.ipynb", "fig6": "notebooks/24_fig6.ipynb",
                    "fig7": "notebooks/25_fig7.ipynb", "fig8": "notebooks/26_fig8.ipynb",
                    **{f: "notebooks/30_sample_grids.ipynb" for f in ("figA5", "figA6", "figA7", "figA8", "figA9")}}
IMAGE_FIGURES = ("fig4", "figA5", "figA6", "figA7", "figA8", "figA9",  # figures that show samples
                 "fig9", "figA2", "figA3", "figA4")


rule report_table:
    wildcard_constraints:
        experiment="|".join(map(re.escape, C.reported(CFG))),  # the text-to-image track's: t2i_report_table
    input:
        unpack(report_inputs),
        notebook=lambda w: REPORT_NOTEBOOKS[w.experiment],
    output:
        csv=report(f"{R}/tables/{{experiment}}.csv", caption="../report/table.rst", category="Tables",
                   labels={"table": "{experiment}", "file": "CSV"}),
        md=f"{R}/tables/{{experiment}}.md",
        tex=f"{R}/tables/{{experiment}}.tex",
    log:
        notebook=f"{R}/notebooks/report-{{experiment}}.ipynb",
        txt=f"{R}/logs/report-{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/report-{{experiment}}.tsv"
    params:
        ids=ids(),
        digest=digest("report"),
    threads: C.resources(CFG, "report")["threads"]
    resources:
        **C.rule_resources(CFG, "report"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule report_figure:
    wildcard_constraints:
        experiment="|".join(map(re.escape, C.reported(CFG))),  # the text-to-image track's: t2i_report_figure
    input:
        unpack(report_inputs),
        notebook=lambda w: REPORT_NOTEBOOKS[w.experiment],
    output:
        png=report(f"{R}/figures/{{experiment}}.png", caption="../report/figure.rst", category="Figures",
                   labels={"figure": "{experiment}", "file": "plot"}),
        pdf=f"{R}/figures/{{experiment}}.pdf",
        csv=report(f"{R}/figures/{{experiment}}.csv", caption="../report/figure.rst", category="Figures",
                   labels={"figure": "{experiment}", "file": "data"}),
    log:
        notebook=f"{R}/notebooks/report-{{experiment}}.ipynb",
        txt=f"{R}/logs/report-{{experiment}}.log",
    benchmark:
        f"{R}/benchmarks/report-{{experiment}}.tsv"
    params:
        ids=ids(),
        digest=digest("report"),
    threads: C.resources(CFG, "report")["threads"]
    resources:
        **C.rule_resources(CFG, "report"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


rule claims:  # `snakemake claims`: the paper's claims tested on the tables and figures they rest on
    input:
        unpack(claims_inputs),
        notebook="notebooks/15_claims.ipynb",
    output:
        csv=report(f"{R}/tables/claims.csv", caption="../report/claims.rst", category="Claims",
                   labels={"table": "claims", "file": "CSV"}),
        md=f"{R}/tables/claims.md",
        tex=f"{R}/tables/claims.tex",
    log:
        notebook=f"{R}/notebooks/report-claims.ipynb",
        txt=f"{R}/logs/report-claims.log",
    benchmark:
        f"{R}/benchmarks/report-claims.tsv"
    params:
        ids=ids(),
        digest=digest("claims"),
    threads: C.resources(CFG, "report")["threads"]
    resources:
        **C.rule_resources(CFG, "report"),
    conda:
        f"../../{CONDA_ENV}"
    shell:
        NOTEBOOK


for _exp in [*C.reported(CFG), *(T2I["experiments"] if T2I else [])]:

    rule:
        name:
            _exp
        localrule: True
        input:
            report_outputs(_exp),
