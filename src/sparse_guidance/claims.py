"""The paper's claims, each tested on this config's results: the ``claims`` target.

    frames = load_frames(cfg)            # experiment -> results.aggregate(results.load(cfg, experiment))
    table = evaluate(frames)             # one row per part of a claim: numbers, test, verdict
    summary = by_claim(table)            # one row per claim (C1 ... C7)

A part compares two means, each over sampling seeds, in the claimed direction: it **holds** when the
difference exceeds 2 standard deviations of the difference (sqrt(s_a² + s_b²), the std over seeds of
each side; Fig. 7's distances: the standard errors over its samples), **fails** when it exceeds them
the other way, and is **inconclusive** within them, or when a side has no std (a single seed). A claim
holds when every part holds, fails when a part fails, and is inconclusive otherwise. The tests, the
metrics and the seeds are fixed by the config before any run; nothing here chooses among results.
"""
from __future__ import annotations

import math

import pandas as pd

from . import config as C
from . import results as R

# id -> (the claim as the paper makes it, the experiments it rests on)
CLAIMS = {
    "C1": ("SG beats CFG in FID on a routed and on a masked model (Tables 1, 2)", ("table1", "table2")),
    "C2": ("Unguided quality falls as the inference sparsity γ rises (Fig. 4)", ("fig4",)),
    "C3": ("SG_FLOPS costs fewer FLOPs than unguided sampling and scores a better FID (Table 2)", ("table2",)),
    "C4": ("The (γ_strong, γ_weak) valley moves to higher sparsity as ω grows (Figs. 6, 8)", ("fig6", "fig8")),
    "C5": ("SG stays closer to the conditional prediction than CFG (Fig. 7 left)", ("fig7",)),
    "C6": ("Dense finetuning does not lift CFG to SG's level (Fig. 5)", ("fig5",)),
    "C7": ("AG + SG beats AG, and tuning γ compensates for the auxiliary checkpoint's age (Fig. 7 right)", ("fig7",)),
}
EXPERIMENTS = C.CLAIM_EXPERIMENTS
assert set(EXPERIMENTS) == {e for _, exps in CLAIMS.values() for e in exps}
CSV_COLUMNS = ("claim", "statement", "part", "numbers", "test", "difference", "std", "verdict")
K = 2.0  # a difference counts beyond K standard deviations of itself


# ---------------------------------------------------------------------------------------------
# One comparison
# ---------------------------------------------------------------------------------------------

def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def compare(better: tuple, worse: tuple, *, lower_is_better: bool = True) -> dict:
    """Is ``better`` = (mean, std) better than ``worse``: the margin (positive: as claimed), the std of
    the margin (None without a std on both sides) and the verdict."""
    (a, sa), (b, sb) = [(_num(m), _num(s)) for m, s in (better, worse)]
    margin = (b - a) if lower_is_better else (a - b)
    std = math.hypot(sa, sb) if sa is not None and sb is not None else None
    if std is None:
        verdict = "inconclusive"
    elif margin > K * std:
        verdict = "holds"
    elif margin < -K * std:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    return {"difference": margin, "std": std, "verdict": verdict}


def _pm(mean, std, digits=2) -> str:
    return f"{mean:.{digits}f}" + ("" if _num(std) is None else f" ± {std:.{digits}f}")


def _part(claim: str, part: str, numbers: str, test: str, result: dict, compared: bool = True) -> dict:
    if compared and result["std"] is None and result["verdict"] == "inconclusive":
        test += " (no std: a single sampling seed)"
    return {"claim": claim, "statement": CLAIMS[claim][0], "part": part, "numbers": numbers, "test": test, **result}


def _missing(claim: str, why: str) -> dict:  # nothing to compare: the reason is the whole test
    return {"claim": claim, "statement": CLAIMS[claim][0], "part": "—", "numbers": "—", "test": why,
            "difference": None, "std": None, "verdict": "inconclusive"}


def _row(df: pd.DataFrame, row: str) -> dict | None:
    got = df[df["row"] == row]
    return got.iloc[0].to_dict() if len(got) else None


def _metric(r: dict, key: str = "fid") -> tuple:
    return r.get(key), r.get(f"{key}_std")


# ---------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------

