# The text-to-image track (Sec. 4.4): the config's text_to_image section as a configuration of its
# own (T2I = config.track_config), every path under RT = results/<preset>/t2i/, its tables beside the
# others in results/<preset>/tables/. The stage notebooks are the class-conditional track's (with
# track: text_to_image among their parameters), plus the prompt features (07) and the scorers (09):
#   prepare (render the scenes) -> encode -> the captions' text features -> train TR-DiT; the
#   evaluation prompts and their text features, a job of their own (editing them retrains nothing)
#   -> sample each row's prompts -> GenEval + scene-text scores (scorers) -> table4, table5, fig1_t2i,
#   fig9, figA2-figA4; and figA1: the trained model's throughput over (γ_strong, γ_weak).


if T2I is not None:
    T2I_IDS = {"track": "text_to_image"}
    T2I_CACHED = T2I["data"]["text_features"] == "cached"   # a bank of the training captions (else: online)
    # the scorers trained by the pipeline (GenEval's port, the scene-text score), where an experiment uses them
    T2I_SHARDS = T2I["data"]["dataset"] == "webdataset"
    T2I_EXPERIMENTS = "|".join(T2I["experiments"])
    T2I_TABLES = "|".join(e for e in T2I["experiments"] if e in C.TEXT_TABLES)
    T2I_FIGURES = "|".join(e for e in T2I["experiments"] if e in C.TEXT_FIGURES)
    T2I_NOTEBOOKS = {"table4": "notebooks/13_table4.ipynb", "table5": "notebooks/14_table5.ipynb",
                     "fig1_t2i": "notebooks/27_fig1_t2i.ipynb", "fig9": "notebooks/28_fig9.ipynb",
                     **{f: "notebooks/31_t2i_sample_grids.ipynb" for f in ("figA2", "figA3", "figA4")}}

    rule t2i_prepare_data:
        input:
            notebook="notebooks/01_prepare_data.ipynb",
            kept_keys=existing(T2I["data"]["filter"]["keys"]) if T2I_SHARDS else [],  # the filter's kept keys
        output:
            dataset=f"{RT}/data/dataset.json",
            **({"captions": f"{RT}/data/captions.jsonl", "index": f"{RT}/data/index.npz",
                "shards": f"{RT}/data/shards.json"} if T2I_SHARDS else {}),
        log:
            notebook=f"{RT}/notebooks/prepare_data.ipynb",
            txt=f"{RT}/logs/prepare_data.log",
        benchmark:
            f"{RT}/benchmarks/prepare_data.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("prepare_data", T2I),
        threads: C.resources(T2I, "prepare_data")["threads"]
        resources:
            **C.rule_resources(T2I, "prepare_data"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_encode_latents:
        input:
            notebook="notebooks/02_encode_latents.ipynb",
            dataset=f"{RT}/data/dataset.json",
        output:
            manifest=f"{RT}/latents/train/manifest.json",
        log:
            notebook=f"{RT}/notebooks/encode_latents.ipynb",
            txt=f"{RT}/logs/encode_latents.log",
        benchmark:
            f"{RT}/benchmarks/encode_latents.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("encode_latents", T2I),
        threads: C.resources(T2I, "encode_latents")["threads"]
        resources:
            **C.rule_resources(T2I, "encode_latents"),
        priority: 10
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_text_features:  # the training captions' token states
        input:
            notebook="notebooks/07_text_features.ipynb",
            dataset=f"{RT}/data/dataset.json",
        output:
            train=f"{RT}/text/train.pt",
        log:
            notebook=f"{RT}/notebooks/text_features-train.ipynb",
            txt=f"{RT}/logs/text_features-train.log",
        benchmark:
            f"{RT}/benchmarks/text_features-train.tsv"
        params:
            ids=ids(split="train", **T2I_IDS),
            digest=digest("text_features", T2I, split="train"),
        threads: C.resources(T2I, "text_features")["threads"]
        resources:
            **C.rule_resources(T2I, "text_features"),
        priority: 10
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_prompts:  # the evaluation prompts (GenEval's metadata form) and their token states
        input:
            notebook="notebooks/07_text_features.ipynb",
            file=prompt_file("eval", T2I),
        output:
            prompts=f"{RT}/data/prompts.json",
            eval=f"{RT}/text/eval.pt",
        log:
            notebook=f"{RT}/notebooks/text_features-eval.ipynb",
            txt=f"{RT}/logs/text_features-eval.log",
        benchmark:
            f"{RT}/benchmarks/text_features-eval.tsv"
        params:
            ids=ids(split="eval", **T2I_IDS),
            digest=digest("text_features", T2I, split="eval"),
        threads: C.resources(T2I, "text_features")["threads"]
        resources:
            **C.rule_resources(T2I, "text_features"),
        priority: 10
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    if T2I["data"]["prompt_sets"]:
        rule t2i_prompt_set:  # another evaluation prompt set (data.prompt_sets: GenEval's, HPSv3's) and its token states
            wildcard_constraints:
                prompt_set="|".join(T2I["data"]["prompt_sets"]),
            input:
                notebook="notebooks/07_text_features.ipynb",
                file=lambda w: prompt_file(w.prompt_set, T2I),
            output:
                prompts=f"{RT}/data/prompts-{{prompt_set}}.json",
                eval=f"{RT}/text/eval-{{prompt_set}}.pt",
            log:
                notebook=f"{RT}/notebooks/text_features-eval-{{prompt_set}}.ipynb",
                txt=f"{RT}/logs/text_features-eval-{{prompt_set}}.log",
            benchmark:
                f"{RT}/benchmarks/text_features-eval-{{prompt_set}}.tsv"
            params:
                ids=ids(split="eval", **T2I_IDS),
                digest=lambda w: job_digest(T2I, "text_features", split=f"eval-{w.prompt_set}"),
            threads: C.resources(T2I, "text_features")["threads"]
            resources:
                **C.rule_resources(T2I, "text_features"),
            priority: 10
            conda:
                f"../../{CONDA_ENV}"
            shell:
                NOTEBOOK

    rule t2i_scorers:
        input:
            notebook="notebooks/09_scorers.ipynb",
            dataset=f"{RT}/data/dataset.json",
            prompts=f"{RT}/data/prompts.json",
            train=f"{RT}/text/train.pt",
            eval=f"{RT}/text/eval.pt",
        output:
            shape_classifier=f"{RT}/scorers/shape_classifier.pt",
            scene_text=f"{RT}/scorers/scene_text.pt",
            info=f"{RT}/scorers/info.json",
        log:
            notebook=f"{RT}/notebooks/scorers.ipynb",
            txt=f"{RT}/logs/scorers.log",
        benchmark:
            f"{RT}/benchmarks/scorers.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("scorers", T2I),
        threads: C.resources(T2I, "scorers")["threads"]
        resources:
            **C.rule_resources(T2I, "scorers"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    for _run, _spec in T2I["runs"].items():
        _init = _spec.get("init")
        _family = "finetune" if _init else "train"

        rule:
            name:
                f"t2i_{_family}_{_run}"
            input:
                notebook="notebooks/04_train.ipynb",
                latents=f"{RT}/latents/train/manifest.json",
                **({"text": f"{RT}/text/train.pt"} if T2I_CACHED else  # online: the captions, encoded per step
                   {"captions": f"{RT}/data/captions.jsonl" if T2I_SHARDS else f"{RT}/data/dataset.json"}),
                **({"init": weights(_init["run"], _init["step"], T2I)} if _init else {}),
            output:
                checkpoint=f"{RT}/runs/{_run}/last.pt",
                summary=f"{RT}/runs/{_run}/summary.json",
                **{f"step_{s}": weights(_run, s, T2I) for s in sorted(set(_spec["train"].get("save_steps", [])))},
            log:
                notebook=f"{RT}/notebooks/train-{_run}.ipynb",
                txt=f"{RT}/logs/train-{_run}.log",
            benchmark:
                f"{RT}/benchmarks/train-{_run}.tsv"
            params:
                ids=ids(run=_run, **T2I_IDS),
                digest=digest("train", T2I, run=_run),
            threads: C.resources(T2I, _family)["threads"]
            resources:
                **C.rule_resources(T2I, _family),
            priority: C.train_priority(T2I, _run)
            conda:
                f"../../{CONDA_ENV}"
            shell:
                NOTEBOOK

    rule t2i_sample:
        wildcard_constraints:
            experiment=T2I_EXPERIMENTS,
        input:
            unpack(lambda w: sample_inputs(w, T2I)),
            unpack(lambda w: prompt_inputs(w, T2I)),
            notebook="notebooks/05_sample.ipynb",
        output:
            npz=f"{RT}/samples/{{experiment}}/{{row}}.npz",
            info=f"{RT}/samples/{{experiment}}/{{row}}.json",
        log:
            notebook=f"{RT}/notebooks/sample-{{experiment}}-{{row}}.ipynb",
            txt=f"{RT}/logs/sample-{{experiment}}-{{row}}.log",
        benchmark:
            f"{RT}/benchmarks/sample-{{experiment}}-{{row}}.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("sample", T2I),
        threads: C.resources(T2I, "sample")["threads"]
        resources:
            **C.rule_resources(T2I, "sample"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_evaluate:
        wildcard_constraints:
            experiment=T2I_EXPERIMENTS,
        input:
            unpack(lambda w: prompt_inputs(w, T2I)),
            notebook="notebooks/06_evaluate.ipynb",
            samples=f"{RT}/samples/{{experiment}}/{{row}}.npz",
            scorers=lambda w: ([f"{RT}/scorers/shape_classifier.pt", f"{RT}/scorers/scene_text.pt"] if {"geneval", "scene_text"}
                               & set(T2I["experiments"][w.experiment]["metrics"]["metrics"]) else []),
        output:
            metrics=f"{RT}/metrics/{{experiment}}/{{row}}.json",
        log:
            notebook=f"{RT}/notebooks/evaluate-{{experiment}}-{{row}}.ipynb",
            txt=f"{RT}/logs/evaluate-{{experiment}}-{{row}}.log",
        benchmark:
            f"{RT}/benchmarks/evaluate-{{experiment}}-{{row}}.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("evaluate", T2I),
        threads: C.resources(T2I, "evaluate")["threads"]
        resources:
            **C.rule_resources(T2I, "evaluate"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_report_table:
        wildcard_constraints:
            experiment=T2I_TABLES,
        input:
            unpack(lambda w: report_inputs(w, T2I)),
            notebook=lambda w: T2I_NOTEBOOKS[w.experiment],
        output:
            csv=report(f"{R}/tables/{{experiment}}.csv", caption="../report/table.rst", category="Tables",
                       labels={"table": "{experiment}", "file": "CSV"}),
            md=f"{R}/tables/{{experiment}}.md",
            tex=f"{R}/tables/{{experiment}}.tex",
        log:
            notebook=f"{RT}/notebooks/report-{{experiment}}.ipynb",
            txt=f"{RT}/logs/report-{{experiment}}.log",
        benchmark:
            f"{RT}/benchmarks/report-{{experiment}}.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("report", T2I),
        threads: C.resources(T2I, "report")["threads"]
        resources:
            **C.rule_resources(T2I, "report"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule t2i_report_figure:
        wildcard_constraints:
            experiment=T2I_FIGURES,
        input:
            unpack(lambda w: report_inputs(w, T2I)),
            unpack(lambda w: prompt_inputs(w, T2I)),
            notebook=lambda w: T2I_NOTEBOOKS[w.experiment],
        output:
            png=report(f"{R}/figures/{{experiment}}.png", caption="../report/figure.rst", category="Figures",
                       labels={"figure": "{experiment}", "file": "plot"}),
            pdf=f"{R}/figures/{{experiment}}.pdf",
            csv=report(f"{R}/figures/{{experiment}}.csv", caption="../report/figure.rst", category="Figures",
                       labels={"figure": "{experiment}", "file": "data"}),
        log:
            notebook=f"{RT}/notebooks/report-{{experiment}}.ipynb",
            txt=f"{RT}/logs/report-{{experiment}}.log",
        benchmark:
            f"{RT}/benchmarks/report-{{experiment}}.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("report", T2I),
        threads: C.resources(T2I, "report")["threads"]
        resources:
            **C.rule_resources(T2I, "report"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    # Fig. A1: the trained model's sampling throughput over (γ_strong, γ_weak); its threads (resources:
    # throughput) should be the machine's, so that no other job runs while it times.
    rule t2i_throughput:
        input:
            notebook="notebooks/29_figA1.ipynb",
            checkpoint=weights(T2I["throughput"]["run"], None, T2I),
            text=f"{RT}/text/eval.pt",
        output:
            cells=f"{RT}/throughput/figA1.csv",
            info=f"{RT}/throughput/figA1.json",
            png=report(f"{R}/figures/figA1.png", caption="../report/throughput.rst", category="Figures",
                       labels={"figure": "figA1", "file": "plot"}),
            pdf=f"{R}/figures/figA1.pdf",
            csv=f"{R}/figures/figA1.csv",
        log:
            notebook=f"{RT}/notebooks/throughput.ipynb",
            txt=f"{RT}/logs/throughput.log",
        benchmark:
            f"{RT}/benchmarks/throughput.tsv"
        params:
            ids=ids(**T2I_IDS),
            digest=digest("throughput", T2I),
        threads: C.resources(T2I, "throughput")["threads"]
        resources:
            **C.rule_resources(T2I, "throughput"),
        conda:
            f"../../{CONDA_ENV}"
        shell:
            NOTEBOOK

    rule figA1:
        localrule: True
        input:
            report_outputs("figA1"),
