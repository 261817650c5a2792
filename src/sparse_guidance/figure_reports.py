"""The paper's ImageNet figures from the workflow's results: figures/<fig>.png, .pdf and .csv.

    write_figure(cfg, "fig6")     # reads metrics/, flops/, samples/ of results_dir; returns the data rows

Each figure is a function of (cfg, experiment) -> (matplotlib Figure, data rows); the rows (one per
plotted point or cell, with every setting and metric) are written beside the figure as CSV, so a
reader can re-plot or tabulate them. What each figure plots is data in the config: the experiment's
rows and grids carry tags (omega, gamma_strong, gamma_weak, step, aux_step, grid, model, ...), and
``plot:`` holds options (clip, ncols, classes, metric).

Figure 1 (right): FID vs GFLOPs per step of the guidance methods. Figure 2: FID vs ω for a dense and
a sparse model with CFG, and the sparse model with SG. Figure 4: samples (and FID) as the inference
sparsity γ grows, unguided. Figure 5: FID over training iterations, each method at its best ω.
Figures 6 and 8: FID heatmaps over (γ_strong, γ_weak), one panel per ω (Fig. 8: routing and masking
rows). Figure 7: distance of guided samples to the conditional prediction (left) and AutoGuidance +
SG with auxiliary checkpoints of several ages (right). Figures A5-A9: labelled sample grids.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from . import experiments as X
from . import figures as F
from .errors import ConfigError
from .io import write_text
from .report import aggregate_seeds, collect_rows


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def figure_rows(cfg: dict, experiment: str) -> list[dict]:
    """The experiment's rows (collect_rows, with ``iteration``), averaged over sampling seeds, with their
    tags as keys and ``baseline`` marking the experiment's baseline row."""
    exp = X.experiment(cfg, experiment)
    base = exp["rows"][exp["baseline"]].get("tags", {}).get("base", exp["baseline"])
    out = []
    for r in aggregate_seeds(collect_rows(cfg, experiment)):
        d = {**{k: v for k, v in r.items() if k != "tags"}, **r["tags"]}
        d["baseline"] = r["row"] == base
        out.append(d)
    return out


