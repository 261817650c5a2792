"""Rows at their own guidance scale (tuning.py): the candidates the config makes, the choice on the
validation seed, the reported rows sampling with it, and what refuses to mix selection and report."""
from __future__ import annotations

from pathlib import Path

import pytest

from sparse_guidance import config as X
from sparse_guidance import evaluation as E, results as R, stages as P, tables as T, tuning as TU
from sparse_guidance.errors import ConfigError
from sparse_guidance.io import read_json, write_json
from sparse_guidance.layout import Layout, job_digest

fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                             reason="Debian's dataset-fashion-mnist is not installed")
TUNING = {"seed": 100, "by": "fid", "sampling": {"num_samples": 16}, "metrics": {"extractor": "classifier",
                                                                                  "metrics": ["fid", "acc"]}}


def load(tmp_path=None, **table2):
    over = {"experiments": {"table2": table2}}
    if tmp_path is not None:
        over.update(results_dir=str(tmp_path / "smoke"), data={"train_limit": 64})
    return X.load_config("smoke", over)


def bad(needle, **table2):
    with pytest.raises(ConfigError) as e:
        load(**table2)
    assert needle in str(e.value), str(e.value)


def test_a_tuned_row_makes_one_candidate_per_setting_on_the_validation_seed():
    cfg = load(seeds=[0, 1, 2], tuning=TUNING,
               rows={"sg_flops": {"recipe": {"preset": "sg", "omega": 2.5},
                                  "tune": {"omega": [2.0, 3.0], "gamma_pairs": [[0.5, 0.9], [0.2, 0.7]]}}})
    tune = cfg["experiments"]["table2.tune"]
    assert tune["tuning_of"] == "table2" and tune["sampling"]["num_samples"] == 16
    assert tune["metrics"]["extractor"] == "classifier"
    assert X.reported(cfg)[-1] == "figA9" and "table2.tune" not in X.reported(cfg)
    sg = {r: spec for r, spec in tune["rows"].items() if spec["tags"]["tuned"] == "sg_flops"}
    assert list(sg) == ["sg_flops-w2-gs0.5-gw0.9", "sg_flops-w2-gs0.2-gw0.7", "sg_flops-w3-gs0.5-gw0.9",
                        "sg_flops-w3-gs0.2-gw0.7"]
    cell = sg["sg_flops-w3-gs0.2-gw0.7"]
    assert cell["seed"] == 100 and cell["recipe"] == {"preset": "sg", "omega": 3.0, "gamma_strong": 0.2,
                                                        "gamma_weak": 0.7}
    assert X.tuning_candidates(cfg, "table2", "sg_flops")["sg_flops-w2-gs0.2-gw0.7"] == {
        "omega": 2.0, "gamma_strong": 0.2, "gamma_weak": 0.7}
    reported = cfg["experiments"]["table2"]["rows"]
    assert [reported[f"sg_flops.s{s}"]["seed"] for s in (0, 1, 2)] == [0, 1, 2]  # the seeds it reports
    with pytest.raises(ConfigError, match="not tuned"):
        X.tuning_candidates(cfg, "table2", "unguided")


def test_selection_and_report_never_share_a_seed():
    bad("tuning.seed=1 is a seed the experiment reports", seeds=[0, 1], tuning={**TUNING, "seed": 1},
        rows={"cfg": {"tune": {"omega": [1.5]}}})
    bad("tuning.seed=0 is a seed the experiment reports", tuning={**TUNING, "seed": 0},  # the sampling seed
        rows={"cfg": {"tune": {"omega": [1.5]}}})


@pytest.mark.parametrize("case", ["no tuning", "full recipe", "row axis", "pairs", "recipe argument", "made name",
                                  "same_as"])
def test_bad_tuning_is_named(case):
    if case == "no tuning":
        with pytest.raises(ConfigError, match="needs experiments.table1.tuning"):
            X.load_config("smoke", {"experiments": {"table1": {"rows": {"cfg_routing": {"tune": {"omega": [2]}}}}}})
    elif case == "full recipe":
        full = {"name": "mine", "omega": 2.0, "strong": {"model": "main"}, "weak": {"model": "main", "cond": "null"}}
        bad("recipe must be a preset name", tuning=TUNING, rows={"cfg": {"recipe": full, "tune": {"omega": [1.5]}}})
    elif case == "row axis":
        bad("tunes its recipe's arguments", tuning=TUNING, rows={"cfg": {"tune": {"step": [10]}}})
    elif case == "pairs":
        bad("must list [gamma_strong, gamma_weak] pairs", tuning=TUNING, rows={"sg_flops": {"tune": {
            "gamma_pairs": [[0.5, 0.9, 1.0]]}}})
    elif case == "recipe argument":
        bad("rows.cfg.tune (candidate cfg-gs0.5)", tuning=TUNING, rows={"cfg": {"tune": {"gamma_strong": [0.5]}}})
    elif case == "made name":
        with pytest.raises(ConfigError, match="made by the config"):
            X.load_config("smoke", {"experiments": {"table2.tune": {"rows": {}}}})
    else:
        with pytest.raises(ConfigError, match="same_as row is tuned where its samples are"):
            X.load_config("smoke", {"experiments": {"fig1": {"rows": {"cfg": {"tune": {"omega": [2]}}}}}})