def _pair(claim, part, df, good, bad, label, what="FID") -> dict:
    a, b = _row(df, good), _row(df, bad)
    if a is None or b is None:
        return _missing(claim, f"{part}: rows {good!r} and {bad!r} are not in the results")
    res = compare(_metric(a), _metric(b))
    numbers = f"{a['method']} ({a['setting']}) {_pm(*_metric(a))} vs {b['method']} ({b['setting']}) {_pm(*_metric(b))}"
    seeds = a.get("seeds", 1)
    return _part(claim, part, numbers + f" ({label}, {seeds} seed{'s' if seeds != 1 else ''})",
                 f"{what}: {good} below {bad}", res)


def c1(frames, labels) -> list[dict]:
    parts = []
    if "table1" in frames:
        t1 = frames["table1"]
        parts += [_pair("C1", "Table 1, masked", t1, "sg_masking", "cfg_masking", labels["table1"]),
                  _pair("C1", "Table 1, routed", t1, "sg_routing", "cfg_routing", labels["table1"])]
    if "table2" in frames:
        parts.append(_pair("C1", "Table 2, SG_FID vs CFG", frames["table2"], "sg_fid", "cfg", labels["table2"]))
    return parts


def c2(frames, labels) -> list[dict]:
    df = frames["fig4"].dropna(subset=["gamma"]).sort_values("gamma")
    lo, hi = df.iloc[0].to_dict(), df.iloc[-1].to_dict()
    res = compare(_metric(lo), _metric(hi))  # dense inference better than the sparsest
    curve = ", ".join(f"γ {r['gamma']:g}: {_pm(r['fid'], r.get('fid_std'))}" for r in df.to_dict("records"))
    return [_part("C2", "Fig. 4, unguided", f"{curve} ({labels['fig4']})",
                  f"{labels['fig4']}: γ = {lo['gamma']:g} below γ = {hi['gamma']:g}", res)]


def c3(frames, labels) -> list[dict]:
    df = frames["table2"]
    sg, ung = _row(df, "sg_flops"), _row(df, "unguided")
    if sg is None or ung is None:
        return [_missing("C3", "rows sg_flops and unguided are not in Table 2's results")]
    cost = {"difference": ung["gflops"] - sg["gflops"], "std": 0.0,
            "verdict": "holds" if sg["gflops"] < ung["gflops"] else "fails"}  # counted, not measured: no noise
    return [_part("C3", "GFLOPs per step", f"SG_FLOPS {sg['gflops']:.6g} vs unguided {ung['gflops']:.6g} GFLOPs",
                  "GFLOPs (counted): sg_flops below unguided", cost),
            _pair("C3", "FID", df, "sg_flops", "unguided", labels["table2"])]


def _best(df: pd.DataFrame, where) -> dict | None:
    cells = df[where] if where is not None else df
    cells = cells.dropna(subset=["fid"])
    return cells.loc[cells["fid"].astype(float).idxmin()].to_dict() if len(cells) else None


def _cell(df, omega, gs, gw) -> dict | None:
    got = df[(df["omega"] == omega) & (df["gamma_strong"] == gs) & (df["gamma_weak"] == gw)]
    return got.iloc[0].to_dict() if len(got) else None


