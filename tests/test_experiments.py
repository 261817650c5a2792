"""config.py and layout.py: presets, the schema and the cross-reference checks (every bad value is a
ConfigError naming its key), results paths, and what each job's result depends on (its digest)."""
from __future__ import annotations

import copy

import pytest

from sparse_guidance import config as X
from sparse_guidance.layout import Layout, job_digest, resume_key
from sparse_guidance.errors import ConfigError
from sparse_guidance.metrics.geneval import GENEVAL_TAGS


@pytest.fixture(scope="module")
def smoke():
    return X.load_config("smoke")


def bad(overrides, *needles, preset="smoke"):
    """load_config with overrides must fail with a message containing every needle."""
    with pytest.raises(ConfigError) as e:
        X.load_config(preset, overrides)
    for n in needles:
        assert n in str(e.value), str(e.value)
    return str(e.value)


def rows(**changes):
    return {"experiments": {"table2": {"rows": changes}}}


@pytest.mark.parametrize("preset", ["smoke", "embedded", "paper"])
def test_presets_load(preset):
    cfg = X.load_config(preset)
    assert cfg["name"] == preset
    assert cfg["results_dir"] == f"results/{preset}"
    t2 = cfg["experiments"]["table2"]
    bases = {r: X.tuned_base(r, spec) for r, spec in t2["rows"].items()}  # embedded: each over 3 seeds
    assert list(dict.fromkeys(bases.values())) == ["unguided", "cfg", "ag", "icg", "sg_flops", "sg_fid"]
    sg_fid = next(spec for r, spec in t2["rows"].items() if bases[r] == "sg_fid")
    assert sg_fid["aux"]["step"] in cfg["runs"][t2["run"]]["train"]["save_steps"]
    assert cfg["sampling"]["steps"] == (8 if preset == "smoke" else 40)


def test_paper_preset_is_the_papers_setting():
    cfg = X.load_config("paper")
    run = cfg["runs"]["routing"]
    assert cfg["model"]["name"] == "SiT-XL/2" and run["routes"] == ["2:24"] and run["train_gamma"] == 0.5
    tr = run["train"]
    assert (tr["lr"], tr["batch_size"], tuple(tr["betas"]), tr["bf16"]) == (1e-4, 256, (0.9, 0.999), True)
    assert tr["steps"] == 2_000_000 and abs(400 * 1_281_167 / 256 - tr["steps"]) < 0.01 * tr["steps"]
    assert 50000 in tr["save_steps"] and cfg["experiments"]["table2"]["rows"]["sg_fid"]["aux"]["step"] == 50000
    assert cfg["metrics"]["n"] == cfg["sampling"]["num_samples"] == 50000
    assert cfg["data"]["codec"]["name"] == "sd-vae-ft-ema" and cfg["data"]["reference"]["npz"].endswith(
        "VIRTUAL_imagenet256_labeled.npz")
    assert X.resources(cfg, "train")["gpu"] == 4 and X.resources(cfg, "sample")["gpu"] == 1
    masking = cfg["runs"]["masking"]  # Table A2: MaskDiT decoder 8 x 512, 16 heads, ratio 0.5; 160 epochs
    assert masking["decoder"] == {"depth": 8, "width": 512, "heads": 16} and masking["train_gamma"] == 0.5
    assert masking["train"]["steps"] == 800_000 and 800_000 in tr["save_steps"]  # Table 1 at 160 epochs
    for name in ("routing_ft400k", "routing_ft800k"):  # dense finetuning: lr 1e-5 (Table A2), all tokens
        ft = cfg["runs"][name]["train"]
        assert ft["lr"] == 1e-5 and ft["gamma"] == 0.0 and ft["batch_size"] == 256
    aux = {r["aux"]["step"] for r in cfg["experiments"]["fig7"]["rows"].values() if r.get("aux")}
    assert aux == {50000, 100000, 400000, 800000}  # Fig. 7's auxiliary checkpoints
    assert {r["tags"]["omega"] for r in cfg["experiments"]["fig6"]["rows"].values()} == {1.3, 1.5, 1.7, 1.9}
    assert cfg["experiments"]["fig6"]["metrics"]["n"] == 5000  # FID@5k for the grids (§4.3)


