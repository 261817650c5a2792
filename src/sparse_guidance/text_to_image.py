"""The stages of the text-to-image track that the class-conditional track has no counterpart of:
the prompt features, the scorers, a row's scores. Each takes the track's config
(config.track_config) and writes under its results_dir (``results/<preset>/t2i/``).

    t2i = config.track_config(config.load_config("embedded"))
    text_features(t2i)                  # text/train.pt, text/eval.pt: the frozen encoder's token states
    train_scorers(t2i)                  # scorers/: GenEval's shape classifier and the scene-text score
    evaluate_row(t2i, "table5", "cfg")  # metrics/table5/cfg.json: GenEval per tag, scene-text per tag

The others are the class-conditional track's stages, unchanged (stages.py): prepare_data renders
the scenes and writes the evaluation prompts, encode_latents encodes them, run_training trains
TR-DiT on the captions' features, sample_row samples the evaluation prompts (4 images each).
"""
from __future__ import annotations

import numpy as np
import torch

from .checkpoint import read_checkpoint, save_atomic
from .data.scenes import render
from .data.text_encoders import TextEncoder, prompt_bank
from .errors import ConfigError
from .io import read_json, write_json
from .layout import Layout, job_digest
from .metrics.geneval import ShapeClassifier, check_detector, geneval_scores, train_shape_classifier
from .metrics.image_text import NAME as SCENE_TEXT, SceneTextScorer, scene_text_scores, train_scene_text_scorer
from . import config as C
from .stages import device_of, prompt_features, training_images


def _check_track(cfg: dict):
    if cfg.get("track") != "text_to_image":
        raise ConfigError("this stage takes the text-to-image track's config: config.track_config(cfg).")


def text_encoder(cfg: dict, device=None) -> TextEncoder:
    e = cfg["data"]["text_encoder"]
    return TextEncoder(e["name"], path=e["path"], max_length=e["max_length"], device=device or device_of(cfg))


def text_features(cfg: dict, device=None) -> dict:
    """The frozen encoder's token states (system prompt in front) of the training captions (the
    labels of the latents, data/dataset.json) and of the evaluation prompts (data/prompts.json), each
    with the empty prompt ∅ last -> text/train.pt, text/eval.pt. Computed once: training and
    sampling read them, the encoder never runs per step."""
    _check_track(cfg)
    layout, e = Layout(cfg), cfg["data"]["text_encoder"]
    encoder = text_encoder(cfg, device)
    out = {}
    for split, prompts in (("train", read_json(layout.dataset)["classes"]),
                           ("eval", [p["prompt"] for p in read_json(layout.prompts)["prompts"]])):
        bank = prompt_bank(encoder, prompts, batch_size=e["batch_size"])  # (K + 1, L, d): ∅ last
        bank["config_digest"] = job_digest(cfg, "text_features")
        save_atomic(bank, layout.text_features(split))
        out[split] = {"prompts": len(prompts), "shape": list(bank["features"].shape)}
    return out


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
    prompts = read_json(layout.prompts)["prompts"]
    with np.load(layout.samples(experiment, row)) as z:
        images, idx = z["arr_0"][:m["n"]], z["arr_1"][:m["n"]].astype(np.int64)
    if len(images) < m["n"]:
        raise ConfigError(f"{layout.samples(experiment, row)!r} holds {len(images)} samples; metrics.n={m['n']}.")
    clf, scorer = load_scorers(cfg)
    result = {"experiment": experiment, "row": row, "n": int(len(images))}
    if "geneval" in m["metrics"]:
        result["geneval"] = geneval_scores(images, [prompts[i] for i in idx], clf)
    if "scene_text" in m["metrics"]:
        bank = prompt_features(cfg, "eval", expect=[p["prompt"] for p in prompts])
        result["scene_text"] = {"name": SCENE_TEXT, **scene_text_scores(scorer, images, idx,
                                                                         [prompts[i]["tag"] for i in idx], bank)}
    result["config_digest"] = job_digest(cfg, "evaluate", experiment=experiment, row=row)
    write_json(layout.metrics(experiment, row), result)
    return result