def test_rows_shown_from_a_replicated_row_follow_its_seeds():
    cfg = load(seeds=[0, 1])
    fig1 = cfg["experiments"]["fig1"]["rows"]  # unseeded: one row per seed of the row it names
    assert fig1["cfg.s1"]["same_as"] == "table2/cfg.s1" and fig1["cfg.s1"]["tags"]["base"] == "cfg"
    assert cfg["experiments"]["fig1"]["baseline"] == "unguided.s0" == cfg["experiments"]["table2"]["baseline"]
    seeded = X.load_config("smoke", {"experiments": {"table2": {"seeds": [0, 1]}, "table3": {"seeds": [1]}}})
    assert list(seeded["experiments"]["table3"]["rows"]) == ["cfg.s1", "sg_fid.s1"]  # the same seed there
    assert seeded["experiments"]["table3"]["rows"]["cfg.s1"]["same_as"] == "table2/cfg.s1"
    with pytest.raises(ConfigError, match="table2 has no seed 5"):
        X.load_config("smoke", {"experiments": {"table2": {"seeds": [0, 1]}, "table3": {"seeds": [5]}}})


def test_the_sampled_rows_depend_on_their_tuning():
    a = load(tuning=TUNING, rows={"cfg": {"tune": {"omega": [1.5, 2.5]}}})
    b = load(tuning={**TUNING, "metrics": {**TUNING["metrics"], "n": 8}}, rows={"cfg": {"tune": {"omega": [1.5, 2.5]}}})
    c = load(tuning=TUNING, rows={"cfg": {"tune": {"omega": [1.5, 3.0]}}})
    digest = lambda cfg, row: job_digest(cfg, "sample", experiment="table2", row=row)  # noqa: E731
    assert digest(a, "cfg") != digest(b, "cfg") != digest(c, "cfg") != digest(a, "cfg")
    assert digest(a, "unguided") == digest(b, "unguided") == digest(c, "unguided")
    assert job_digest(a, "tune", experiment="table2", row="cfg") != job_digest(b, "tune", experiment="table2", row="cfg")


def scored(cfg, scores: dict, key="fid"):
    """Write the metrics of table2.tune's candidates as the evaluate job would (their digests)."""
    layout = Layout(cfg)
    for cid, v in scores.items():
        write_json(layout.metrics("table2.tune", cid),
                   {key: v, "config_digest": job_digest(cfg, "evaluate", experiment="table2.tune", row=cid)})


def test_the_choice_is_the_best_score_on_the_validation_seed(tmp_path):
    cfg = load(tmp_path, tuning=TUNING, rows={"cfg": {"tune": {"omega": [1.25, 1.5, 2.5]}}})
    scored(cfg, {"cfg-w1.25": 30.0, "cfg-w1.5": 20.0, "cfg-w2.5": 20.0})  # a tie: the first in the config's order
    record = TU.select(cfg, "table2", "cfg")
    assert record["chosen"] == {"omega": 1.5} and record["score"] == 20.0 and record["seed"] == 100
    assert read_json(Layout(cfg).tuning("table2", "cfg"))["chosen_row"] == "cfg-w1.5"
    assert TU.tuned(cfg, "table2", "cfg")[0]["recipe"] == {"preset": "cfg", "omega": 1.5}
    assert TU.describe(TU.choice(cfg, "table2", "cfg")) == (
        "ω = 1.5, tuned on seed 100 by classifier FD@16 (16 samples) over ω ∈ {1.25, 1.5, 2.5}")
    assert TU.choice(cfg, "table2", "unguided") is None
    acc = load(tmp_path, tuning={**TUNING, "by": "acc"}, rows={"cfg": {"tune": {"omega": [1.25, 1.5, 2.5]}}})
    scored(acc, {"cfg-w1.25": 0.5, "cfg-w1.5": 0.9, "cfg-w2.5": 0.7}, key="acc")
    assert TU.select(acc, "table2", "cfg")["chosen"] == {"omega": 1.5}  # accuracy: the highest
    with pytest.raises(ConfigError, match="made under other settings"):
        TU.choice(cfg, "table2", "cfg")  # the file is acc's choice now


