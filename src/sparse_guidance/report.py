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
from .atomic import atomic_open
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


def table2_rows(cfg: dict, experiment: str = "table2") -> list[dict]:
    """One dict per row: our numbers (steps, FID, GFLOPs, ΔGFLOPs, other metrics, seconds) and the paper's."""
    from .guidance import resolve_recipe
    from .pipeline import read_json

    layout, exp = X.Layout(cfg), X.experiment(cfg, experiment)
    flops = read_json(layout.flops(experiment))
    summary = read_json(layout.run_summary(exp["run"]))
    rows = []
    for rid, spec in exp["rows"].items():
        m = read_json(layout.metrics(experiment, rid))
        info_path = Path(layout.sample_info(experiment, rid))
        info = read_json(info_path) if info_path.exists() else {}
        recipe = resolve_recipe(spec["recipe"], num_steps=cfg["sampling"]["steps"])
        paper = spec.get("paper") or {}
        rows.append({
            "row": rid, "method": spec["label"], "setting": X.describe_recipe(recipe, spec.get("aux")),
            "recipe": recipe.name, "steps": summary["steps"], "batch_size": summary["batch_size"],
            "fid": m.get("fid"), "fid_n": m.get("fid_n"), "ref_n": m.get("ref_n"),
            "gflops": flops["gflops"][rid], "delta_gflops": flops["delta_gflops"][rid],
            "sfid": m.get("sfid"), "prec": m.get("prec"), "rec": m.get("rec"), "is": m.get("is_mean"),
            "seconds_per_sample": info.get("seconds_per_sample"),
            "paper_epochs": paper.get("epochs"), "paper_fid": paper.get("fid"), "paper_gflops": paper.get("gflops"),
            "paper_delta_gflops": paper.get("delta_gflops"),
        })
    return rows


CSV_COLUMNS = ("row", "method", "setting", "recipe", "steps", "batch_size", "fid", "fid_n", "ref_n", "gflops",
               "delta_gflops", "sfid", "prec", "rec", "is", "seconds_per_sample", "paper_epochs", "paper_fid",
               "paper_gflops", "paper_delta_gflops")


def table2_columns(rows: list[dict]) -> list[Column]:
    n = {r["fid_n"] for r in rows}
    fid_n = f"@{n.pop()}" if len(n) == 1 and None not in n else ""
    g = _gflops_digits(r["gflops"] for r in rows)
    return [
        Column("method", "Method", "Method", align="l"),
        Column("setting", "Setting", "Setting", align="l"),
        Column("steps", "#Steps", "\\#Steps", "{:,}"),
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
    return fmt_value(v, col.fmt)


def table2_caption(cfg: dict, experiment: str, rows: list[dict]) -> str:
    exp, m, s = X.experiment(cfg, experiment), cfg["metrics"], cfg["sampling"]
    run = cfg["runs"][exp["run"]]
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


def _write_text(path, text: str):
    with atomic_open(path, "w") as f:
        f.write(text)


REPORTS = {"table2": (table2_rows, table2_columns, table2_caption)}


def write_report(cfg: dict, experiment: str) -> list[dict]:
    """Write tables/<experiment>.csv, .md and .tex; returns the rows."""
    if experiment not in REPORTS:
        raise ConfigError(f"no report for experiment {experiment!r}; reports: {', '.join(REPORTS)}.")
    rows_fn, cols_fn, cap_fn = REPORTS[experiment]
    rows = rows_fn(cfg, experiment)
    cols, caption = cols_fn(rows), cap_fn(cfg, experiment, rows)
    layout = X.Layout(cfg)
    _write_text(layout.table(experiment, "csv"), to_csv(rows))
    _write_text(layout.table(experiment, "md"), to_markdown(rows, cols, caption))
    _write_text(layout.table(experiment, "tex"), to_latex(rows, cols, caption, label=f"tab:{experiment}"))
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