def c4(frames, labels) -> list[dict]:
    """Per grid: the best cell at the smallest and the largest ω; at the largest ω, the best cell
    against the cell of the smallest ω's optimum, when their total sparsity γ_strong + γ_weak differs."""
    grids = []
    if "fig6" in frames:
        grids.append(("Fig. 6, AG + SG", frames["fig6"], labels["fig6"]))
    if "fig8" in frames:
        df = frames["fig8"]
        for model in dict.fromkeys(df["model"]) if "model" in df else [None]:
            grids.append((f"Fig. 8, {model}", df[df["model"] == model] if model else df, labels["fig8"]))
    parts = []
    for name, df, label in grids:
        df = df.dropna(subset=["omega", "gamma_strong", "gamma_weak"])
        omegas = sorted(set(df["omega"]))
        if len(omegas) < 2:
            parts.append(_missing("C4", f"{name}: one ω only"))
            continue
        lo = _best(df, df["omega"] == omegas[0])
        hi = _best(df, df["omega"] == omegas[-1])
        if lo is None or hi is None:
            parts.append(_missing("C4", f"{name}: no scores at ω {omegas[0]:g} or {omegas[-1]:g}"))
            continue
        s_lo, s_hi = lo["gamma_strong"] + lo["gamma_weak"], hi["gamma_strong"] + hi["gamma_weak"]
        numbers = (f"best at ω {omegas[0]:g}: γ {lo['gamma_strong']:g}/{lo['gamma_weak']:g} {_pm(*_metric(lo))}; "
                   f"at ω {omegas[-1]:g}: γ {hi['gamma_strong']:g}/{hi['gamma_weak']:g} {_pm(*_metric(hi))} ({label})")
        if s_hi == s_lo:
            res = {"difference": 0.0, "std": None, "verdict": "inconclusive"}
            test = "the optimum's γ_strong + γ_weak at the largest ω above that at the smallest (it did not move)"
            parts.append(_part("C4", name, numbers, test, res, compared=False))  # no comparison to make
            continue
        other = _cell(df, omegas[-1], lo["gamma_strong"], lo["gamma_weak"])  # the old optimum at the large ω
        if other is None:
            parts.append(_missing("C4", f"{name}: no cell γ {lo['gamma_strong']:g}/{lo['gamma_weak']:g} at "
                                        f"ω {omegas[-1]:g} to compare the optimum with"))
            continue
        res = compare(_metric(hi), _metric(other))  # the new optimum is really better there
        if s_hi < s_lo and res["verdict"] == "holds":
            res = {**res, "verdict": "fails"}  # it moved, significantly, to lower sparsity
        elif s_hi < s_lo:
            res = {**res, "verdict": "inconclusive"}
        test = (f"at ω {omegas[-1]:g}, the optimum (γ sum {s_hi:g}) below the cell of ω {omegas[0]:g}'s optimum "
                f"(γ sum {s_lo:g}: {_pm(*_metric(other))}), with the sum higher")
        parts.append(_part("C4", name, numbers, test, res))
    return parts


def c5(frames, labels) -> list[dict]:
    df = frames["fig7"]
    comp = df[df["role"] == "compare"] if "role" in df else df.iloc[:0]
    rows = {r["recipe"]: r for r in comp.to_dict("records")}
    cfg_row = next((r for k, r in rows.items() if k == "cfg"), None)
    sg_row = next((r for k, r in rows.items() if k.startswith("sg")), None)
    if cfg_row is None or sg_row is None:
        return [_missing("C5", "Fig. 7 has no compare rows for CFG and SG")]

    def dist(r):  # mean over seeds ± their std, else ± the standard error over samples
        if _num(r.get("distance_value_std")) is not None:
            return r["distance_value"], r["distance_value_std"]
        return r["distance_value"], r["distance_std"] / math.sqrt(r["distance_n"])

    res = compare(dist(sg_row), dist(cfg_row))
    name = sg_row.get("distance") or "distance"
    seeded = _num(sg_row.get("distance_value_std")) is not None
    return [_part("C5", "Fig. 7 left", f"SG {_pm(*dist(sg_row), 4)} vs CFG {_pm(*dist(cfg_row), 4)} ({name} to the "
                  f"conditional prediction, {'std over seeds' if seeded else 'standard errors over samples'})",
                  f"{name}: SG below CFG", res)]


def c6(frames, labels) -> list[dict]:
    df = frames["fig5"]
    ft = df[df["grid"] == "cfg_ft"] if "grid" in df else df.iloc[:0]
    sg = df[df["grid"] == "sg"] if "grid" in df else df.iloc[:0]
    if not len(ft) or not len(sg):
        return [_missing("C6", "Fig. 5 has no cfg_ft or sg grid")]
    last_ft = ft[ft["iteration"] == ft["iteration"].max()]
    best_ft = _best(last_ft, None)
    best_sg = _best(sg[sg["iteration"] == sg["iteration"].max()], None)
    if best_ft is None or best_sg is None:
        return [_missing("C6", "Fig. 5's final cfg_ft or sg cells have no scores")]
    res = compare(_metric(best_sg), _metric(best_ft))
    return [_part("C6", "Fig. 5", f"SG at {best_sg['iteration']:,} steps (ω {best_sg['omega']:g}) {_pm(*_metric(best_sg))} "
                  f"vs CFG + dense finetuning at {best_ft['iteration']:,} (ω {best_ft['omega']:g}) "
                  f"{_pm(*_metric(best_ft))} (best ω each, {labels['fig5']})",
                  f"{labels['fig5']}: SG below CFG + dense finetuning", res)]


