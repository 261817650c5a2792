"""Tables of the paper from the workflow's results: CSV (every number), Markdown and LaTeX.

    rows = table2_rows(cfg)                  # reads metrics/, flops/ and runs/ of results_dir
    write_report(cfg, "table2")              # tables/table2.csv, .md, .tex

Table 2 (paper): Method, #Epoch, FID, GFLOPs, ΔGFLOPs for SiT-XL/2 + routing unguided and with
CFG, AutoGuidance, ICG, SG_FLOPS and SG_FID. Ours gives the same columns for the configured run —
training length in steps (the paper counts epochs), FID with the number of samples behind it —
and the paper's values beside them (from the config's ``paper:`` entries).
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import experiments as X
from .io import read_json, write_text
from .errors import ConfigError


@dataclass(frozen=True)
class Column:
    key: str         # CSV column
    header: str      # Markdown header
    latex: str       # LaTeX header
    fmt: str = "{}"  # number format; None values print as "—"
    align: str = "r"


def fmt_value(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, str):
        return v
    return fmt.format(v)


def fmt_delta(v, digits: int) -> str:
    if v is None:
        return "—"
    if abs(v) < 0.5 * 10 ** -digits:
        return "0 (baseline)"
    return f"{v:+.{digits}f}".replace("-", "−")


# ---------------------------------------------------------------------------------------------
# Table 2
# ---------------------------------------------------------------------------------------------

def _gflops_digits(values) -> int:
    """Enough decimals for the smallest GFLOPs value to show 4 significant digits (2 for SiT-XL)."""
    vals = [abs(v) for v in values if v]
    if not vals:
        return 2
    return max(2, min(6, 3 - int(math.floor(math.log10(min(vals))))))


METRIC_KEYS = ("fid", "sfid", "is", "prec", "rec", "acc")


def collect_rows(cfg: dict, experiment: str) -> list[dict]:
    """One record per row of an experiment, from the workflow's outputs: the row's setting (label, recipe,
    run, checkpoint step, seed, tags), its metrics, GFLOPs per step, sampling time and the paper's values
    (``paper_<key>``). Rows that reuse another experiment's samples (same_as) read that row's files."""
    from .guidance import resolve_recipe

    layout, exp = X.Layout(cfg), X.experiment(cfg, experiment)
    flops = read_json(layout.flops(experiment))
    summaries = {}
    rows = []
    for rid, own in exp["rows"].items():
        e2, r2 = X.resolve_source(cfg["experiments"], experiment, rid)
        spec = cfg["experiments"][e2]["rows"][r2]
        if spec["run"] not in summaries:
            summaries[spec["run"]] = read_json(layout.run_summary(spec["run"]))
        summary = summaries[spec["run"]]
        m = read_json(layout.metrics(e2, r2))
        info_path = Path(layout.sample_info(e2, r2))
        info = read_json(info_path) if info_path.exists() else {}
        recipe = resolve_recipe(spec["recipe"], num_steps=cfg["experiments"][e2]["sampling"]["steps"])
        paper = own.get("paper") or spec.get("paper") or {}
        rec = {"row": rid, "method": own.get("label") or spec["label"], "tags": {**spec.get("tags", {}),
                                                                               **own.get("tags", {})},
               "setting": X.describe_recipe(recipe, spec.get("aux")), "recipe": recipe.name,
               "omega": recipe.omega, "run": spec["run"], "sparsity": cfg["runs"][spec["run"]]["sparsity"],
               "step": spec.get("step") or summary["steps"], "steps": summary["steps"],
               "iteration": iteration(cfg, spec["run"], spec.get("step")),
               "batch_size": summary["batch_size"], "seed": spec["seed"], "source": f"{e2}/{r2}",
               "fid_n": m.get("fid_n"), "ref_n": m.get("ref_n"), "extractor": m.get("extractor"),
               "gflops": flops["gflops"][rid], "delta_gflops": flops["delta_gflops"][rid],
               "seconds_per_sample": info.get("seconds_per_sample")}
        rec.update({k: m.get("is_mean" if k == "is" else k) for k in METRIC_KEYS})
        rec.update({f"paper_{k}": paper.get(k) for k in X.PAPER_KEYS})
        rows.append(rec)
    return rows


def iteration(cfg: dict, run: str, step: int | None) -> int:
    """Training iterations behind a run's checkpoint (``step``, None = the run's end), counting those
    of the run it started from: a dense finetuning run branched at step s of its parent has seen
    s + its own steps. Tables show this as #Steps; ``steps`` is the run's own length."""
    r = cfg["runs"][run]
    own = step if step is not None else r["train"]["steps"]
    init = r.get("init")
    return own + (iteration(cfg, init["run"], init["step"]) if init else 0)


