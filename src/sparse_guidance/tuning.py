"""Every method at its own guidance scale: a row with ``tune:`` chooses its recipe's arguments among
candidates scored on a validation sampling seed, and reports on the experiment's own seeds.

    experiments:
      table2:
        seeds: [0, 1, 2]                                    # what the table reports (mean ± std)
        tuning: {seed: 100, by: fid, sampling: {num_samples: 100}, metrics: {extractor: classifier, n: 100}}
        rows:
          cfg: {tune: {omega: [1.25, 1.5, 2.0, 2.5, 3.0]}}  # SG rows may add gamma_pairs: [[0.5, 0.9], ...]

The config makes the experiment ``table2.tune`` (one row per candidate, sampled at seed 100 and
scored like any row: config.tuning_experiment); the job ``tune`` (this module's ``select``) writes
``tuning/table2/cfg.json`` with every candidate's score and the choice; the rows of ``cfg`` (one per
reported seed) sample with the chosen arguments (``tuned``). Selection and report never share
samples (the config refuses a validation seed the experiment reports), and the choice is made by
the score and seed fixed in the config before any run: never by the score a table reports.
"""
from __future__ import annotations

import copy
from pathlib import Path

from . import config as C
from .errors import ConfigError
from .io import write_json
from .layout import Layout, job_digest, read_made

ARG_NAMES = {"omega": "ω", "gamma_strong": "γ_strong", "gamma_weak": "γ_weak", "gamma": "γ"}


def is_tuned(spec: dict) -> bool:
    return bool(spec.get("tune"))


def select(cfg: dict, experiment: str, row: str) -> dict:
    """The tune job: read the scores of a tuned row's candidates (metrics of ``<experiment>.tune``),
    choose the best by ``tuning.by`` (the first of equals, in the order of the config) and write
    ``tuning/<experiment>/<row>.json``: the candidates with their scores, the choice, how it was made."""
    layout, exp = Layout(cfg), C.experiment(cfg, experiment)
    t, scored = exp["tuning"], C.tuning_name(experiment)
    candidates = []
    for cid, args in C.tuning_candidates(cfg, experiment, row).items():
        m = read_made(cfg, "evaluate", layout.metrics(scored, cid), experiment=scored, row=cid)
        score = m.get(t["by"])
        if score is None or score != score:
            raise ConfigError(f"candidate {scored}/{cid} has no {t['by']} score; add {t['by']} to "
                              f"experiments.{experiment}.tuning.metrics.metrics.")
        candidates.append({"row": cid, **args, "score": float(score)})
    best = C.BY_DIRECTION[t["by"]](candidates, key=lambda c: c["score"])
    tuning_exp = C.experiment(cfg, scored)
    out = {"experiment": experiment, "row": row, "by": t["by"], "seed": t["seed"],
           "score_label": C.score_label(tuning_exp["metrics"]["extractor"], t["by"], tuning_exp["metrics"]["n"]),
           "num_samples": tuning_exp["sampling"]["num_samples"], "axes": exp["rows"][_any_row(exp, row)]["tune"],
           "candidates": candidates, "chosen_row": best["row"],
           "chosen": {k: v for k, v in best.items() if k not in ("row", "score")}, "score": best["score"],
           "config_digest": job_digest(cfg, "tune", experiment=experiment, row=row)}
    write_json(layout.tuning(experiment, row), out)
    return out


def _any_row(exp: dict, base: str) -> str:
    """A row of the experiment written as ``base`` (itself, or one of its replicates over seeds)."""
    return next(r for r, spec in exp["rows"].items() if C.tuned_base(r, spec) == base)


def choice(cfg: dict, experiment: str, row: str) -> dict | None:
    """The tune job's record for a row of an experiment (None if the row is not tuned); an error that
    names the command if it is missing or was made under other settings."""
    spec = C.row_spec(cfg, experiment, row)
    if not is_tuned(spec):
        return None
    base = C.tuned_base(row, spec)
    path = Layout(cfg).tuning(experiment, base)
    if not Path(path).is_file():
        raise ConfigError(f"row {experiment}/{row} is tuned, and its choice {path!r} is not made yet: "
                          f"snakemake {path} --config preset={cfg['name']}.")
    return read_made(cfg, "tune", path, experiment=experiment, row=base)


def tuned(cfg: dict, experiment: str, row: str) -> tuple[dict, dict | None]:
    """(spec, choice) of a row as it samples: a tuned row's recipe with the arguments its tune job
    chose, and that job's record; an untuned row's spec as it is, and None."""
    spec = C.row_spec(cfg, experiment, row)
    record = choice(cfg, experiment, row)
    if record is None:
        return spec, None
    spec = copy.deepcopy(spec)
    recipe = spec["recipe"]
    spec["recipe"] = {**({"preset": recipe} if isinstance(recipe, str) else recipe), **record["chosen"]}
    return spec, record


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(record: dict | None) -> str | None:
    """'ω = 2, tuned on seed 100 by classifier FD@100 over ω ∈ {1.25, 1.5, 2, 2.5, 3}' (None: not tuned)."""
    if record is None:
        return None
    chosen = ", ".join(f"{ARG_NAMES.get(k, k)} = {_fmt(v)}" for k, v in record["chosen"].items())
    over = []
    for k, values in record["axes"].items():
        if k == C.TUNE_PAIRS:
            over.append("(γ_strong, γ_weak) ∈ {" + ", ".join(f"({_fmt(a)}, {_fmt(b)})" for a, b in values) + "}")
        else:
            over.append(f"{ARG_NAMES.get(k, k)} ∈ {{" + ", ".join(map(_fmt, values)) + "}")
    return (f"{chosen}, tuned on seed {record['seed']} by {record['score_label']} ({record['num_samples']} samples) "
            f"over {' × '.join(over)}")
