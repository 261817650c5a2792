"""Write the thin report notebooks of the tables and figures (and the classifier stage) in the
house format: a markdown header, a `parameters` cell, setup, one call into src/, a display.

    .venv/bin/python scripts/new_report_notebooks.py          # (re)writes the notebooks listed below

Edit a notebook in JupyterLab afterwards as you like; rerunning this overwrites the listed ones."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PARAMS = '''preset = "smoke"        # config preset (workflow/config/<name>.yaml) or the path of a YAML file
overrides = {}          # config keys that replace the preset's (what `snakemake --config` adds)
threads = 2             # torch CPU threads
progress = True         # progress bars
config_digest = None    # set by the workflow: the configuration this job was planned with
build_missing = True    # first run any missing upstream stage here (the workflow sets False)'''

SETUP = '''from sparse_guidance import experiments as X, pipeline as P, report as R

cfg = P.setup(preset, overrides, threads)   # works from the repository root; validates the config
X.check_digest(cfg, '{stage}', config_digest{ids})
if build_missing:
    P.build_missing(cfg, '{stage}'{ids}, progress=progress)'''

TABLE_BODY = '''rows = R.write_report(cfg, experiment)
from IPython.display import Markdown
Markdown(open(X.Layout(cfg).table(experiment, "md")).read())'''

FIGURE_BODY = '''rows = R.write_report(cfg, experiment)     # figures/<experiment>.png, .pdf and .csv
from IPython.display import Image
Image(X.Layout(cfg).figure(experiment, "png"))'''


NOTEBOOKS = {
    "08_classifier.ipynb": ("# Fashion-MNIST classifier (a cheap feature network for figure grids)",
                            "Trains the small CNN of `metrics/classifier.py` on the training images and computes its "
                            "reference statistics on the test images: `results/<config>/classifier/`. Figures whose "
                            "experiment sets `metrics: {extractor: classifier}` measure FD (a Fréchet distance in "
                            "these features, labelled as such, not Inception FID) and class accuracy with it.",
                            "classifier", None,
                            '''info = P.train_classifier_stage(cfg, progress=progress)
info'''),
    "11_table1.ipynb": ("# Table 1: CFG vs SG on a masked and a routed model",
                        "The paper's Table 1 (§4.2): CFG and SG on models trained with token masking (MaskDiT) and "
                        "token routing (TREAD), FID, sFID, IS, precision and recall, ours beside the paper's. Writes "
                        "`results/<config>/tables/table1.csv`, `.md` and `.tex`.", "report", "table1", TABLE_BODY),
    "12_table3.ipynb": ("# Table 3: our SG_FID row among the literature",
                        "The paper's Table 3: the literature rows (data with their sources in "
                        "`workflow/data/table3_literature.yaml`), the paper's own rows, and ours at this config's "
                        "scale. Writes `results/<config>/tables/table3.csv`, `.md` and `.tex`.", "report", "table3",
                        TABLE_BODY),
    "20_fig1.ipynb": ("# Figure 1: quality vs cost of guidance", "Figure 1 (right, top): FID against GFLOPs per "
                      "sampling step for each guidance method on the routed model; SG highlighted. Below, the "
                      "unguided (conditional), CFG and SG samples from the same noise (Fig. 1, left).", "report",
                      "fig1", FIGURE_BODY + '''

import matplotlib.pyplot as plt
from sparse_guidance import figure_reports as FR, figures as F
F.labelled_grid({r["method"]: FR.row_images(cfg, r["source"], 10) for r in FR.figure_rows(cfg, experiment)},
                ncols=10, title="same noise, every method");'''),
    "21_fig2.ipynb": ("# Figure 2: CFG on dense and sparse models, and SG", "Figure 2: FID against the guidance "
                      "scale ω for CFG on a dense and on a token-sparse model, and SG on the sparse one.", "report",
                      "fig2", FIGURE_BODY),
    "22_fig4.ipynb": ("# Figure 4: inference-time sparsity without guidance", "Figure 4: unguided samples (same "
                      "noise) as the inference-time sparsity γ grows; the figure's CSV holds FID per γ, plotted "
                      "below.", "report", "fig4", FIGURE_BODY + '''

from sparse_guidance import figures as F
F.gamma_sweep(rows, x="gamma", y="fid", title="quality vs γ (unguided)");'''),
    "23_fig5.ipynb": ("# Figure 5: quality over training: CFG, CFG after dense finetuning, SG",
                      "Figure 5 (left): FID over training iterations, each method at its best guidance scale ω "
                      "(dense finetuning runs branch from the sparse run's snapshots). Below: samples with SG over "
                      "training (Fig. 5, right).", "report", "fig5", FIGURE_BODY + '''

from sparse_guidance import figure_reports as FR, figures as F
sg = sorted((r for r in FR.figure_rows(cfg, experiment) if "SG" in r["method"]), key=lambda r: r["iteration"])
best = {r["iteration"]: r for r in F.best_over(sg, key="fid", by="iteration")}
F.labelled_grid({f"{it:,} it.": FR.row_images(cfg, r["source"], 8) for it, r in best.items()}, ncols=8,
                title="SG samples over training");'''),
    "24_fig6.ipynb": ("# Figure 6: FID over (γ_strong, γ_weak) and ω", "Figure 6: FID heatmaps over the two "
                      "branches' sparsity for several guidance scales ω (AutoGuidance + SG), the best cell of each "
                      "panel boxed.", "report", "fig6", FIGURE_BODY),
    "25_fig7.ipynb": ("# Figure 7: distance to the conditional prediction; AutoGuidance + SG by checkpoint age",
                      "Figure 7. Left: how far guided samples move from the conditional (unguided) prediction of "
                      "the same noise, CFG vs SG (LPIPS where its weights are available offline, else a feature "
                      "cosine distance, named in the plot). Right: AutoGuidance + SG with auxiliary checkpoints of "
                      "several ages, best FID per γ_strong.", "report", "fig7", FIGURE_BODY),
    "26_fig8.ipynb": ("# Figure 8: SG on routing and masking models", "Figure 8: FID heatmaps over (γ_strong, "
                      "γ_weak) per ω, for a routed and a masked model (rows).", "report", "fig8", FIGURE_BODY),
    "30_sample_grids.ipynb": ("# Figures A5–A9: sample grids", "Uncurated samples, one labelled row per method "
                              "and the same noise in every column: A5/A6 unguided, SG, AG and CFG; A7–A9 SG_FLOPS "
                              "and SG_FID. Set `experiment` to the figure.", "report", "figA5", FIGURE_BODY),
}


def cell(kind, source, i, tags=None):
    c = {"cell_type": kind, "id": f"{i}", "metadata": {"tags": tags} if tags else {}, "source": source.splitlines(True)}
    if kind == "code":
        c.update(execution_count=None, outputs=[])
        c = {k: c[k] for k in ("cell_type", "execution_count", "id", "metadata", "outputs", "source")}
    return c


def notebook(name, title, text, stage, experiment, body):
    prefix = name.split("_")[0]
    params = PARAMS + (f'\nexperiment = "{experiment}"' + ("   # figA5 ... figA9" if stage == "report" and
                                                           experiment == "figA5" else "") if experiment else "")
    ids = ", experiment=experiment" if experiment else ""
    md = (f"{title}\n\n{text}\n\nRun by the workflow (`snakemake`), or on its own: the defaults below use the "
          "`smoke` preset and build whatever input is missing.")
    cells = [cell("markdown", md, f"{prefix}-0"), cell("code", params, f"{prefix}-1", ["parameters"]),
             cell("code", SETUP.format(stage=stage, ids=ids), f"{prefix}-2"), cell("code", body, f"{prefix}-3")]
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"}, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def main(names=None):
    for name, spec in NOTEBOOKS.items():
        if names and name not in names:
            continue
        path = ROOT / "notebooks" / name
        path.write_text(json.dumps(notebook(name, *spec), indent=1, ensure_ascii=False) + "\n")
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