def aggregate_seeds(rows: list[dict], keys=METRIC_KEYS) -> list[dict]:
    """Rows replicated over sampling seeds (experiment ``seeds:``; tags base/seed) -> one row per base
    with the mean of each metric, its standard deviation over seeds (``<key>_std``) and ``seeds``.
    Rows without a seed tag pass through (``seeds`` 1, std None)."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["tags"].get("base", r["row"]), []).append(r)
    out = []
    for base, rs in groups.items():
        agg = {**rs[0], "row": base, "seeds": len(rs), "tags": {k: v for k, v in rs[0]["tags"].items()
                                                               if k not in ("base", "seed")}}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            agg[k] = float(np.mean(vals)) if vals else None
            agg[f"{k}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out.append(agg)
    return out


def table2_rows(cfg: dict, experiment: str = "table2") -> list[dict]:
    """One dict per row: our numbers (steps, FID, GFLOPs, ΔGFLOPs, other metrics, seconds) and the paper's."""
    return aggregate_seeds(collect_rows(cfg, experiment))


CSV_COLUMNS = ("row", "method", "setting", "recipe", "run", "sparsity", "iteration", "steps", "batch_size", "seeds", "fid",
               "fid_std", "fid_n", "ref_n", "gflops", "delta_gflops", "sfid", "sfid_std", "prec", "prec_std", "rec",
               "rec_std", "is", "acc", "seconds_per_sample", "extractor", "paper_epochs", "paper_fid",
               "paper_sfid", "paper_is", "paper_prec", "paper_rec", "paper_gflops", "paper_delta_gflops")


def table2_columns(rows: list[dict]) -> list[Column]:
    n = {r["fid_n"] for r in rows}
    fid_n = f"@{n.pop()}" if len(n) == 1 and None not in n else ""
    g = _gflops_digits(r["gflops"] for r in rows)
    return [
        Column("method", "Method", "Method", align="l"),
        Column("setting", "Setting", "Setting", align="l"),
        Column("iteration", "#Steps", "\\#Steps", "{:,}"),
        Column("fid", f"FID{fid_n} ↓", f"FID{fid_n} $\\downarrow$", "{:.2f}"),
        Column("gflops", "GFLOPs ↓", "GFLOPs $\\downarrow$", f"{{:.{g}f}}"),
        Column("delta_gflops", "ΔGFLOPs ↓", "$\\Delta$GFLOPs $\\downarrow$", f"delta:{g}"),
        Column("paper_epochs", "paper #Epoch", "paper \\#Epoch", "{}"),
        Column("paper_fid", "paper FID ↓", "paper FID $\\downarrow$", "{:.2f}"),
        Column("paper_gflops", "paper GFLOPs ↓", "paper GFLOPs $\\downarrow$", "{:.2f}"),
        Column("paper_delta_gflops", "paper ΔGFLOPs ↓", "paper $\\Delta$GFLOPs $\\downarrow$", "delta:2"),
    ]


def cell(row: dict, col: Column) -> str:
    v = row.get(col.key)
    if col.fmt.startswith("delta:"):
        return fmt_delta(v, int(col.fmt.split(":")[1]))
    std = row.get(f"{col.key}_std")
    if std is not None and v is not None and not isinstance(v, str):
        return f"{fmt_value(v, col.fmt)} ± {fmt_value(std, col.fmt)}"  # mean ± std over sampling seeds
    return fmt_value(v, col.fmt)


def _at_n(rows: list[dict]) -> str:
    n = {r.get("fid_n") for r in rows}
    return f"@{n.pop()}" if len(n) == 1 and None not in n else ""


