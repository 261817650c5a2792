"""One experiment's results as a table (pandas), from the files its workflow jobs wrote.

    df = load(cfg, "fig6")      # one row per config row: settings, tags, metrics, GFLOPs, the paper's values
    df = aggregate(df)          # one row per base row: mean and <metric>_std over sampling seeds
    images = row_images(cfg, "table2/cfg", 10, classes=[0, 1])

Every row is checked against the configuration it is loaded under: samples or metrics made under
other settings (the digest their job recorded differs from the one this config gives) are never
combined with new ones; the error names the file and the command that remakes it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import config as C
from .data.fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .errors import ConfigError
from .guidance import resolve_recipe
from .layout import Layout, read_made
from .tuning import describe as describe_tuning, tuned

METRIC_KEYS = ("fid", "sfid", "is", "prec", "rec", "acc", "distance_value")
# a text-to-image row's scores -> column prefix (GenEval's port on the scenes and GenEval's own
# scripts share one: a config has one or the other)
TEXT_METRICS = {"geneval": "geneval", "geneval_official": "geneval", "scene_text": "scene", "hpsv3": "hps"}


def text_metric_columns(m: dict) -> dict:
    """A text-to-image row's scores as columns: geneval_<tag> (and geneval_overall, the mean of
    GenEval's six tags), scene_<tag> and scene_overall (the scene-text score), hps_<category> and
    hps_overall (HPSv3), and <prefix>_n_<tag>."""
    out = {}
    for key, prefix in TEXT_METRICS.items():
        for tag, v in (m.get(key) or {}).items():
            if tag == "n":
                out.update({f"{prefix}_n_{t}": c for t, c in v.items()})
            elif tag != "name":
                out[f"{prefix}_{tag}"] = v
    return out


def metric_label(cfg: dict, experiment: str, key: str | None = None) -> tuple[str, str]:
    """(column, axis label) of an experiment's quality metric: ``plot.metric`` (default fid), named
    for its feature network (classifier FD is never called FID)."""
    exp = C.experiment(cfg, experiment)
    key = key or exp["plot"].get("metric", "fid")
    m = C.metrics_of(cfg, experiment)   # a figure of another experiment's rows: scored at that one's n
    return key, C.score_label(m["extractor"], key, m["n"] if key == "fid" else None)


def load(cfg: dict, experiment: str) -> pd.DataFrame:
    """One row per row of an experiment: its setting (method, setting, recipe, omega, run, sparsity,
    step, iteration, seed, source), its tags as columns, its metrics (fid, sfid, is, prec, rec, acc;
    distance_* for Fig. 7's paired distances), GFLOPs per sampling step (and ΔGFLOPs to the baseline
    row), sampling time and the paper's values (paper_<key>). Rows that reuse another experiment's
    samples (same_as) read that row's files."""
    layout, exp = Layout(cfg), C.experiment(cfg, experiment)
    paper = C.paper_results().get(experiment, {})
    base_of_baseline = exp["rows"][exp["baseline"]].get("tags", {}).get("base", exp["baseline"])
    records, baseline_gflops = [], None
    for rid, own in exp["rows"].items():
        e2, r2 = C.resolve_source(cfg["experiments"], experiment, rid)
        spec, choice = tuned(cfg, e2, r2)  # a tuned row: the arguments its tuning chose
        m = read_made(cfg, "evaluate", layout.metrics(e2, r2), experiment=e2, row=r2)
        info = read_made(cfg, "sample", layout.sample_info(e2, r2), experiment=e2, row=r2)
        recipe = resolve_recipe(spec["recipe"], num_steps=cfg["experiments"][e2]["sampling"]["steps"])
        train = cfg["runs"][spec["run"]]["train"]
        tags = {**spec.get("tags", {}), **own.get("tags", {})}
        base = tags.get("base", rid)
        rec = {"row": rid, "base": base, "method": own.get("label") or spec["label"],
               "setting": C.describe_recipe(recipe, spec.get("aux")), "recipe": recipe.name, "omega": recipe.omega,
               "run": spec["run"], "sparsity": cfg["runs"][spec["run"]]["sparsity"],
               "step": spec.get("step") or train["steps"], "steps": train["steps"],
               "iteration": C.iteration(cfg, spec["run"], spec.get("step")), "batch_size": train["batch_size"],
               "seed": spec["seed"], "source": f"{e2}/{r2}", "fid_n": m.get("fid_n"), "ref_n": m.get("ref_n"),
               "extractor": m.get("extractor"), "gflops": info["gflops"], "delta_gflops": None,
               "seconds_per_sample": info.get("seconds_per_sample"), "tuned": describe_tuning(choice),
               **{k: m.get("is_mean" if k == "is" else k) for k in METRIC_KEYS},
               "distance": m.get("distance"), "distance_std": m.get("distance_std"), "distance_n": m.get("distance_n"),
               **{k: v for k, v in tags.items() if k not in ("base", "seed")},
               "baseline": base == base_of_baseline,
               **{f"paper_{k}": paper.get(base, {}).get(k) for k in C.PAPER_KEYS}}
        if cfg.get("track") == "text_to_image":  # scores per tag; the paper's per category (Tables 4-5)
            rec.update(text_metric_columns(m))
            rec["images_per_s"] = 1 / info["seconds_per_sample"] if info.get("seconds_per_sample") else None
            # the paper's values of the row, or of the row it reuses (fig1_t2i shows Table 4's rows)
            own_paper = paper.get(base) or C.paper_results().get(e2, {}).get(spec.get("tags", {}).get("base", r2), {})
            rec.update({f"paper_{k}": v for k, v in own_paper.items()})
        records.append(rec)
        if rid == exp["baseline"]:
            baseline_gflops = info["gflops"]
    for rec in records:  # ΔGFLOPs: relative to the experiment's baseline row (Table 2)
        rec["delta_gflops"] = round(rec["gflops"] - baseline_gflops, 6)
    return pd.DataFrame(records, dtype=object)


