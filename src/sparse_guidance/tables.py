"""The paper's tables from an experiment's results (a DataFrame of results.load), with pandas:
CSV (every number), Markdown and LaTeX (booktabs) as the paper prints them.

    df = results.aggregate(results.load(cfg, "table2"))
    shown = table(df, TABLE2)                       # the columns of the paper's Table 2, formatted
    write("results/embedded/tables/table2", df, shown, caption(cfg, "table2", df), CSV_COLUMNS)

Table 2 (paper): Method, #Epoch, FID, GFLOPs, ΔGFLOPs. Ours gives the same columns for the configured
run (training length in steps, FID with the number of samples behind it) and the paper's values beside
them (workflow/data/paper_results.yaml). Table 1 adds sFID, IS, precision and recall; Table 3 puts our
rows and the paper's own among the literature (workflow/data/table3_literature.yaml).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from . import config as C
from .errors import ConfigError
from .io import write_text

# The raw columns of a table's CSV (Tables 1 and 2; Table 3 has its own).
CSV_COLUMNS = ("row", "method", "setting", "recipe", "run", "sparsity", "iteration", "steps", "batch_size", "seeds",
               "tuned", "fid", "fid_std", "fid_n", "ref_n", "gflops", "delta_gflops", "sfid", "sfid_std", "prec",
               "prec_std", "rec", "rec_std", "is", "acc", "seconds_per_sample", "extractor", "paper_epochs", "paper_fid",
               "paper_sfid", "paper_is", "paper_prec", "paper_rec", "paper_gflops", "paper_delta_gflops")
TABLE3_CSV = ("method", "kind", "epochs", "iteration", "fid", "fid_std", "sfid", "is", "prec", "rec", "fid_n", "scale",
              "source")
ARROW = {"↓": r"$\downarrow$", "↑": r"$\uparrow$"}
# The text-to-image tables: GenEval's six tags (Table 5), the scenes' tags (the scene-text score of
# Table 4 at the embedded scale) and HPSv3's twelve categories (the paper's Table 4).
GENEVAL_COLUMNS = (("overall", "Overall"), ("single_object", "Single"), ("two_object", "Two"),
                   ("counting", "Counting"), ("colors", "Colors"), ("position", "Position"),
                   ("color_attr", "Color Attr."))
SCENE_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "keywords")
HPS_CATEGORIES = ("characters", "arts", "design", "architecture", "animals", "natural_scenery", "transportation",
                  "products", "others", "plants", "food", "science")
TABLE5_CSV = ("method", "kind", *(k for k, _ in GENEVAL_COLUMNS), "keywords", "gflops", "scale", "source")
TABLE4_CSV = ("row", "method", "setting", "recipe", "gflops", "delta_gflops", "images_per_s", "seconds_per_sample",
              "scene_overall", *(f"scene_{t}" for t in SCENE_TAGS), "hps_overall", *(f"hps_{c}" for c in HPS_CATEGORIES),
              "geneval_overall", "paper_overall",
              *(f"paper_{c}" for c in HPS_CATEGORIES), "paper_images_per_s")


# ---------------------------------------------------------------------------------------------
# Columns as data: (key, header, format); "delta:<digits>" prints a signed difference
# ---------------------------------------------------------------------------------------------

def metric_columns(prefix: str = "", fid_at: str = "", is_fmt: str = "{:.1f}") -> list[tuple]:
    """FID, sFID, IS, precision and recall (the paper's Tables 1 and 3), ours or the paper's (``paper_``)."""
    head = "paper " if prefix else ""
    return [(f"{prefix}{k}", f"{head}{name} {arrow}", fmt) for k, name, arrow, fmt in (
        ("fid", f"FID{fid_at}", "↓", "{:.2f}"), ("sfid", "sFID", "↓", "{:.2f}"), ("is", "IS", "↑", is_fmt),
        ("prec", "Prec.", "↑", "{:.2f}"), ("rec", "Rec.", "↑", "{:.2f}"))]


def fid_at(df: pd.DataFrame) -> str:
    n = set(df["fid_n"])
    return f"@{n.pop()}" if len(n) == 1 and None not in n else ""


def gflops_digits(values) -> int:
    """Enough decimals for the smallest GFLOPs value to show 4 significant digits (2 for SiT-XL)."""
    vals = [abs(v) for v in values if v]
    return max(2, min(6, 3 - int(math.floor(math.log10(min(vals)))))) if vals else 2


def table2_columns(df: pd.DataFrame) -> list[tuple]:
    g = gflops_digits(df["gflops"])
    return [("method", "Method", "{}"), ("setting", "Setting", "{}"), ("iteration", "#Steps", "{:,}"),
            ("fid", f"FID{fid_at(df)} ↓", "{:.2f}"), ("gflops", "GFLOPs ↓", f"{{:.{g}f}}"),
            ("delta_gflops", "ΔGFLOPs ↓", f"delta:{g}"), ("paper_epochs", "paper #Epoch", "{}"),
            ("paper_fid", "paper FID ↓", "{:.2f}"), ("paper_gflops", "paper GFLOPs ↓", "{:.2f}"),
            ("paper_delta_gflops", "paper ΔGFLOPs ↓", "delta:2")]


def table1_columns(df: pd.DataFrame) -> list[tuple]:
    return [("method", "Guidance", "{}"), ("sparsity", "Sparsity", "{}"), ("setting", "Setting", "{}"),
            ("iteration", "#Steps", "{:,}"), *metric_columns(fid_at=fid_at(df)), ("paper_epochs", "paper #Epoch", "{}"),
            *metric_columns("paper_")]


def table3_columns(df: pd.DataFrame) -> list[tuple]:
    return [("method", "Method", "{}"), ("epochs", "#Epoch", "{:,}"), ("iteration", "#Steps", "{:,}"),
            *metric_columns(is_fmt="{:.2f}"), ("scale", "Scale", "{}")]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def cell(v, fmt: str, std=None) -> str:
    if _missing(v):
        return "—"
    if fmt.startswith("delta:"):
        digits = int(fmt.split(":")[1])
        return "0 (baseline)" if abs(v) < 0.5 * 10 ** -digits else f"{v:+.{digits}f}".replace("-", "−")
    if isinstance(v, str):
        return v
    text = fmt.format(v)
    return text if _missing(std) else f"{text} ± {fmt.format(std)}"  # mean ± std over sampling seeds


def table(df: pd.DataFrame, columns: list[tuple]) -> pd.DataFrame:
    """The table as shown: one string column per (key, header, format), mean ± std where seeds were replicated."""
    std = {k: df[f"{k}_std"] if f"{k}_std" in df else [None] * len(df) for k, _, _ in columns}
    return pd.DataFrame({h: [cell(v, f, s) for v, s in zip(df[k] if k in df else [None] * len(df), std[k])]
                         for k, h, f in columns})


# ---------------------------------------------------------------------------------------------
# Table 3: our rows among the literature's
# ---------------------------------------------------------------------------------------------

def literature_rows(literature: str, experiment: str) -> list[dict]:
    """The rows of a literature file (workflow/data/<table>_literature.yaml), each with its 'method'."""
    path = C.repo_root() / literature
    if not path.is_file():
        raise ConfigError(f"literature file {literature!r} does not exist (experiments.{experiment}.literature).")
    lit = C.read_yaml(path).get("rows")
    if not isinstance(lit, list) or not all(isinstance(r, dict) and "method" in r for r in lit):
        raise ConfigError(f"{literature!r}: 'rows' must list mappings with at least 'method'.")
    return lit


def table3_frame(cfg: dict, df: pd.DataFrame, literature: str) -> pd.DataFrame:
    """Literature rows (as the paper prints them), then the paper's own rows, then ours at this scale."""
    lit = literature_rows(literature, "table3")
    keys = ("fid", "sfid", "is", "prec", "rec")
    rows = [{"method": r["method"], "kind": "literature", "epochs": r.get("epochs"), **{k: r.get(k) for k in keys},
             "source": r.get("source", ""), "scale": "ImageNet-256, FID@50k"} for r in lit]
    rows += [{"method": r["paper_label"] or f"{r['method']} (paper)", "kind": "paper", "epochs": r["paper_epochs"],
              **{k: r[f"paper_{k}"] for k in keys}, "source": "Krause et al., Table 3", "scale": "ImageNet-256, FID@50k"}
             for r in df.to_dict("records") if r.get("paper_fid") is not None]
    rows += [{**r, "method": f"{r['method']} (ours)", "kind": "ours", "epochs": None,
              "source": f"this repository, config {cfg['name']}", "scale": f"{cfg['data']['dataset']}, FID@{r['fid_n']}"}
             for r in df.to_dict("records")]
    frame = pd.DataFrame(rows, dtype=object)
    return frame.reindex(columns=list(dict.fromkeys([*TABLE3_CSV, *frame.columns])))


# ---------------------------------------------------------------------------------------------
# Tables 4-5: the text-to-image track
# ---------------------------------------------------------------------------------------------

def uses_geneval_official(cfg: dict, experiment: str) -> bool:
    """Whether an experiment scores with GenEval's own scripts (geneval_official), not the scenes' port."""
    return "geneval_official" in C.experiment(cfg, experiment)["metrics"]["metrics"]


def table5_frame(cfg: dict, df: pd.DataFrame, literature: str) -> pd.DataFrame:
    """GenEval (Table 5): the literature rows and the paper's own (as printed, GenEval at 512² or more),
    then ours at this scale (GenEval's rules on the scenes' detector; 'keywords' is the scenes' extra tag)."""
    keys = [k for k, _ in GENEVAL_COLUMNS]
    rows = [{"method": r["method"], "kind": "literature", **{k: r.get(k) for k in keys},
             "source": f"paper's Table 5 {r.get('ref', '')}".strip(), "scale": "GenEval (553 prompts × 4)"}
            for r in literature_rows(literature, "table5")]
    rows += [{"method": r["paper_label"] or f"{r['method']} (paper)", "kind": "paper",
              **{k: r.get(f"paper_{k}") for k in keys}, "source": "Krause et al., Table 5",
              "scale": "GenEval (553 prompts × 4)"} for r in df.to_dict("records") if r.get("paper_overall") is not None]
    official = uses_geneval_official(cfg, "table5")
    where = "GenEval's own scripts" if official else "scenes 32²"
    rows += [{"method": f"{r['method']} (ours)", "kind": "ours", **{k: r.get(f"geneval_{k}") for k in keys},
              "keywords": r.get("geneval_keywords"), "gflops": r.get("gflops"),
              "source": f"this repository, config {cfg['name']}",
              "scale": f"{where}, {sum(v for k, v in r.items() if k.startswith('geneval_n_') and v):,} images"}
             for r in df.to_dict("records")]
    frame = pd.DataFrame(rows, dtype=object)
    return frame.reindex(columns=list(dict.fromkeys([*TABLE5_CSV, *frame.columns])))


def table5_columns(frame: pd.DataFrame) -> list[tuple]:
    """Method, GenEval's overall and six tags; for our rows also the scenes' keywords tag and GFLOPs per step."""
    g = gflops_digits([v for v in frame["gflops"] if not _missing(v)])
    return [("method", "Method", "{}"), *((k, f"{h} ↑", "{:.2f}") for k, h in GENEVAL_COLUMNS),
            ("keywords", "Keywords ↑", "{:.2f}"), ("gflops", "GFLOPs ↓", f"{{:.{g}f}}")]


def table4_score(df: pd.DataFrame) -> tuple[str, str]:
    """(column prefix, name) of our Table 4 score: HPSv3 (the paper's scale), else the embedded
    stand-in, the scene-text score."""
    return ("hps", "HPSv3") if "hps_overall" in df else ("scene", "scene-text score (not HPSv3)")


def geneval_name(cfg: dict, experiment: str = "table5") -> str:
    """How our GenEval numbers were made: GenEval's own scripts, or its rules on the scenes' detector."""
    official = uses_geneval_official(cfg, experiment)
    return "GenEval (its own scripts)" if official else "GenEval's rules (scene detector)"


def table4_columns(df: pd.DataFrame) -> list[tuple]:
    """Ours (Table 4): HPSv3 per category where the rows have it (the paper's scale), else the
    scene-text score per scene tag (the embedded stand-in); GFLOPs per step, images/s."""
    g = gflops_digits(df["gflops"])
    if "hps_overall" in df:
        found = [c[4:] for c in df.columns if c.startswith("hps_") and not c.startswith("hps_n_") and c != "hps_overall"]
        tags = [c for c in HPS_CATEGORIES if c in found] + [c for c in found if c not in HPS_CATEGORIES]
        prefix, digits, name = "hps", "{:.2f}", lambda t: t.replace("_", " ").title()
    else:
        tags = [t for t in SCENE_TAGS if f"scene_{t}" in df]
        prefix, digits, name = "scene", "{:.3f}", lambda t: t.replace("_", " ").capitalize()
    return [("method", "Method", "{}"), ("setting", "Setting", "{}"), ("gflops", "GFLOPs ↓", f"{{:.{g}f}}"),
            ("images_per_s", "images/s ↑", "{:.1f}"), (f"{prefix}_overall", "Overall ↑", digits),
            *((f"{prefix}_{t}", name(t), digits) for t in tags)]


def table4_paper_frame(df: pd.DataFrame, literature: str) -> pd.DataFrame:
    """The paper's Table 4 as printed (HPSv3 per category; literature rows from HPSv3's own table and
    the paper's TR-DiT-2.5B rows), ranked by the overall score."""
    rows = [{**r, "kind": "literature"} for r in literature_rows(literature, "table4")]
    rows += [{"method": r["paper_label"], "kind": "paper", "rank": r.get("paper_rank"),
              "overall": r.get("paper_overall"), **{c: r.get(f"paper_{c}") for c in HPS_CATEGORIES}}
             for r in df.to_dict("records") if r.get("paper_overall") is not None]
    frame = pd.DataFrame(rows, dtype=object)
    return frame.sort_values("overall", ascending=False, key=lambda v: v.astype(float)).reset_index(drop=True)


def table4_paper_columns() -> list[tuple]:
    return [("rank", "Rank", "{}"), ("method", "Method", "{}"), ("overall", "Overall ↑", "{:.2f}"),
            *((c, c.replace("_", " ").title(), "{:.2f}") for c in HPS_CATEGORIES)]


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

def scale_note(cfg: dict, experiment: str, df: pd.DataFrame) -> str:
    exp = C.experiment(cfg, experiment)
    m, s = C.metrics_of(cfg, experiment), exp["sampling"]   # Table 3's rows are Table 2's, at its n
    refs = set(df["ref_n"])
    ref_n = refs.pop() if len(refs) == 1 else None
    feat = "the pipeline's Fashion-MNIST classifier features (not Inception)" if m["extractor"] == "classifier" \
        else "Inception features"
    return (f"Ours ({cfg['name']}): {cfg['model']['name']}, {s['solver'].capitalize()} {s['steps']} steps; "
            f"metrics over the first {m['n']:,} samples" + (f" against {ref_n:,} reference images" if ref_n else "")
            + f", in {feat} (FID at small N is biased upwards: compare rows only at equal N). " + seeds_note(df))


def seeds_note(df: pd.DataFrame) -> str:
    k = max(df["seeds"]) if "seeds" in df else 1
    return f"Mean ± standard deviation over {k} sampling seeds." if k > 1 else ""


def tuning_note(df: pd.DataFrame) -> str:
    """The rows whose arguments were tuned, each with its choice and how it was made (results.load's
    ``tuned``); the scores it reports come from other seeds."""
    records = df.to_dict("records")
    methods = [r["method"] for r in records]

    def name(r):  # a method that appears on several rows (Table 1: routing, masking) says which
        if methods.count(r["method"]) > 1 and isinstance(r.get("sparsity"), str):
            return f"{r['method']} ({r['sparsity']})"
        return r["method"] if methods.count(r["method"]) == 1 else f"{r['method']} ({r['row']})"

    tuned = [f"{name(r)}: {r['tuned']}" for r in records if isinstance(r.get("tuned"), str)]
    return ("Tuned rows (chosen on a validation seed, reported on the others): " + "; ".join(tuned) + ".") \
        if tuned else ""


def text_scale_note(cfg: dict, experiment: str) -> str:
    """What our text-to-image rows are: model, data, sampler, how many images over how many prompts."""
    exp, run = C.experiment(cfg, experiment), cfg["runs"][C.experiment(cfg, experiment)["run"]]
    s, d = exp["sampling"], cfg["data"]
    name = C.prompt_set(cfg, experiment)
    spec = C.prompt_set_spec(cfg, name)
    data = (f"(image, caption) webdataset shards at {d['image_size']}²" if d["dataset"] == "webdataset" else
            f"{d['train']['n']:,} procedural 32² scenes")
    prompts = (f"{spec.get('prompts_per_tag', 16)} per tag at most" if spec.get("format", "scenes") == "scenes" else
               f"{spec['format']} prompt set {name!r}")
    return (f"Ours ({cfg['name']}): {cfg['model']['name']} + {run['sparsity']}"
            + (f" (routes {', '.join(run['routes'])}, γ_train={run.get('train_gamma')})" if run["routes"] else "")
            + f", {run['train']['steps']:,} training steps on {data}, "
            f"text encoder {d['text_encoder']['name']}; {s['solver'].capitalize()} {s['steps']} steps, the first "
            f"{exp['metrics']['n']:,} samples over the evaluation prompts ({prompts}).")


def caption(cfg: dict, experiment: str, df: pd.DataFrame) -> str:
    exp = C.experiment(cfg, experiment)
    own = exp.get("caption") or ""
    if experiment == "table5":
        official = uses_geneval_official(cfg, experiment)
        return " ".join(p for p in [own, "GenEval overall = the mean of its six tags. Literature and paper rows as "
                                    "printed in the paper's Table 5.", text_scale_note(cfg, experiment),
                                    "Our rows: GenEval's own scripts (Mask2Former and CLIP)." if official else
                                    "Our rows apply GenEval's rules (thresholds, counting, relative position) to "
                                    "an exact detector of the scenes (metrics/geneval.py), not to Mask2Former and "
                                    "CLIP on natural images: compare them with each other only."] if p)
    if experiment == "table4" and "hpsv3" in exp["metrics"]["metrics"]:
        return " ".join(p for p in [own, text_scale_note(cfg, experiment),
                                    "Score: HPSv3 (μ of its reward) per benchmark category, overall the mean over "
                                    "every image. GFLOPs per sampling step; images/s measured by the sampling job. "
                                    "Below: the paper's Table 4 as printed."] if p)
    if experiment == "table4":
        return " ".join(p for p in [own, text_scale_note(cfg, experiment),
                                    "Score: the scene-text score (a contrastive image-text model trained by the "
                                    "pipeline on real scenes; metrics/image_text.py), the embedded stand-in for "
                                    "HPSv3, per scene tag; it is not HPSv3. GFLOPs per sampling step; images/s "
                                    "measured by the sampling job on this machine. Below: the paper's Table 4 "
                                    "(HPSv3) as printed."] if p)
    if experiment == "table2":
        m, s = exp["metrics"], exp["sampling"]
        run = cfg["runs"][exp["run"] or df["run"].iloc[0]]
        refs = set(df["ref_n"])
        ref_n = refs.pop() if len(refs) == 1 else None
        first = df.iloc[0]
        parts = [own, f"Ours ({cfg['name']}): {cfg['model']['name']} + {run['sparsity']}"
                 + (f" (routes {', '.join(run['routes'])}, γ_train={run.get('train_gamma')})" if run["routes"] else "")
                 + f", {first['steps']:,} training steps at batch {first['batch_size']}, "
                 f"{s['solver'].capitalize()} {s['steps']} steps; FID over the first {m['n']:,} samples"
                 + (f" against {ref_n:,} reference images" if ref_n else "")
                 + " (FID at small N is biased upwards: compare rows only at equal N). "
                 "GFLOPs per sampling step, ΔGFLOPs relative to the unguided baseline.", seeds_note(df),
                 tuning_note(df), "Paper: SiT-XL/2 + routing, ImageNet-256, FID@50k (Table 2)."]
    elif experiment == "table3":
        ours = df[df["kind"] == "ours"] if "kind" in df else df
        parts = [own, "Literature and paper rows: ImageNet-256 FID@50k as printed in the paper's Table 3 "
                 "(sources in the CSV's source column; — where the paper prints none).",
                 "Our rows are at this config's scale and are not comparable with the ImageNet numbers."]
        if len(ours):
            parts[2:2] = [scale_note(cfg, experiment, ours), tuning_note(ours)]
    else:
        parts = [own, scale_note(cfg, experiment, df), tuning_note(df), "IS needs Inception logits (blank with the "
                 "offline network). Paper: SiT-XL/2, ImageNet-256, 160 epochs, FID@50k (Table 1)."]
    return " ".join(p for p in parts if p).strip()


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

LATEX_CHARS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
               "ω": r"$\omega$", "γ": r"$\gamma$", "Δ": r"$\Delta$", "→": r"$\to$", "∅": r"$\varnothing$",
               "−": "$-$", "—": "--", "±": r"$\pm$", **ARROW}