def _seeds_note(rows: list[dict]) -> str:
    seeds = {r.get("seeds", 1) for r in rows}
    k = max(seeds)
    return f" Mean ± standard deviation over {k} sampling seeds." if k > 1 else ""


def _scale_note(cfg: dict, exp: dict, rows: list[dict]) -> str:
    m, s = exp["metrics"], exp["sampling"]
    refs = {r.get("ref_n") for r in rows}
    ref_n = refs.pop() if len(refs) == 1 else None
    feat = "the pipeline's Fashion-MNIST classifier features (not Inception)" if m["extractor"] == "classifier" \
        else "Inception features"
    return (f"Ours ({cfg['name']}): {cfg['model']['name']}, {s['solver'].capitalize()} {s['steps']} steps; "
            f"metrics over the first {m['n']:,} samples" + (f" against {ref_n:,} reference images" if ref_n else "")
            + f", in {feat} (FID at small N is biased upwards: compare rows only at equal N)."
            + _seeds_note(rows))


# ---------------------------------------------------------------------------------------------
# Table 1: CFG vs SG on a masked and a routed model
# ---------------------------------------------------------------------------------------------

def metric_columns(prefix: str = "", fid_at: str = "", is_fmt: str = "{:.1f}") -> list[Column]:
    """FID, sFID, IS, precision and recall columns (the paper's Tables 1 and 3), ours or ``paper_``."""
    head = "paper " if prefix else ""
    tex = {"↓": "$\\downarrow$", "↑": "$\\uparrow$"}
    return [Column(f"{prefix}{key}", f"{head}{name} {arrow}", f"{head}{name} {tex[arrow]}", fmt)
            for key, name, arrow, fmt in (("fid", f"FID{fid_at}", "↓", "{:.2f}"), ("sfid", "sFID", "↓", "{:.2f}"),
                                          ("is", "IS", "↑", is_fmt), ("prec", "Prec.", "↑", "{:.2f}"),
                                          ("rec", "Rec.", "↑", "{:.2f}"))]


def table1_columns(rows: list[dict]) -> list[Column]:
    return [
        Column("method", "Guidance", "Guidance", align="l"),
        Column("sparsity", "Sparsity", "Sparsity", align="l"),
        Column("setting", "Setting", "Setting", align="l"),
        Column("iteration", "#Steps", "\\#Steps", "{:,}"),
        *metric_columns(fid_at=_at_n(rows)),
        Column("paper_epochs", "paper #Epoch", "paper \\#Epoch", "{}"),
        *metric_columns("paper_"),
    ]


def table1_caption(cfg: dict, experiment: str, rows: list[dict]) -> str:
    exp = X.experiment(cfg, experiment)
    return " ".join(p for p in [exp.get("caption") or "", _scale_note(cfg, exp, rows),
                                "IS needs Inception logits (blank with the offline network). "
                                "Paper: SiT-XL/2, ImageNet-256, 160 epochs, FID@50k (Table 1)."] if p)


# ---------------------------------------------------------------------------------------------
# Table 3: our rows among the literature's
# ---------------------------------------------------------------------------------------------

def literature_rows(path) -> tuple[list[dict], str]:
    """The literature rows of Table 3 (a YAML data file, values as the paper prints them)."""
    p = Path(path)
    if not p.is_absolute():
        p = X.repo_root() / p
    data = X.read_yaml(p) if p.is_file() else None
    if data is None:
        raise ConfigError(f"literature file {str(path)!r} does not exist (experiments.table3.literature).")
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise ConfigError(f"{str(path)!r}: 'rows' must list mappings with at least 'method'.")
    return rows, str(data.get("source", ""))


