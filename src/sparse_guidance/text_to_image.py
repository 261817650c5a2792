"""The stages of the text-to-image track that the class-conditional track has no counterpart of:
the prompt features, the scorers, a row's scores. Each takes the track's config
(config.track_config) and writes under its results_dir (``results/<preset>/t2i/``).

    t2i = config.track_config(config.load_config("embedded"))
    text_features(t2i, "train")         # text/train.pt: the frozen encoder's token states of the captions
    text_features(t2i, "eval")          # data/prompts.json + text/eval.pt: the evaluation prompts
    train_scorers(t2i)                  # scorers/: GenEval's shape classifier and the scene-text score
    evaluate_row(t2i, "table5", "cfg")  # metrics/table5/cfg.json: GenEval per tag, scene-text per tag
    throughput(t2i)                     # throughput/figA1.csv: Fig. A1's images/s over (γ_strong, γ_weak)

The others are the class-conditional track's stages, unchanged (stages.py): prepare_data renders
the scenes, encode_latents encodes them, run_training trains
TR-DiT on the captions' features, sample_row samples the evaluation prompts (4 images each).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from .progress import tqdm

from .checkpoint import read_checkpoint, save_atomic
from .data.prompt_sets import load_prompt_set
from .data.scenes import render
from .data.text_encoders import TextEncoder, prompt_bank
from .errors import ConfigError
from .io import atomic_open, read_json, write_json
from .layout import Layout, job_digest
from .metrics import external
from .metrics.geneval import ShapeClassifier, check_detector, geneval_scores, train_shape_classifier
from .metrics.image_text import NAME as SCENE_TEXT, SceneTextScorer, scene_text_scores, train_scene_text_scorer
from .performance import use_bf16
from . import config as C
from . import results as R
from . import throughput as TP
from .stages import device_of, load_run_model, prompt_features, training_captions, training_images


def _check_track(cfg: dict):
    if cfg.get("track") != "text_to_image":
        raise ConfigError("this stage takes the text-to-image track's config: config.track_config(cfg).")


def text_encoder(cfg: dict, device=None) -> TextEncoder:
    return TextEncoder.from_config(cfg["data"]["text_encoder"], device=device or device_of(cfg))


def text_features(cfg: dict, split: str, device=None) -> dict:
    """The frozen encoder's token states (system prompt in front), with the empty prompt ∅ last:
    split 'train', of the training captions (the labels of the latents) -> text/train.pt; split
    'eval' (data.eval) or 'eval-<name>' (data.prompt_sets.<name>), of an evaluation prompt set
    (data/prompt_sets.py: drawn from the scenes' test split, or read from GenEval's or a tagged
    file) -> data/prompts[-<name>].json and text/<split>.pt. Computed once: training and sampling
    read them, the encoder never runs per step (text_features: online trains without train.pt)."""
    _check_track(cfg)
    layout, d = Layout(cfg), cfg["data"]
    if split == "train":
        prompts = training_captions(cfg)
    elif split == "eval" or split.startswith("eval-"):
        name = "eval" if split == "eval" else split.removeprefix("eval-")
        meta = load_prompt_set(C.prompt_set_spec(cfg, name))
        write_json(layout.prompts_file(name), {"prompts": meta, "tags": list(dict.fromkeys(p["tag"] for p in meta))})
        prompts = [p["prompt"] for p in meta]
    else:
        raise ConfigError(f"text features of split {split!r}; choose 'train', 'eval' or 'eval-<prompt set>'.")
    bank = prompt_bank(text_encoder(cfg, device), prompts, batch_size=d["text_encoder"]["batch_size"])  # (K+1, L, d)
    bank["config_digest"] = job_digest(cfg, "text_features", split=split)
    save_atomic(bank, layout.text_features(split))
    return {"split": split, "prompts": len(prompts), "shape": list(bank["features"].shape)}


def train_scorers(cfg: dict) -> dict:
    """GenEval's detector (the shape classifier, metrics/geneval.py), checked on real renders of the
    test split first, and the scene-text score (metrics/image_text.py) trained on the training
    scenes and their captions' features, checked on real renders of the evaluation prompts against
    the same renders with shuffled prompts -> scorers/*.pt and scorers/info.json."""
    _check_track(cfg)
    layout, det, st = Layout(cfg), cfg["metrics"]["detector"], cfg["metrics"]["scene_text"]
    torch.manual_seed(det["seed"])
    clf = train_shape_classifier(n=det["examples"], steps=det["steps"], seed=det["seed"])
    real = check_detector(clf, n=det["check_n"], seed=det["seed"], minimum=det["minimum"])
    scenes = training_images(cfg, output="uint8")
    bank = prompt_features(cfg, "train", expect=scenes.captions)
    scorer = train_scene_text_scorer(scenes, bank, steps=st["steps"], batch_size=st["batch_size"], lr=st["lr"],
                                     seed=st["seed"])
    check = _scene_text_check(cfg, scorer)
    save_atomic({"state_dict": clf.state_dict(), "hidden": clf.hidden}, layout.shape_classifier)
    save_atomic({"state_dict": scorer.state_dict(), "text_dim": scorer.text_dim, "width": scorer.width},
                layout.scene_text_scorer)
    info = {"detector_on_real_renders": real, "scene_text_on_real_renders": check,
            "config_digest": job_digest(cfg, "scorers")}
    write_json(layout.scorers_info, info)
    return info


def _scene_text_check(cfg: dict, scorer) -> dict:
    """Scene-text scores of real renders of the evaluation prompts: with their own prompt, and with
    the prompts shuffled (a score that means something is far higher with its own)."""
    prompts = read_json(Layout(cfg).prompts)["prompts"]
    bank = prompt_features(cfg, "eval", expect=[p["prompt"] for p in prompts])
    images = np.stack([render(p["objects"]) for p in prompts])  # (K, 32, 32, 3) uint8
    own, tags = np.arange(len(prompts)), [p["tag"] for p in prompts]
    shuffled = np.random.default_rng(0).permutation(own)
    return {"own": scene_text_scores(scorer, images, own, tags, bank)["overall"],
            "shuffled": scene_text_scores(scorer, images, shuffled, tags, bank)["overall"]}


def load_scorers(cfg: dict) -> tuple[ShapeClassifier, SceneTextScorer]:
    layout = Layout(cfg)
    c, s = read_checkpoint(layout.shape_classifier), read_checkpoint(layout.scene_text_scorer)
    clf = ShapeClassifier(c["hidden"])
    clf.load_state_dict(c["state_dict"])
    scorer = SceneTextScorer(s["text_dim"], s["width"])
    scorer.load_state_dict(s["state_dict"])
    return clf.eval(), scorer.eval()


def evaluate_row(cfg: dict, experiment: str, row: str) -> dict:
    """GenEval's scores (per tag, overall = the mean of its six tags) and the scene-text score (per
    tag, overall) of the first metrics.n samples of a row, each judged against its own prompt's
    metadata -> metrics/<experiment>/<row>.json."""
    _check_track(cfg)
    layout, m = Layout(cfg), C.experiment(cfg, experiment)["metrics"]
    C.row_spec(cfg, experiment, row)
    prompt_set = C.prompt_set(cfg, experiment)
    prompts = read_json(layout.prompts_file(prompt_set))["prompts"]
    with np.load(layout.samples(experiment, row)) as z:
        images, idx = z["arr_0"][:m["n"]], z["arr_1"][:m["n"]].astype(np.int64)
    if len(images) < m["n"]:
        raise ConfigError(f"{layout.samples(experiment, row)!r} holds {len(images)} samples; metrics.n={m['n']}.")
    result = {"experiment": experiment, "row": row, "n": int(len(images))}
    if {"geneval", "scene_text"} & set(m["metrics"]):
        clf, scorer = load_scorers(cfg)
    work = Path(layout.metrics(experiment, row)).with_suffix("")  # the external scorers' work files
    if "hpsv3" in m["metrics"]:
        result["hpsv3"] = external.hpsv3_scores(images, [prompts[i]["prompt"] for i in idx],
                                                [prompts[i]["tag"] for i in idx], m["hpsv3"], f"{work}.hpsv3")
    if "geneval_official" in m["metrics"]:
        result["geneval_official"] = external.geneval_official_scores(images, idx, prompts, m["geneval_official"],
                                                                      f"{work}.geneval")  # the first metrics.n
    if "geneval" in m["metrics"]:
        result["geneval"] = geneval_scores(images, [prompts[i] for i in idx], clf)
    if "scene_text" in m["metrics"]:
        bank = prompt_features(cfg, C.eval_split(prompt_set), expect=[p["prompt"] for p in prompts])
        result["scene_text"] = {"name": SCENE_TEXT, **scene_text_scores(scorer, images, idx,
                                                                         [prompts[i]["tag"] for i in idx], bank)}
    result["config_digest"] = job_digest(cfg, "evaluate", experiment=experiment, row=row)
    write_json(layout.metrics(experiment, row), result)
    return result


def throughput(cfg: dict, device=None, remeasure: bool = False, progress: bool = True) -> pd.DataFrame:
    """Fig. A1: images/s of CFG, the paper's SG settings and every (γ_strong, γ_weak) cell of the grid
    (throughput.py) for the trained model of throughput.run, at the track's sampling steps and
    precision -> throughput/figA1.csv (+ .json: the settings and the machine). A measurement made
    under the same settings on the same device with as many threads is read back unless
    ``remeasure``: a notebook run on its own redraws the figure without retiming it (a workflow job
    starts without its outputs, so it always measures)."""
    _check_track(cfg)
    layout, tp, s = Layout(cfg), cfg["throughput"], cfg["sampling"]
    key = job_digest(cfg, "throughput")
    device = torch.device(device) if device is not None else device_of(cfg)
    if not remeasure and Path(layout.throughput_info).is_file() and Path(layout.throughput).is_file():
        info = read_json(layout.throughput_info)
        if (info.get("config_digest"), info.get("device"), info.get("threads")) == (
                key, str(device), torch.get_num_threads()):
            return pd.read_csv(layout.throughput)
    run, bf16 = tp["run"], use_bf16(s["bf16"], device)
    model = load_run_model(cfg, run, layout.checkpoint(run), device)
    bar = tqdm(total=len(TP.grid_cells(tp["grid_step"])) + 3, desc="Fig. A1 cells", disable=not progress)
    rows = TP.measure(model, tp["batch_sizes"], tp["timed_steps"], s["steps"], tp["grid_step"], device,
                      torch.bfloat16 if bf16 else torch.float32, progress=lambda done, total: bar.update(1),
                      repeats=tp["repeats"])
    bar.close()
    frame = pd.DataFrame(rows)
    with atomic_open(layout.throughput, "w") as f:
        frame.to_csv(f, index=False)
    write_json(layout.throughput_info, {"run": run, "model": cfg["model"]["name"], "tokens": model.num_tokens,
                                        "device": str(device), "threads": torch.get_num_threads(),
                                        "dtype": "bf16" if bf16 else "fp32", "sampling_steps": s["steps"],
                                        "config_digest": key})
    return frame


def prompt_diversity(images: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Per prompt, the mean distance between its images, pair by pair: the root-mean-square pixel
    difference in [0, 1] (0: identical images; Fig. 9's "higher variance" as a number)."""
    x = np.asarray(images, np.float32) / 255.0
    out = {}
    for p in np.unique(labels):
        imgs = x[labels == p].reshape(int((labels == p).sum()), -1)
        if len(imgs) < 2:
            continue
        d = [np.sqrt(np.mean((imgs[i] - imgs[j]) ** 2)) for i in range(len(imgs)) for j in range(i + 1, len(imgs))]
        out[int(p)] = float(np.mean(d))
    return out


def diversity_table(cfg: dict, df: pd.DataFrame) -> pd.DataFrame:
    """prompt_diversity of every row of a loaded experiment (results.load), one line per (row, prompt)
    with the prompt's text and tag, and the row's GFLOPs per sampling step."""
    layout, out = Layout(cfg), []
    for r in df.to_dict("records"):
        e, row = r["source"].split("/")
        prompts = read_json(layout.prompts_file(C.prompt_set(cfg, e)))["prompts"]
        with np.load(layout.samples(e, row)) as z:
            div = prompt_diversity(z["arr_0"], z["arr_1"])
        out += [{"row": r["row"], "method": r["method"], "prompt_index": p, "prompt": prompts[p]["prompt"],
                 "tag": prompts[p]["tag"], "diversity": v, "gflops": r["gflops"]} for p, v in div.items()]
    return pd.DataFrame(out)


def plot_prompts(cfg: dict, experiment: str) -> list[int]:
    """The evaluation prompts a figure shows: its plot.prompts, else the first prompt of every tag."""
    chosen = C.experiment(cfg, experiment)["plot"].get("prompts")
    prompts = read_json(Layout(cfg).prompts_file(C.prompt_set(cfg, experiment)))["prompts"]
    if chosen is None:
        return [next(i for i, p in enumerate(prompts) if p["tag"] == t) for t in dict.fromkeys(p["tag"] for p in prompts)]
    bad = [i for i in chosen if i >= len(prompts)]
    if bad:
        raise ConfigError(f"experiments.{experiment}.plot.prompts {bad}: there are {len(prompts)} evaluation prompts.")
    return list(chosen)


def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """A prompt's samples (k, H, W, 3) as one image: a near-square grid, white between and where empty."""
    k, h, w = images.shape[:3]
    cols = int(np.ceil(np.sqrt(k)))
    rows = -(-k // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    return out


def prompt_rows(cfg: dict, df: pd.DataFrame, prompts: list[int], per_prompt: int = 4) -> tuple[dict, list[str]]:
    """Figure rows, one per method, of one tile per prompt (its first ``per_prompt`` samples: the same
    noise for every method), and the prompts' texts as column titles (wrapped)."""
    sets = {C.prompt_set(cfg, source.split("/")[0]) for source in df["source"]}
    if len(sets) != 1:
        raise ConfigError(f"the rows {list(df['source'])} sample different prompt sets ({', '.join(sorted(sets))}).")
    texts = read_json(Layout(cfg).prompts_file(sets.pop()))["prompts"]
    rows = {r["method"]: [tile(R.row_images(cfg, r["source"], per_prompt, [p])) for p in prompts]
            for r in df.to_dict("records")}
    return rows, [textwrap.fill(texts[p]["prompt"], 18) for p in prompts]