def test_overrides_merge_deeply(smoke):
    cfg = X.load_config("smoke", {"results_dir": "/tmp/x/", "sampling": {"num_samples": 32},
                                  "preset": "ignored-here"})
    assert cfg["results_dir"] == "/tmp/x"
    assert cfg["sampling"]["num_samples"] == 32 and cfg["sampling"]["steps"] == smoke["sampling"]["steps"]
    cfg = X.load_config("smoke", rows(cfg={"recipe": {"preset": "cfg", "omega": 3.0}}))
    assert cfg["experiments"]["table2"]["rows"]["cfg"]["label"] == "+CFG"  # the rest of the row stays


def within(part, whole) -> bool:
    """Every value ``part`` sets is in ``whole`` (mappings compared key by key)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(within(v, whole.get(k)) for k, v in part.items())
    return part == whole


def test_presets_extend_the_one_experiment_list():
    """base.yaml holds the paper's experiments once; a preset adds its scale, grids merge by name."""
    base = X.read_yaml("workflow/config/base.yaml")["experiments"]
    assert "base" not in X.list_presets()
    for preset in ("smoke", "embedded", "paper"):
        assert X.read_yaml(f"workflow/config/{preset}.yaml")["extends"] == "base"
        cfg = X.load_config(preset)
        assert X.reported(cfg) == list(base)
        for e, exp in base.items():  # every row and grid of base, with what base sets for it
            for g in exp.get("grids", []):
                rows = [r for r in cfg["experiments"][e]["rows"].values() if r["tags"].get("grid") == g["name"]]
                assert rows and all(r["label"] == g.get("label", r["label"]) for r in rows), (preset, e, g["name"])
            for rid, row in exp.get("rows", {}).items():
                got = next(v for k, v in cfg["experiments"][e]["rows"].items() if v["tags"].get("base", k) == rid)
                if "seed" in got["tags"] and got.get("same_as"):  # a row shown over the seeds of the one it names
                    got = {**got, "same_as": got["same_as"].removesuffix(f".s{got['tags']['seed']}")}
                assert within(row, got), (preset, e, rid)
    # a --config override still replaces a grid list whole (messages name grids by their index)
    cfg = X.load_config("smoke", {"experiments": {"fig6": {"grids": [{"name": "other", "recipe": "sg",
                                                                       "axes": {"omega": [2.0]}}]}}})
    assert list(cfg["experiments"]["fig6"]["rows"]) == ["other-w2"]