def table3_rows(cfg: dict, experiment: str = "table3") -> list[dict]:
    exp = X.experiment(cfg, experiment)
    lit, _ = literature_rows(exp.get("literature") or "workflow/data/table3_literature.yaml")
    out = [{"method": r["method"], "kind": "literature", "epochs": r.get("epochs"), "iteration": None,
            **{k: r.get(k) for k in METRIC_KEYS if k != "acc"}, "source": r.get("source", ""),
            "scale": "ImageNet-256, FID@50k"} for r in lit]
    ours = aggregate_seeds(collect_rows(cfg, experiment))
    for r in ours:  # the paper's own rows (its reproduction and SG_FID), then ours at this config's scale
        if r.get("paper_fid") is not None:
            out.append({"method": r.get("paper_label") or f"{r['method']} (paper)", "kind": "paper", "epochs": r.get("paper_epochs"),
                        "iteration": None, **{k: r.get(f"paper_{k}") for k in METRIC_KEYS if k != "acc"},
                        "source": "Krause et al., Table 3", "scale": "ImageNet-256, FID@50k"})
    for r in ours:
        out.append({**r, "method": f"{r['method']} (ours)", "kind": "ours", "epochs": None,
                    "source": f"this repository, config {cfg['name']}",
                    "scale": f"{cfg['data']['dataset']}, FID@{r.get('fid_n')}"})
    return out


def table3_columns(rows: list[dict]) -> list[Column]:
    return [
        Column("method", "Method", "Method", align="l"),
        Column("epochs", "#Epoch", "\\#Epoch", "{:,}"),
        Column("iteration", "#Steps", "\\#Steps", "{:,}"),
        *metric_columns(is_fmt="{:.2f}"),
        Column("scale", "Scale", "Scale", align="l"),
    ]


def table3_caption(cfg: dict, experiment: str, rows: list[dict]) -> str:
    exp = X.experiment(cfg, experiment)
    ours = [r for r in rows if r.get("kind") == "ours"]
    return " ".join(p for p in [
        exp.get("caption") or "",
        "Literature and paper rows: ImageNet-256 FID@50k as printed in the paper's Table 3 "
        "(sources in the CSV's source column; — where the paper prints none).",
        _scale_note(cfg, exp, ours) if ours else "",
        "Our rows are at this config's scale and are not comparable with the ImageNet numbers."] if p)


TABLE3_CSV = ("method", "kind", "epochs", "iteration", "fid", "fid_std", "sfid", "is", "prec", "rec", "fid_n", "scale",
              "source")


def table2_caption(cfg: dict, experiment: str, rows: list[dict]) -> str:
    exp = X.experiment(cfg, experiment)
    m, s = exp["metrics"], exp["sampling"]
    run = cfg["runs"][exp["run"] or rows[0]["run"]]
    refs = {r["ref_n"] for r in rows}
    ref_n = refs.pop() if len(refs) == 1 else None
    parts = [exp.get("caption") or "",
             f"Ours ({cfg['name']}): {cfg['model']['name']} + {run['sparsity']}"
             + (f" (routes {', '.join(run['routes'])}, γ_train={run.get('train_gamma')})" if run["routes"] else "")
             + f", {rows[0]['steps']:,} training steps at batch {rows[0]['batch_size']}, "
             f"{s['solver'].capitalize()} {s['steps']} steps; FID over the first {m['n']:,} samples"
             + (f" against {ref_n:,} reference images" if ref_n else "")
             + " (FID at small N is biased upwards: compare rows only at equal N). "
             "GFLOPs per sampling step, ΔGFLOPs relative to the unguided baseline. "
             "Paper: SiT-XL/2 + routing, ImageNet-256, FID@50k (Table 2)."]
    return " ".join(p for p in parts if p).strip()


def to_markdown(rows: list[dict], columns: list[Column], caption: str = "") -> str:
    head = "| " + " | ".join(c.header for c in columns) + " |"
    rule = "|" + "|".join("---" if c.align == "l" else "---:" for c in columns) + "|"
    body = ["| " + " | ".join(cell(r, c).replace("|", "\\|") for c in columns) + " |" for r in rows]
    text = "\n".join([head, rule, *body]) + "\n"
    return text + (f"\n{caption}\n" if caption else "")


LATEX_CHARS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
               "ω": r"$\omega$", "γ": r"$\gamma$", "Δ": r"$\Delta$", "→": r"$\to$", "∅": r"$\varnothing$",
               "−": "$-$", "—": "--", "↓": r"$\downarrow$", "@": "@"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_CHARS.get(ch, ch) for ch in str(text))