def test_a_choice_is_never_made_from_stale_or_missing_scores(tmp_path):
    cfg = load(tmp_path, tuning=TUNING, rows={"cfg": {"tune": {"omega": [1.5, 2.5]}}})
    with pytest.raises(ConfigError, match="is tuned, and its choice .* is not made yet: snakemake"):
        TU.tuned(cfg, "table2", "cfg")
    scored(cfg, {"cfg-w1.5": 1.0, "cfg-w2.5": 2.0})
    path = Layout(cfg).metrics("table2.tune", "cfg-w2.5")
    write_json(path, {**read_json(path), "config_digest": "stale"})
    with pytest.raises(ConfigError, match="made under other settings"):
        TU.select(cfg, "table2", "cfg")
    scored(cfg, {"cfg-w1.5": 1.0, "cfg-w2.5": None})
    with pytest.raises(ConfigError, match="has no fid score"):
        TU.select(cfg, "table2", "cfg")


@fashion
def test_a_tuned_row_samples_and_reports_with_its_choice(tmp_path):
    """The stages in order: candidates sampled and scored, the choice, the reported rows, the table."""
    others = {e: None for e in X.EXPERIMENTS if e != "table2"}  # table2 alone, with its unguided and ICG rows
    cfg = X.load_config("smoke", {"results_dir": str(tmp_path / "smoke"), "data": {"train_limit": 64}, "experiments": {
        **others, "table2": {"seeds": [0, 1], "tuning": TUNING, "rows": {
            "cfg": None, "ag": None, "sg_flops": None, "sg_fid": None, "icg": {"tune": {"omega": [1.5, 3.0]}}}}}})
    P.prepare_data(cfg)
    P.encode_latents(cfg, progress=False)
    P.run_training(cfg, "routing", progress=False)
    E.train_classifier_stage(cfg, progress=False)
    E.reference_stats(cfg, progress=False)
    for cid in X.tuning_candidates(cfg, "table2", "icg"):
        P.sample_row(cfg, "table2.tune", cid, progress=False)
        E.evaluate_row(cfg, "table2.tune", cid, progress=False)
    record = TU.select(cfg, "table2", "icg")
    fds = {c["row"]: c["score"] for c in record["candidates"]}
    assert record["chosen_row"] == min(fds, key=fds.get) and len(fds) == 2
    for row in ("unguided.s0", "unguided.s1", "icg.s0", "icg.s1"):
        info = P.sample_row(cfg, "table2", row, progress=False)
        E.evaluate_row(cfg, "table2", row, progress=False)
    assert info["recipe"]["omega"] == record["chosen"]["omega"] and info["seed"] == 1
    assert info["tuned"].startswith(f"ω = {record['chosen']['omega']:g}, tuned on seed 100")
    df = R.aggregate(R.load(cfg, "table2"))
    icg = df.set_index("row").loc["icg"]
    assert icg["omega"] == record["chosen"]["omega"] and icg["seeds"] == 2 and icg["fid_std"] is not None
    assert f"ω={record['chosen']['omega']:g}" in icg["setting"]
    note = T.caption(cfg, "table2", df)
    assert "Tuned rows (chosen on a validation seed, reported on the others): +ICG: ω = " in note
    assert "Mean ± standard deviation over 2 sampling seeds." in note


def test_the_tuning_note_names_which_row_a_repeated_method_is():
    """Table 1 has CFG and SG twice (masking, routing): each tuned choice says which row it is."""
    import pandas as pd
    df = pd.DataFrame([
        {"row": "cfg_masking", "method": "CFG", "sparsity": "masking", "tuned": "ω = 2.5, tuned on seed 100"},
        {"row": "cfg_routing", "method": "CFG", "sparsity": "routing", "tuned": "ω = 1.75, tuned on seed 100"},
        {"row": "sg_x", "method": "SG (Ours)", "sparsity": None, "tuned": "ω = 2, tuned on seed 100"},
        {"row": "sg_y", "method": "SG (Ours)", "sparsity": None, "tuned": None},
        {"row": "icg", "method": "+ICG", "sparsity": "routing", "tuned": "ω = 3, tuned on seed 100"}])
    note = T.tuning_note(df)
    assert "CFG (masking): ω = 2.5" in note and "CFG (routing): ω = 1.75" in note
    assert "SG (Ours) (sg_x): ω = 2" in note and "sg_y" not in note
    assert "; +ICG: ω = 3" in note  # a method on one row keeps its plain name