def row_images(cfg: dict, source: str, n: int, classes=None) -> np.ndarray:
    """The first n samples of a row ('<experiment>/<row>' whose samples exist; uint8 NHWC), of the given
    classes only when ``classes`` is set."""
    e2, r2 = source.split("/")
    with np.load(X.Layout(cfg).samples(e2, r2)) as z:
        images = z["arr_0"]
        labels = z["arr_1"] if "arr_1" in z.files else None
    if classes is not None:
        if labels is None:
            raise ConfigError(f"samples of {e2}/{r2} carry no labels (arr_1); resample them to pick classes.")
        # class by class, in the order given: column j of every row shows the same class and noise index
        per = -(-n // len(classes))
        idx = np.concatenate([np.flatnonzero(labels == c)[:per] for c in classes])
        images = images[idx]
    return images[:n]


def to_csv_text(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


def _metric(exp: dict) -> tuple[str, str]:
    """(key, axis label) of the figure's quality metric: FID in the experiment's feature space."""
    key = exp["plot"].get("metric", "fid")
    feat = "classifier FD" if exp["metrics"]["extractor"] == "classifier" else "FID"
    label = {"fid": f"{feat}@{exp['metrics']['n']}", "acc": "class accuracy", "sfid": "sFID",
             "prec": "precision", "rec": "recall"}.get(key, key)
    return key, label


def _title(cfg: dict, exp: dict, text: str) -> str:
    return f"{text} ({cfg['name']})"


def _need(rows: list[dict], keys, experiment: str) -> list[dict]:
    missing = [k for k in keys if not any(k in r for r in rows)]
    if missing:
        raise ConfigError(f"experiment {experiment!r}: its rows need tags {missing} for this figure (set them "
                          "with grids: axes or rows: tags:).")
    return rows


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def fig1(cfg, experiment):
    """Figure 1 (right, top): quality vs cost of the guidance methods on the routed model."""
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    sg = [r["method"] for r in rows if str(r["recipe"]).startswith("sg") or "SG" in r["method"]]
    fig = F.scatter_tradeoff(rows, x="gflops", y=key, label="method", highlight=sg, ylabel=label,
                             title=_title(cfg, exp, "Quality vs inference cost"))
    return fig, rows


def fig2(cfg, experiment):
    """Figure 2: FID vs guidance scale ω — CFG on a dense and on a sparse model, SG on the sparse one."""
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    _need(rows, ["omega"], experiment)
    fig = F.curves(rows, x="omega", y=key, group="method", yerr=f"{key}_std", xlabel="guidance scale ω",
                   ylabel=label, title=_title(cfg, exp, "Guidance response of dense and sparse models"))
    return fig, rows


def fig4(cfg, experiment):
    """Figure 4: unguided samples at growing inference-time sparsity γ (same noise in every row)."""
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    _need(rows, ["gamma"], experiment)
    ncols = int(exp["plot"].get("ncols", 10))
    images = {}
    for r in rows:
        value = r.get(key)
        images[f"γ={r['gamma']:g}" + (f"\n{label.split('@')[0]} {value:.1f}" if value is not None else "")] = \
            row_images(cfg, r["source"], ncols)
    fig = F.labelled_grid(images, ncols=ncols, title=_title(cfg, exp, "Unguided samples vs inference sparsity γ"))
    return fig, rows


def fig5(cfg, experiment):
    """Figure 5 (left): FID over training iterations, each method at its best ω."""
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    best = F.best_over(rows, key=key, by=("method", "iteration"))
    fig = F.curves(best, x="iteration", y=key, group="method", yerr=f"{key}_std", xlabel="training iterations",
                   ylabel=f"{label} (best ω)", title=_title(cfg, exp, "Quality over training"))
    return fig, [{**r, "best_over_omega": r in best} for r in rows]


def _heatmap(cfg, experiment, default_title, rows_key=None):
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    _need(rows, ["gamma_strong", "gamma_weak", "omega"], experiment)
    if rows_key:
        for r in rows:
            r.setdefault(rows_key, r["sparsity"])
    clip = exp["plot"].get("clip")
    fig = F.heatmaps(rows, value=key, facet="omega", x="gamma_strong", y="gamma_weak", value_label=label,
                     clip=tuple(clip) if clip else None, title=_title(cfg, exp, exp["caption"] or default_title),
                     **({"rows": rows_key} if rows_key else {}))
    return fig, rows


def fig6(cfg, experiment):
    """Figure 6: FID over (γ_strong, γ_weak), one panel per ω (AutoGuidance + SG by default)."""
    return _heatmap(cfg, experiment, "FID over γ")


def fig8(cfg, experiment):
    """Figure 8: FID over (γ_strong, γ_weak) per ω, routing and masking models as panel rows."""
    return _heatmap(cfg, experiment, "SG on routing and masking models", rows_key="model")


def fig7(cfg, experiment):
    """Figure 7. Left: distance between guided samples and the conditional prediction (the unguided
    row, same noise), LPIPS where its weights are available, else the feature-cosine stand-in.
    Right: AutoGuidance + SG with auxiliary checkpoints of several ages, best FID per γ_strong."""
    import matplotlib.pyplot as plt

    from .metrics import paired_distance
    from .pipeline import metric_extractor

    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    key, label = _metric(exp)
    layout = X.Layout(cfg)
    ref = [r for r in rows if r.get("role") == "conditional"]
    if len(ref) != 1:
        raise ConfigError(f"experiment {experiment!r} needs exactly one row tagged role: conditional (the unguided "
                          f"prediction the distances are measured to); found {len(ref)}.")
    ext, _ = metric_extractor(cfg, exp["metrics"])
    e_ref, r_ref = ref[0]["source"].split("/")
    dist_rows = []
    for r in rows:
        if r.get("role") != "compare":
            continue
        e2, r2 = r["source"].split("/")
        d = paired_distance(layout.samples(e2, r2), layout.samples(e_ref, r_ref), n=exp["metrics"]["n"],
                            extractor=ext, cache_dir=Path(layout.cache) / "metrics", progress=False)
        name = d["distance"]
        dlabel = "lpips" if name == "lpips" else f"feature cosine distance ({getattr(ext, 'label', 'features')})"
        r.update(distance=dlabel, distance_value=d[name], distance_std=d[f"{name}_std"], distance_n=d["n"])
        dist_rows.append({"label": r["method"], "value": d[name], "std": d[f"{name}_std"] / np.sqrt(d["n"])})
    ag = [r for r in rows if r.get("grid") is not None and "aux_step" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if dist_rows:
        dname = next(r["distance"] for r in rows if r.get("role") == "compare")
        F.bars(dist_rows, x="label", y="value", yerr="std", ax=axes[0],
               ylabel=("LPIPS" if dname == "lpips" else "feature cosine distance") + " to conditional ↓",
               title="Distance to the conditional prediction")
    if ag:
        best = F.best_over(ag, key=key, by=("aux_step", "gamma_strong"))
        for b in best:
            b["aux checkpoint"] = f"step {b['aux_step']}"
        F.curves(best, x="gamma_strong", y=key, group="aux checkpoint", ax=axes[1], xlabel="γ_strong",
                 ylabel=f"{label} (best γ_weak, ω)", title="AutoGuidance + SG by auxiliary checkpoint")
    fig.suptitle(_title(cfg, exp, "Figure 7"), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, rows


def sample_grid(cfg, experiment):
    """Figures A5-A9: uncurated samples, one labelled row per method, the same noise in every column."""
    exp, rows = X.experiment(cfg, experiment), figure_rows(cfg, experiment)
    ncols = int(exp["plot"].get("ncols", 10))
    classes = exp["plot"].get("classes")
    images = {r["method"]: row_images(cfg, r["source"], ncols, classes) for r in rows}
    title = exp["caption"] or "Uncurated samples"
    fig = F.labelled_grid(images, ncols=ncols, title=_title(cfg, exp, title))
    return fig, rows


FIGURE_FUNCTIONS = {"fig1": fig1, "fig2": fig2, "fig4": fig4, "fig5": fig5, "fig6": fig6, "fig7": fig7,
                    "fig8": fig8, **{f: sample_grid for f in ("figA5", "figA6", "figA7", "figA8", "figA9")}}


def write_figure(cfg: dict, experiment: str) -> list[dict]:
    """Draw one figure and write figures/<experiment>.png, .pdf and .csv (its data); returns the data."""
    import matplotlib.pyplot as plt

    if experiment not in FIGURE_FUNCTIONS:
        raise ConfigError(f"no figure {experiment!r}; figures: {', '.join(FIGURE_FUNCTIONS)}.")
    fig, rows = FIGURE_FUNCTIONS[experiment](cfg, experiment)
    layout = X.Layout(cfg)
    F.save_figure(fig, str(layout.figure(experiment, "png"))[:-len(".png")])
    write_text(layout.figure(experiment, "csv"), to_csv_text(rows))
    plt.close(fig)
    return rows