def aggregate(df: pd.DataFrame, keys=METRIC_KEYS) -> pd.DataFrame:
    """Rows replicated over sampling seeds (experiment ``seeds:``) -> one row per base row with the mean
    of each metric, its standard deviation over seeds (``<key>_std``, ddof 1) and ``seeds``; the other
    columns are the first replicate's. Rows without replicates pass through (seeds 1, std None)."""
    out = []
    for base, group in df.groupby("base", sort=False):
        rec = {**group.iloc[0].to_dict(), "row": base, "seeds": len(group)}
        for k in keys:
            vals = [v for v in group[k] if v is not None and not (isinstance(v, float) and np.isnan(v))]
            rec[k] = float(np.mean(vals)) if vals else None
            rec[f"{k}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out.append(rec)
    frame = pd.DataFrame(out, dtype=object)
    return frame.drop(columns=["base"])


def named_columns(cfg: dict, experiment: str, df: pd.DataFrame) -> pd.DataFrame:
    """The DataFrame a report shows and writes to its CSV, its score columns named for what measured
    them: under the classifier extractor, fid -> classifier_fd (and _std, _n), never FID. (The paper's
    own values, paper_fid, are FIDs and keep their name.)"""
    if C.experiment(cfg, experiment)["metrics"]["extractor"] != "classifier":
        return df
    return df.rename(columns={"fid": "classifier_fd", "fid_std": "classifier_fd_std", "fid_n": "classifier_fd_n"})


def class_names(cfg: dict, classes) -> list[str]:
    """Names of class labels for a figure: Fashion-MNIST's own names, else 'class <k>' (ImageNet's
    names are not shipped)."""
    if cfg["data"].get("dataset") == "fashion_mnist":
        return [FASHION_MNIST_CLASSES[int(c)] for c in classes]
    return [f"class {int(c)}" for c in classes]


def grid_title(cfg: dict, experiment: str, classes=None) -> str:
    """A sample grid's title: the figure, its caption, the classes it shows and the preset, e.g.
    'Fig. A6: Unguided, SG, AG and CFG; classes 5-9 (embedded)', so that grids of one caption
    (Figs. A5-A6, A7-A9) are told apart."""
    number = experiment[3:] if experiment.startswith("fig") else experiment
    caption = C.experiment(cfg, experiment).get("caption") or "Uncurated samples"
    shown = ""
    if classes:
        c = [int(k) for k in classes]
        span = len(c) > 2 and c == list(range(c[0], c[0] + len(c)))
        shown = f"; classes {c[0]}-{c[-1]}" if span else "; " + ("class " if len(c) == 1 else "classes ") + ", ".join(map(str, c))
    return f"Fig. {number}: {caption}{shown} ({cfg['name']})"


def grid_column_titles(cfg: dict, labels) -> list[str] | None:
    """Column titles of a sample grid whose columns go class by class (``row_samples`` with
    ``classes``): each class's name above its first column, the others blank; None without labels.
    From the labels of the images shown, so a class with fewer samples than its share keeps its name
    above its own columns."""
    if labels is None:
        return None
    labels = [int(c) for c in labels]
    names = dict(zip(labels, class_names(cfg, labels)))
    return [names[c] if k == 0 or c != labels[k - 1] else "" for k, c in enumerate(labels)]


def sample_grid(cfg: dict, df: pd.DataFrame, ncols: int, classes=None) -> tuple[dict, list[str] | None]:
    """Figs. A5-A9: {row label (method, ω): its first ``ncols`` samples} and the column titles (each
    class named above its first column, from the samples shown; None without ``classes``)."""
    rows = {grid_row_label(r): row_samples(cfg, r["source"], ncols, classes) for r in df.to_dict("records")}
    images = {name: imgs for name, (imgs, _) in rows.items()}
    if not classes or not rows:
        return images, None
    shown = min(len(i) for i in images.values())
    return images, grid_column_titles(cfg, next(iter(rows.values()))[1][:shown])


def grid_row_label(record: dict) -> str:
    """A sample grid's row label: the method, and its guidance scale where it has one (ω != 1)."""
    omega = record.get("omega")
    if omega is None or (isinstance(omega, float) and math.isnan(omega)) or float(omega) == 1.0:
        return str(record["method"])
    return f"{record['method']}\nω = {float(omega):g}"


def row_samples(cfg: dict, source: str, n: int, classes=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The first n samples of a row ('<experiment>/<row>' whose samples exist; uint8 NHWC) and their
    labels, of the given classes only when ``classes`` is set (class by class, in that order: column j
    of every row shows the same class and noise index; a class with fewer samples gives fewer columns)."""
    e2, r2 = source.split("/")
    with np.load(Layout(cfg).samples(e2, r2)) as z:
        images = z["arr_0"]
        labels = z["arr_1"] if "arr_1" in z.files else None
    if classes is not None:
        if labels is None:
            raise ConfigError(f"samples of {e2}/{r2} carry no labels (arr_1); resample them to pick classes.")
        per = -(-n // len(classes))
        pick = np.concatenate([np.flatnonzero(labels == c)[:per] for c in classes])
        images, labels = images[pick], labels[pick]
    return images[:n], (None if labels is None else labels[:n])


def row_images(cfg: dict, source: str, n: int, classes=None) -> np.ndarray:
    """``row_samples`` without the labels."""
    return row_samples(cfg, source, n, classes)[0]