def test_preset_by_path_and_extends(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: smoke\nname: child\nsampling: {num_samples: 20}\n")
    cfg = X.load_config(str(child))
    assert cfg["name"] == "child" and cfg["sampling"]["num_samples"] == 20 and cfg["model"]["depth"] == 4
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(ConfigError, match="cycle"):
        X.load_config(str(loop))


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown config preset 'nope'.*smoke"):
        X.load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        X.load_config("/no/such/config.yaml")


def test_unknown_keys_name_their_place():
    bad({"bogus": 1}, "unknown config key(s) bogus")
    bad({"data": {"bogus": 1}}, "data.bogus")
    bad({"runs": {"routing": {"train": {"lr_schedule": "cosine"}}}}, "runs.routing.train.lr_schedule")
    bad(rows(cfg={"omega": 2}), "experiments.table2.rows.cfg.omega")
    bad({"experiments": {"table9": {"run": "routing", "rows": {}}}}, "experiments.table9")
    bad({"resources": {"trian": {"threads": 2}}}, "resources.trian")


def test_unknown_recipe_name():
    bad(rows(cfg={"recipe": "bogus"}), "experiments.table2.rows.cfg.recipe", "unknown guidance recipe 'bogus'")
    bad(rows(cfg={"recipe": {"preset": "cfg", "gamma": 0.5}}), "rows.cfg.recipe", "takes")


def test_plain_sg_needs_gamma_strong_below_gamma_weak():
    msg = bad(rows(sg_flops={"recipe": {"preset": "sg", "gamma_strong": 0.9, "gamma_weak": 0.5}}),
              "experiments.table2.rows.sg_flops.recipe", "γ_strong=0.9 ≥ γ_weak=0.5")
    assert "Eq. 6" in msg
    bad(rows(sg_flops={"recipe": {"preset": "sg", "gamma_strong": 0.5, "gamma_weak": 0.5}}), "γ_strong=0.5 ≥")
    # schedules that cross are caught at the step where they do (the config knows the step count)
    cross = {"name": "sg", "omega": 2, "strong": {"gamma": {"schedule": "linear", "start": 0.0, "end": 0.8}},
             "weak": {"gamma": 0.5}}
    bad(rows(sg_flops={"recipe": cross}), "rows.sg_flops.recipe", "at step")
    # CFG+SG and SG_FID may have γ_strong ≥ γ_weak (other condition / other model)
    X.load_config("smoke", rows(cfg={"recipe": {"preset": "cfg+sg", "gamma_strong": 0.7, "gamma_weak": 0.2}}))


def test_aux_checkpoint_must_be_saved_by_its_run():
    msg = bad(rows(ag={"aux": {"run": "routing", "step": 15}}), "experiments.table2.rows.ag.aux.step=15",
              "does not save a checkpoint", "save_steps = [10]")
    assert "routing" in msg
    bad(rows(ag={"aux": {"run": "teacher", "step": 10}}), "rows.ag.aux.run='teacher'")
    bad(rows(ag={"aux": None}), "rows.ag", "auxiliary model", "aux:")
    bad(rows(cfg={"aux": {"run": "routing", "step": 10}}), "rows.cfg.aux is given", "no auxiliary model")
    bad(rows(cfg={"recipe": {"name": "x", "omega": 2, "strong": {"model": "main"}, "weak": {"model": "teacher"}}}),
        "rows.cfg.recipe", "teacher")


def test_non_finite_recipe_arguments_are_refused():
    for v in (float("nan"), float("inf")):  # YAML .nan / .inf: black images and a finite-looking FID otherwise
        bad(rows(cfg={"recipe": {"preset": "cfg", "omega": v}}), "rows.cfg.recipe", "must be a finite number")
        bad(rows(sg_flops={"recipe": {"preset": "sg", "gamma_weak": v}}), "rows.sg_flops.recipe", "not a finite number")


def test_runs_and_training_are_checked():
    bad({"runs": {"routing": {"routes": ["1:9"]}}}, "runs.routing", "outside the model's blocks")
    bad({"runs": {"routing": {"train": {"save_steps": [10, 99]}}}}, "runs.routing.train.save_steps", "99")
    bad({"runs": {"routing": {"sparsity": "pruning"}}}, "runs.routing.sparsity='pruning'")
    bad({"runs": {"routing": {"decoder": {"depth": 2}}}}, "runs.routing.decoder", "masking")
    bad({"runs": {"bad/name": {"sparsity": "none", "train": {"steps": 1, "batch_size": 1}}}}, "bad/name")
    bad({"experiments": {"table2": {"run": "nope"}}}, "experiments.table2.run='nope'")
    bad({"experiments": {"table2": {"baseline": "nope"}}}, "experiments.table2.baseline='nope'")


def test_clear_messages_for_what_used_to_pass_or_fail_late(tmp_path):
    """Options that were accepted (and trained or plotted wrongly) or failed mid-job: refused when the
    config is validated, each message naming the entry and what it must be."""
    bad({"runs": {"dense": {"train": {"ema_decay": 1.0}}}}, "runs.dense.train.ema_decay=1.0 must be < 1")
    bad({"runs": {"dense": {"train": {"class_dropout": 1.0}}}}, "runs.dense.train.class_dropout=1.0 must be < 1")
    bad({"runs": {"dense": {"train": {"betas": [0.9, 1.5]}}}}, "runs.dense.train.betas[1]=1.5 must be < 1")
    bad({"experiments": {"fig4": {"seeds": [0, 0]}}}, "experiments.fig4.seeds=[0, 0]", "distinct")
    bad({"experiments": {"fig4": {"plot": {"colour": "red"}}}}, "experiments.fig4.plot.colour",
        "takes classes, clip, metric, ncols")
    bad({"sampling": {"steps": "8"}}, "sampling.steps='8' must be an integer", "nested values of --config", "--configfile")
    (tmp_path / "file").write_text("")
    bad({"results_dir": str(tmp_path / "file" / "results")}, "cannot be a folder", f"{tmp_path / 'file'}' is a file")


def test_data_model_and_metrics_agree():
    bad({"model": {"input_size": 32}}, "model.input_size=32", "space-to-depth")
    bad({"model": {"in_channels": 3}}, "model.in_channels=3")
    bad({"model": {"num_classes": 1000}}, "model.num_classes=1000", "fashion_mnist has 10")
    bad({"model": {"name": "SiT-Q/2"}}, "model.name='SiT-Q/2'")
    bad({"data": {"codec": {"name": "jpeg"}}}, "data.codec.name='jpeg'")
    bad({"data": {"dataset": "cifar"}}, "data.dataset='cifar'")
    bad({"data": {"reference": {"n": 20000}}}, "data.reference.n=20000")
    bad({"metrics": {"n": 17}}, "metrics.n=17 exceeds sampling.num_samples=16")
    bad({"metrics": {"metrics": ["fid", "kid"]}}, "metrics.metrics='kid'")
    bad({"sampling": {"solver": "dpm"}}, "sampling.solver='dpm'")
    bad({"sampling": {"steps": 0}}, "sampling.steps=0")
    bad({"data": {"reference": {"npz": None}}}, "data.reference.npz", preset="paper")


def test_the_schema_names_what_the_code_knows():
    """The schema's enums and key lists agree with the registries and dataclasses they describe."""
    import dataclasses

    from sparse_guidance.metrics.evaluate import METRICS
    from sparse_guidance.models import SPARSITY
    from sparse_guidance.sampling import SOLVERS
    from sparse_guidance.train import TrainConfig
    s = X.config_schema()
    d, props = s["$defs"], s["properties"]
    assert tuple(d["metrics"]["properties"]["metrics"]["items"]["enum"]) == METRICS
    assert set(d["train"]["properties"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert tuple(d["run"]["properties"]["sparsity"]["enum"]) == SPARSITY
    assert tuple(d["sampling"]["properties"]["solver"]["enum"]) == SOLVERS
    assert tuple(props["experiments"]["properties"]) == X.EXPERIMENTS
    assert tuple(props["resources"]["properties"]) == X.RESOURCE_RULES
    assert set(d["resource"]["properties"]) == set(X.RESOURCE_KEYS)
    paper = X.read_yaml("workflow/data/paper_results.yaml")  # the paper's numbers: one file, known columns
    imagenet = {e: rows for e, rows in paper.items() if e in X.EXPERIMENTS}
    assert {k for rows in imagenet.values() for r in rows.values() for k in r} <= set(X.PAPER_KEYS)
    # the text-to-image tables (no workflow target yet): HPSv3's categories and GenEval's six tags
    categories = X.read_yaml("workflow/data/table4_literature.yaml")["categories"]
    t2i = {"table4": {"label", "rank", "overall", "images_per_s", *categories},
           "table5": {"label", "overall", *GENEVAL_TAGS}}
    assert set(paper) == set(imagenet) | set(t2i)
    for e, keys in t2i.items():
        assert {k for r in paper[e].values() for k in r} <= keys, e
    assert set(d["data"]["properties"]["dataset"]["enum"]) == set(X.DATASETS)
    assert d["id"]["pattern"] == X.ID_RE.pattern


def test_snakemake_validates_the_loaded_config_with_the_same_schema():
    from snakemake.utils import validate
    for preset in ("smoke", "embedded", "paper"):
        cfg = X.load_config(preset)
        validate(copy.deepcopy(cfg), "workflow/schemas/config.schema.yaml")  # a validated config stays valid
    raw = X.read_preset("smoke")  # smoke.yaml on base.yaml, as written
    validate(raw, "workflow/schemas/config.schema.yaml")  # Snakemake fills the schema's defaults as we do
    assert raw["sampling"]["solver"] == "euler" and raw["data"]["encode"]["num_workers"] == 0


def test_schema_messages_say_what_a_value_must_be():
    bad({"compute": {"nproc": "many"}}, "compute.nproc='many'", "'auto' or a number of processes")
    bad({"runs": {"routing": {"train": {"betas": [0.9]}}}}, "runs.routing.train.betas=[0.9]", "two numbers")
    bad({"sampling": {"bf16": "yes"}}, "sampling.bf16='yes'; choose one of true, false, auto.")
    bad({"runs": {"routing": {"train": {"bf16": 1}}}}, "runs.routing.train.bf16=1; choose one of true, false, auto.")
    bad({"experiments": {"fig1": {"rows": {"x": {"same_as": "table2/cfg", "seed": 3}}}}}, "fig1.rows.x.seed",
        "samples nothing")
    bad(rows(cfg={"label": None}), "experiments.table2.rows.cfg.label=None must be a string")


def test_layout_names_match_the_training_loop(smoke, tmp_path):
    from sparse_guidance.train import checkpoint_path
    layout = Layout(smoke)
    assert layout.snapshot("routing", 10).rsplit("/", 1)[1] == checkpoint_path(tmp_path, 10).name
    assert layout.samples("{experiment}", "{row}") == "results/smoke/samples/{experiment}/{row}.npz"


def test_a_job_digest_covers_its_own_part_of_the_config_only(smoke):
    """Rerun granularity: a job's params digest changes exactly when what it depends on changes."""
    edit = X.load_config("smoke", {"experiments": {"fig6": {"grids": [
        {"name": "ag_sg", "label": "AG + SG", "recipe": "ag+sg", "aux": {"run": "routing", "step": 10},
         "axes": {"omega": [2.0, 3.0], "gammas": [0.0, 0.5, 0.9]}}]}}})  # an ω added to fig6
    same = ("prepare_data", {}), ("train", {"run": "routing"}), \
        ("report", {"experiment": "fig5"}), ("sample", {"experiment": "table2", "row": "cfg"})
    for stage, ids in same:
        assert job_digest(edit, stage, **ids) == job_digest(smoke, stage, **ids), stage
    assert job_digest(edit, "report", experiment="fig6") != job_digest(smoke, "report", experiment="fig6")
    kept = "ag_sg-w2-gs0.5-gw0.9"  # a row present before and after: its sampling job is not rerun
    assert job_digest(edit, "sample", experiment="fig6", row=kept) == job_digest(smoke, "sample", experiment="fig6",
                                                                                 row=kept)
    # Fig. 7's compared rows depend on the conditional row they are measured against
    moved = X.load_config("smoke", {"experiments": {"fig7": {"rows": {"conditional": {"seed": 5}}}}})
    assert job_digest(moved, "evaluate", experiment="fig7", row="cfg") != job_digest(smoke, "evaluate",
                                                                                     experiment="fig7", row="cfg")
    assert X.distance_reference(smoke, "fig7", "cfg") == "conditional"
    assert X.distance_reference(smoke, "fig7", "conditional") is None
    bad({"experiments": {"fig7": {"rows": {"conditional": {"tags": {"role": "compare"}}}}}}, "experiments.fig7",
        "role: conditional")


def test_digests_follow_the_config_a_job_depends_on(smoke):
    d = lambda cfg, stage, **ids: job_digest(cfg, stage, **ids)  # noqa: E731
    other = X.load_config("smoke", {"sampling": {"num_samples": 32}})
    assert d(other, "train", run="routing") == d(smoke, "train", run="routing")
    assert d(other, "sample", experiment="table2", row="cfg") != d(smoke, "sample", experiment="table2", row="cfg")
    longer = copy.deepcopy(smoke)
    longer["runs"]["routing"]["train"]["steps"] = 40
    assert resume_key(longer, "routing") == resume_key(smoke, "routing")
    longer["runs"]["routing"]["train"]["lr"] = 0.1
    assert resume_key(longer, "routing") != resume_key(smoke, "routing")


def test_resources_and_recipe_descriptions(smoke):
    paper = X.load_config("paper")
    assert X.rule_resources(paper, "train") == {"gpu": 4, "mem_mb": 256000, "runtime": 2880, "cpus_per_task": 32}
    assert X.rule_resources(paper, "finetune") == {"gpu": 4, "mem_mb": 256000, "runtime": 1440, "cpus_per_task": 32}
    assert X.resources(smoke, "train")["threads"] == 1
    with pytest.raises(ConfigError):
        X.resources(smoke, "bogus")
    from sparse_guidance.guidance import resolve_recipe
    assert X.describe_recipe(resolve_recipe("unguided")) == "—"
    assert X.describe_recipe(resolve_recipe("sg_flops")) == "ω=2.5, γ 0.5 / 0.9"
    assert "aux: routing@10" in X.describe_recipe(resolve_recipe("sg_fid", 8), {"run": "routing", "step": 10})


def test_a_recipe_override_replaces_the_recipe():
    cfg = X.load_config("smoke", rows(cfg={"recipe": "unguided"}))
    assert cfg["experiments"]["table2"]["rows"]["cfg"]["recipe"] == "unguided"
    cfg = X.load_config("smoke", rows(sg_flops={"recipe": {"preset": "sg", "gamma_weak": 0.8}}))
    assert cfg["experiments"]["table2"]["rows"]["sg_flops"]["recipe"] == {"preset": "sg", "gamma_weak": 0.8}
    bad(rows(cfg={"recipe": {"preset": "cfg", "gamma_weak": 0.5}}), "rows.cfg.recipe", "takes ['omega']")


# ---------------------------------------------------------------------------------------------
# Tables and figures as data: grids, seeds, rows shared between experiments, finetuning runs
# ---------------------------------------------------------------------------------------------

def grid_exp(*grids, **extra):
    return {"experiments": {"fig6": {"run": "routing", "grids": list(grids), **extra}}}


def test_every_table_and_figure_is_an_experiment_of_each_preset():
    for preset in ("smoke", "embedded", "paper"):
        cfg = X.load_config(preset)
        assert set(X.reported(cfg)) == set(X.EXPERIMENTS), preset


def test_a_grid_expands_to_tagged_rows():
    cfg = X.load_config("smoke", grid_exp({"name": "sg", "label": "SG", "recipe": "ag+sg",
                                           "aux": {"run": "routing", "step": 10},
                                           "axes": {"omega": [1.5, 2.0], "gammas": [0.0, 0.5, 0.9]}}))
    rows = cfg["experiments"]["fig6"]["rows"]
    ids = [r for r in rows if r.startswith("sg-")]
    assert len(ids) == 2 * 3  # 2 ω x the 3 pairs γs < γw of 3 values
    r = rows["sg-w2-gs0.5-gw0.9"]
    assert r["recipe"] == {"preset": "ag+sg", "omega": 2.0, "gamma_strong": 0.5, "gamma_weak": 0.9}
    assert r["tags"] == {"grid": "sg", "omega": 2.0, "gamma_strong": 0.5, "gamma_weak": 0.9}
    assert r["aux"] == {"run": "routing", "step": 10} and r["run"] == "routing" and r["label"] == "SG"
    assert all(rows[i]["tags"]["gamma_strong"] < rows[i]["tags"]["gamma_weak"] for i in ids)


def test_grid_axes_for_steps_runs_and_aux_checkpoints():
    cfg = X.load_config("smoke", {"experiments": {"fig7": {"grids": [
        {"name": "a", "recipe": "ag+sg", "aux": {"run": "routing"}, "axes": {"aux_step": [10], "omega": [2.0]}},
        {"name": "c", "recipe": "cfg", "axes": {"step": [10, 20], "run": ["routing"]}}]}}})
    rows = cfg["experiments"]["fig7"]["rows"]
    assert rows["a-aux10-w2"]["aux"] == {"run": "routing", "step": 10}
    assert rows["c-it10-routing"]["step"] == 10
    assert rows["c-it20-routing"]["step"] is None  # the final step is the final checkpoint (last.pt)


def test_bad_grids_name_the_grid():
    bad(grid_exp({"name": "g", "recipe": "sg", "axes": {"gamma_strong": [0.9], "gamma_weak": [0.5]}}),
        "experiments.fig6.grids[0] (row g-gs0.9-gw0.5).recipe", "γ_strong=0.9 ≥ γ_weak=0.5")
    bad(grid_exp({"name": "g", "recipe": "sg", "axes": {"gammas": [0.5]}}), "gives no pair")
    bad(grid_exp({"name": "g", "recipe": "sg", "axes": {"omega": 2.0}}), "axes.omega=2.0 must be a non-empty list")
    bad(grid_exp({"name": "g", "recipe": "sg", "axes": {"step": [15]}}), "(row g-it15).step=15",
        "does not save a checkpoint")
    bad(grid_exp({"name": "g", "recipe": "cfg", "axes": {"gamma_weak": [0.5]}}), "takes ['omega']")
    bad(grid_exp({"name": "g", "recipe": "sg", "axes": {"omega": [2]}, "colour": "red"}), "grids[0].colour")


def test_seeds_replicate_rows():
    cfg = X.load_config("smoke", {"experiments": {"table1": {"seeds": [3, 4]}}})
    rows = cfg["experiments"]["table1"]["rows"]
    assert "cfg_routing.s3" in rows and "cfg_routing.s4" in rows and "cfg_routing" not in rows
    assert rows["cfg_routing.s4"]["seed"] == 4 and rows["cfg_routing.s4"]["tags"] == {"base": "cfg_routing", "seed": 4}
    assert job_digest(cfg, "sample", experiment="table1", row="cfg_routing.s3") != \
        job_digest(cfg, "sample", experiment="table1", row="cfg_routing.s4")
    bad({"experiments": {"table1": {"seeds": []}}}, "experiments.table1.seeds")


def test_rows_shared_between_experiments(smoke):
    assert X.resolve_source(smoke["experiments"], "fig1", "sg_fid") == ("table2", "sg_fid")
    assert X.source_row(smoke, "figA7", "sg_fid") is smoke["experiments"]["table2"]["rows"]["sg_fid"]
    assert job_digest(smoke, "report", experiment="fig1") != job_digest(smoke, "report", experiment="table2")
    bad({"experiments": {"fig1": {"rows": {"x": {"same_as": "table2/nope"}}}}}, "fig1.rows.x.same_as",
        "no such row")
    bad({"experiments": {"fig1": {"rows": {"x": {"same_as": "table2"}}}}}, "'<experiment>/<row>'")
    bad({"experiments": {"fig1": {"rows": {"x": {"same_as": "fig1/x"}}}}}, "cycle")
    bad({"experiments": {"fig1": {"rows": {"x": {"same_as": "table2/cfg", "recipe": "cfg"}}}}}, "fig1.rows.x.recipe")


def test_a_same_as_chain_keeps_the_nearest_label(smoke):
    """Fig. A6 -> Fig. A5 ('SG', its own label) -> Table 2 ('+SG_FLOPS'): A6 shows A5's label."""
    a5, a6 = smoke["experiments"]["figA5"]["rows"], smoke["experiments"]["figA6"]["rows"]
    assert a5["sg"]["same_as"] == "table2/sg_flops" and a6["sg"]["same_as"] == "figA5/sg"
    assert [r["label"] for r in a6.values()] == [r["label"] for r in a5.values()] == ["Unguided", "SG", "AG", "CFG"]
    assert smoke["experiments"]["figA7"]["rows"]["sg_flops"]["label"] == "+SG_FLOPS"  # no label of its own: Table 2's
    own = X.load_config("smoke", {"experiments": {"figA6": {"rows": {"sg": {"label": "SG (A6)"}}}}})
    assert own["experiments"]["figA6"]["rows"]["sg"]["label"] == "SG (A6)"


def test_figure_metrics_and_sampling_overrides(smoke):
    fig2 = smoke["experiments"]["fig2"]
    assert fig2["metrics"]["extractor"] == "classifier" and "acc" in fig2["metrics"]["metrics"]
    assert smoke["classifier"]["steps"] == 30
    cfg = X.load_config("smoke", {"experiments": {"fig4": {"sampling": {"num_samples": 8}, "metrics": {"n": 8}}}})
    assert cfg["experiments"]["fig4"]["sampling"]["num_samples"] == 8 and cfg["sampling"]["num_samples"] == 16
    bad({"experiments": {"fig4": {"metrics": {"n": 64}}}}, "experiments.fig4.metrics.n=64", "num_samples")
    bad({"experiments": {"fig4": {"sampling": {"colour": 1}}}}, "experiments.fig4.sampling.colour")
    bad({"experiments": {"fig3": {"rows": {}}}}, "experiments.fig3")  # the paper's Fig. 3 is a diagram
    bad({"experiments": {"fig2": {"metrics": {"extractor": "classifier"}}}}, "Fashion-MNIST classifier",
        preset="paper")


def test_finetuning_runs_start_from_a_snapshot(smoke):
    ft = smoke["runs"]["routing_ft10"]
    assert ft["init"] == {"run": "routing", "step": 10} and ft["train"]["gamma"] == 0.0
    assert X.train_family(smoke, "routing_ft10") == "finetune" and X.train_family(smoke, "routing") == "train"
    ft_runs = lambda **init: {"runs": {"routing_ft10": {"init": init}}}  # noqa: E731
    bad(ft_runs(run="nope", step=10), "runs.routing_ft10.init.run='nope'")
    bad(ft_runs(run="routing", step=15), "runs.routing_ft10.init.step=15", "does not save")
    bad(ft_runs(run="routing_ft10", step=10), "cannot start from itself")
    bad(ft_runs(run="dense", step=10), "must have the architecture of 'dense'")
    bad({"compute": {"nproc": 0}}, "compute.nproc=0")
    assert X.load_config("smoke", {"compute": {"nproc": 2}})["compute"]["nproc"] == 2


def test_the_run_most_rows_need_trains_first():
    cfg = X.load_config("embedded")
    p = {r: X.train_priority(cfg, r) for r in cfg["runs"]}
    assert p["routing"] > p["masking"] > p["dense"] > 5 and p["routing_ft600"] > 5


def test_an_experiment_of_reused_rows_is_labelled_with_the_n_its_rows_were_scored_at():
    """Fig. 1 and Table 3 show Table 2's rows: their FID@n is Table 2's n, not the preset default."""
    from sparse_guidance import results as R
    cfg = X.load_config("embedded")
    n2 = cfg["experiments"]["table2"]["metrics"]["n"]
    assert n2 != cfg["experiments"]["fig1"]["metrics"]["n"]  # else the test would not tell them apart
    for e in ("fig1", "table3", "figA7"):
        assert X.metrics_of(cfg, e) == cfg["experiments"]["table2"]["metrics"], e
    assert R.metric_label(cfg, "fig1") == ("fid", f"FID@{n2}")
    assert X.metrics_of(cfg, "fig5") is cfg["experiments"]["fig5"]["metrics"]  # rows of its own