def c7(frames, labels) -> list[dict]:
    df = frames["fig7"]
    if "aux_step" not in df or "grid" not in df:
        return [_missing("C7", "Fig. 7 has no grids over aux_step")]
    ag_sg, ag = df[df["grid"] == "ag_sg"], df[df["grid"] == "ag"]
    if not len(ag_sg) or not len(ag):
        return [_missing("C7", "Fig. 7 needs an ag_sg grid and an ag grid (AG alone) over the same aux_step")]
    parts, best = [], {}
    for step in sorted(set(ag_sg["aux_step"].dropna())):
        b, a = _best(ag_sg, ag_sg["aux_step"] == step), _best(ag, ag["aux_step"] == step)
        best[step] = b
        if b is None or a is None:
            parts.append(_missing("C7", f"no AG or AG + SG scores at aux step {step:g}"))
            continue
        parts.append(_part("C7", f"aux step {step:g}: AG + SG vs AG",
                           f"AG + SG (γ {b['gamma_strong']:g}/{b['gamma_weak']:g}, ω {b['omega']:g}) {_pm(*_metric(b))} "
                           f"vs AG (ω {a['omega']:g}) {_pm(*_metric(a))} ({labels['fig7']})",
                           f"{labels['fig7']}: the best AG + SG cell below AG", compare(_metric(b), _metric(a))))
    best = {s: r for s, r in best.items() if r is not None}
    if not best:
        return parts or [_missing("C7", "the ag_sg grid has no scores")]
    top = min(best.values(), key=lambda r: r["fid"])
    worst = max(best.values(), key=lambda r: r["fid"])
    res = compare(_metric(top), _metric(worst))
    # compensation: no aux step's best is significantly worse than the best one's
    verdict = {"holds": "fails", "fails": "holds", "inconclusive": "holds" if res["std"] is not None else "inconclusive"}
    parts.append(_part("C7", "γ compensates for the aux age",
                       "best per aux step: " + "; ".join(f"{s:g}: γ_strong {r['gamma_strong']:g}, {_pm(*_metric(r))}"
                                                        for s, r in best.items()) + f" ({labels['fig7']})",
                       f"{labels['fig7']}: the worst aux step's best cell within {K:g} std of the best one's",
                       {**res, "verdict": verdict[res["verdict"]]}))
    return parts


TESTS = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7}


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def load_frames(cfg: dict, experiments=EXPERIMENTS) -> dict:
    """The aggregated results (mean, std over seeds) of the experiments the claims rest on."""
    return {e: R.aggregate(R.load(cfg, e)) for e in experiments if e in cfg["experiments"]}


def labels_of(cfg: dict, frames: dict) -> dict:
    """Each experiment's quality metric as named in its tables (FID@200, classifier FD@100, ...)."""
    return {e: R.metric_label(cfg, e)[1] for e in frames}


def evaluate(frames: dict, labels: dict | None = None) -> pd.DataFrame:
    """One row per part of each claim whose experiments are in ``frames`` (the others: inconclusive,
    their experiments named)."""
    labels = {**{e: "FID" for e in frames}, **(labels or {})}
    rows = []
    for claim, (_, exps) in CLAIMS.items():
        have = [e for e in exps if e in frames]
        if not have:
            rows.append(_missing(claim, f"no results of {', '.join(exps)} in this config"))
            continue
        rows += TESTS[claim](frames, labels) or [_missing(claim, f"nothing to compare in {', '.join(have)}")]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def verdict_of(verdicts) -> str:
    verdicts = list(verdicts)
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


def by_claim(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its statement, the numbers and tests of its parts, the combined verdict."""
    out = []
    for claim, group in table.groupby("claim", sort=False):
        parts = group.to_dict("records")
        many = len(parts) > 1
        out.append({"Claim": claim, "Statement": parts[0]["statement"],
                    "Numbers": "; ".join((f"{p['part']}: " if many else "") + p["numbers"] for p in parts),
                    "Test": "; ".join((f"{p['part']}: " if many else "") + f"{p['test']} → {p['verdict']}"
                                      for p in parts) if many else parts[0]["test"],
                    "Verdict": verdict_of(p["verdict"] for p in parts)})
    return pd.DataFrame(out)


def caption(cfg: dict) -> str:
    return (f"The paper's claims tested on config {cfg['name']!r} (claims.py). A part holds when the difference "
            f"in the claimed direction exceeds {K:g} standard deviations of the difference (std over sampling "
            "seeds), fails when it exceeds them the other way, and is inconclusive otherwise or without a std "
            "(a single seed). A claim holds when every part holds and fails when any part fails. "
            "The numbers are this scale's, not the paper's.")