def latex_method(label: str) -> str:
    """'+SG_FLOPS' -> '+SG$_{\\text{FLOPS}}$' (the paper's subscripts); everything else escaped."""
    out, last = [], 0
    for m in re.finditer(r"([A-Za-z]+)_([A-Za-z0-9]+)", label):
        out.append(latex_escape(label[last:m.start()]))
        out.append(f"{latex_escape(m.group(1))}$_{{\\text{{{latex_escape(m.group(2))}}}}}$")
        last = m.end()
    out.append(latex_escape(label[last:]))
    return "".join(out)


def to_latex(rows: list[dict], columns: list[Column], caption: str = "", label: str = "tab:table2") -> str:
    lines = [r"% generated by sparse_guidance.report; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{" + "".join(c.align for c in columns) + "}", r"\toprule",
             " & ".join(c.latex for c in columns) + r" \\", r"\midrule"]
    for r in rows:
        cells = [latex_method(cell(r, c)) if c.key == "method" else latex_escape(cell(r, c)) for c in columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines += [r"\label{" + label + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns=CSV_COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def table1_rows(cfg: dict, experiment: str = "table1") -> list[dict]:
    return aggregate_seeds(collect_rows(cfg, experiment))


# experiment -> (rows, columns, caption, CSV columns)
REPORTS = {"table1": (table1_rows, table1_columns, table1_caption, CSV_COLUMNS),
           "table2": (table2_rows, table2_columns, table2_caption, CSV_COLUMNS),
           "table3": (table3_rows, table3_columns, table3_caption, TABLE3_CSV)}


def write_report(cfg: dict, experiment: str):
    """Tables: tables/<experiment>.csv, .md and .tex (returns the rows). Figures: figures/<experiment>.png,
    .pdf and the data behind them as .csv (figure_reports.py; returns the figure's data rows)."""
    if experiment in X.FIGURES:
        from . import figure_reports
        return figure_reports.write_figure(cfg, experiment)
    if experiment not in REPORTS:
        raise ConfigError(f"no report for experiment {experiment!r}; reports: {', '.join(REPORTS)}.")
    rows_fn, cols_fn, cap_fn, csv_cols = REPORTS[experiment]
    rows = rows_fn(cfg, experiment)
    cols, caption = cols_fn(rows), cap_fn(cfg, experiment, rows)
    layout = X.Layout(cfg)
    write_text(layout.table(experiment, "csv"), to_csv(rows, csv_cols))
    write_text(layout.table(experiment, "md"), to_markdown(rows, cols, caption))
    write_text(layout.table(experiment, "tex"), to_latex(rows, cols, caption, label=f"tab:{experiment}"))
    return rows


# ---------------------------------------------------------------------------------------------
# Figures for the notebooks
# ---------------------------------------------------------------------------------------------

def _to_hwc(img):
    """An image as a (H, W[, 3]) array for imshow: uint8 HWC/CHW, or float CHW in [-1, 1]."""
    import numpy as np
    import torch

    x = img.detach().cpu() if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.permute(1, 2, 0)  # CHW -> HWC
    if x.is_floating_point():
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.numpy()
    return x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x


def image_grid(images, titles=None, ncols: int = 10, title: str | None = None):
    """A grid of images (uint8 NHWC / CHW, or codec output in [-1, 1]); returns the figure."""
    import matplotlib.pyplot as plt

    images = list(images)
    n = max(1, len(images))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, n), figsize=(1.1 * min(ncols, n), 1.25 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(_to_hwc(img), cmap="gray", vmin=0, vmax=255)
        if titles is not None:
            ax.set_title(str(titles[i])[:12], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_curve(log_csv, title: str = ""):
    """Training loss over steps from a run's log.csv; returns the figure."""
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def fid_vs_gflops(rows: list[dict], title: str = ""):
    """Each row of a table as a point (GFLOPs per step, FID); returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        if r.get("fid") is None:
            continue
        ax.scatter(r["gflops"], r["fid"])
        ax.annotate(r["method"], (r["gflops"], r["fid"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("GFLOPs per sampling step")
    ax.set_ylabel(f"FID@{rows[0].get('fid_n')}" if rows else "FID")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