def latex_escape(text) -> str:
    return "".join(LATEX_CHARS.get(ch, ch) for ch in str(text))


def latex_method(label: str) -> str:
    """'+SG_FLOPS' -> '+SG$_{\\text{FLOPS}}$' (the paper's subscripts); everything else escaped."""
    out, last = [], 0
    for m in re.finditer(r"([A-Za-z]+)_([A-Za-z0-9]+)", label):
        out += [latex_escape(label[last:m.start()]), f"{latex_escape(m.group(1))}$_{{\\text{{{latex_escape(m.group(2))}}}}}$"]
        last = m.end()
    return "".join(out) + latex_escape(label[last:])


def to_markdown(shown: pd.DataFrame, caption: str = "") -> str:
    align = ["left" if h in ("Method", "Guidance", "Sparsity", "Setting", "Scale") else "right" for h in shown.columns]
    text = shown.to_markdown(index=False, colalign=align, disable_numparse=True) + "\n"
    return text + (f"\n{caption}\n" if caption else "")


def to_latex(shown: pd.DataFrame, caption: str = "", label: str = "tab:table") -> str:
    tex = shown.copy()
    for col in tex.columns:
        tex[col] = [latex_method(v) if col in ("Method", "Guidance") else latex_escape(v) for v in tex[col]]
    tex.columns = [latex_escape(h) for h in shown.columns]
    fmt = "".join("l" if h in ("Method", "Guidance", "Sparsity", "Setting", "Scale") else "r" for h in shown.columns)
    body = tex.to_latex(index=False, escape=False, column_format=fmt, caption=latex_escape(caption) or None,
                        label=label, position="t")
    body = body.replace("\\begin{table}[t]\n", "\\begin{table}[t]\n\\centering\n\\small\n", 1)
    return "% generated by sparse_guidance.tables; needs \\usepackage{booktabs}\n" + body


def write(stem, raw: pd.DataFrame, shown: pd.DataFrame, caption: str = "", csv_columns=CSV_COLUMNS,
          extra: list[tuple[pd.DataFrame, str]] = ()) -> None:
    """<stem>.csv (the raw numbers), .md and .tex (the table as shown, then each ``extra`` (shown,
    caption) table after it), each written atomically."""
    label = f"tab:{str(stem).rsplit('/', 1)[-1]}"
    write_text(f"{stem}.csv", raw.reindex(columns=list(csv_columns)).to_csv(index=False))
    write_text(f"{stem}.md", "\n".join(to_markdown(t, c) for t, c in [(shown, caption), *extra]))
    write_text(f"{stem}.tex", "\n".join(to_latex(t, c, label + ("" if i == 0 else f"-{i}"))
                                        for i, (t, c) in enumerate([(shown, caption), *extra])))
