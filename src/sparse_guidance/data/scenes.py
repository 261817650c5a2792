"""Compositional scenes: the embedded text-to-image data set (procedural, offline, exact).

32×32 RGB images of one to four flat shapes in GenEval's ten colours on a grey ground, each with a
caption written with GenEval's six prompt templates (single object, two objects, counting, colours,
position, colour attribution) or as keywords, and the scene graph behind it (shape, colour, centre,
pixel box of every object) in GenEval's metadata form (tag, include, exclude, prompt), so that a sample
can be scored against exactly what its prompt asks.

    ds = Scenes("train", n=20000, seed=0)      # item: (3, 32, 32) in [-1, 1], caption index
    ds.captions[ds.targets[0]], ds.scenes[0]  # its caption and scene graph

A caption index is a condition like a class label: ``captions`` is the data set's prompt bank
(its ``classes``), so latents, training and sampling take the scenes unchanged. Do not encode
them with horizontal flips: a flip turns "left of" into "right of".
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .latents import to_model_range

SIZE = 32
BACKGROUND = (128, 128, 128)
SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {  # GenEval's colour names, as flat RGB
    "red": (220, 30, 30), "orange": (250, 140, 0), "yellow": (245, 225, 30), "green": (30, 160, 50),
    "blue": (30, 70, 230), "purple": (130, 40, 180), "pink": (250, 150, 200), "brown": (120, 70, 30),
    "black": (10, 10, 10), "white": (250, 250, 250),
}
NUMBERS = ("zero", "one", "two", "three", "four")
RELATIONS = ("left of", "right of", "above", "below")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "keywords")
SPLIT_SEEDS = {"train": 0, "test": 1}
RADIUS = (4, 6)  # object half-size in pixels, drawn uniformly
POSITION_THRESHOLD = 0.1  # GenEval's position_threshold
OUTPUTS = ("float", "uint8")


def with_article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def plural(word: str) -> str:
    return f"{word}es" if word.endswith("s") else f"{word}s"


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Pixels (SIZE, SIZE) bool covered by a shape centred at (cx, cy) with half-size r."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx ** 2 + dy ** 2 <= r ** 2
    if shape == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if shape == "triangle":  # apex up, base at cy + r
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    raise ConfigError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}.")


def render(objects: list[dict]) -> np.ndarray:
    """The scene as uint8 (SIZE, SIZE, 3): later objects over earlier ones (they never overlap)."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUND
    for o in objects:
        img[shape_mask(o["shape"], o["cx"], o["cy"], o["r"])] = COLORS[o["color"]]
    return img


def mask_box(mask: np.ndarray) -> list[float]:
    """The pixel extent (x0, y0, x1, y1) of a mask, x1 and y1 one past the last pixel (a detector's box)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def relative_position(box_a, box_b, threshold: float = POSITION_THRESHOLD) -> set[str]:
    """GenEval's relations of box a to box b (x0, y0, x1, y1): the centre offset, shortened on each
    axis by ``threshold`` × the two boxes' sizes there; a unit direction component beyond 0.5 of
    the offset's length names a relation (y grows downwards: "above" is dy < -0.5)."""
    a, b = np.asarray(box_a, float).reshape(2, 2), np.asarray(box_b, float).reshape(2, 2)
    offset = a.mean(0) - b.mean(0)
    revised = np.maximum(np.abs(offset) - threshold * (np.diff(a, axis=0)[0] + np.diff(b, axis=0)[0]), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    return {r for r, on in (("left of", dx < -0.5), ("right of", dx > 0.5), ("above", dy < -0.5),
                            ("below", dy > 0.5)) if on}


def relation_holds(a: dict, relation: str, b: dict) -> bool:
    """Object a is ``relation`` object b by GenEval's rule on their rendered boxes."""
    return relation in relative_position(a["box"], b["box"])


def _place(rng, shapes, colors, relation=None, tries: int = 100) -> list[dict]:
    """Objects with these shapes and colours at random non-overlapping places inside the image,
    one after the other (the first ``relation`` the second, when given); smaller when there are
    more than two."""
    hi = RADIUS[1] if len(shapes) <= 2 else RADIUS[1] - 1
    for _ in range(tries):
        objs = []
        for s, c in zip(shapes, colors):
            for _ in range(tries):
                r = float(rng.uniform(RADIUS[0], hi))
                cx, cy = (float(v) for v in rng.uniform(r + 1, SIZE - r - 1, size=2))
                o = {"shape": s, "color": c, "cx": cx, "cy": cy, "r": r,
                     "box": mask_box(shape_mask(s, cx, cy, r))}
                if all(np.hypot(cx - p["cx"], cy - p["cy"]) > r + p["r"] + 2 for p in objs) and (
                        relation is None or len(objs) != 1 or relation_holds(objs[0], relation, o)):
                    objs.append(o)
                    break
            else:
                break  # no room left for this object: start the scene again
        if len(objs) == len(shapes):
            return objs
    raise RuntimeError(f"no placement of {shapes} found")  # not reached at these sizes


def make_scene(rng: np.random.Generator, tag: str) -> dict:
    """One scene of a tag: its objects, caption and GenEval metadata (include / exclude)."""
    def shape(k=1):  # k different shapes
        return [str(v) for v in rng.choice(SHAPES, k, replace=False)]

    def color(k=1):  # k different colours
        return [str(v) for v in rng.choice(list(COLORS), k, replace=False)]

    exclude = []
    if tag == "single_object":
        (s,), cs = shape(), color()
        objs, prompt, include = _place(rng, [s], cs), f"a photo of {with_article(s)}", [{"class": s, "count": 1}]
    elif tag == "two_object":
        (a, b), cs = shape(2), color(2)
        objs = _place(rng, [a, b], cs)
        prompt, include = f"a photo of {with_article(a)} and {with_article(b)}", [{"class": a, "count": 1},
                                                                                   {"class": b, "count": 1}]
    elif tag == "counting":
        (s,), n = shape(), int(rng.integers(2, 5))
        objs = _place(rng, [s] * n, [str(v) for v in rng.choice(list(COLORS), n)])
        prompt, include = f"a photo of {NUMBERS[n]} {plural(s)}", [{"class": s, "count": n}]
        exclude = [{"class": s, "count": n + 1}]
    elif tag == "colors":
        (s,), (c,) = shape(), color()
        objs = _place(rng, [s], [c])
        prompt, include = f"a photo of {with_article(c)} {s}", [{"class": s, "count": 1, "color": c}]
    elif tag == "position":
        (a, b), cs, rel = shape(2), color(2), str(rng.choice(RELATIONS))
        objs = _place(rng, [a, b], cs, relation=rel)
        prompt = f"a photo of {with_article(a)} {rel} {with_article(b)}"
        include = [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]
    elif tag == "color_attr":
        (a, b), (ca, cb) = shape(2), color(2)
        objs = _place(rng, [a, b], [ca, cb])
        prompt = f"a photo of {with_article(ca)} {a} and {with_article(cb)} {b}"
        include = [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}]
    elif tag == "keywords":
        n = int(rng.integers(1, 5))
        objs = _place(rng, [str(v) for v in rng.choice(SHAPES, n)], [str(v) for v in rng.choice(list(COLORS), n)])
        prompt = ", ".join(f"{o['color']} {o['shape']}" for o in sorted(objs, key=lambda o: o["cx"]))
        include = [{"class": s, "count": sum(o["shape"] == s for o in objs)} for s in SHAPES
                   if any(o["shape"] == s for o in objs)]
    else:
        raise ConfigError(f"unknown scene tag {tag!r}; tags: {', '.join(TAGS)}.")
    return {"tag": tag, "prompt": prompt, "include": include, "exclude": exclude, "objects": objs}


class Scenes(torch.utils.data.Dataset):
    """``n`` scenes of a split, scene i drawn from (split seed, seed, i) with its tag cycling through
    ``tags``; items (image, caption index) like FashionMNIST's, ``classes`` the caption bank."""

    def __init__(self, split: str = "train", n: int = 20000, seed: int = 0, tags=TAGS, output: str = "float"):
        if split not in SPLIT_SEEDS:
            raise ConfigError(f"scenes split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}.")
        if output not in OUTPUTS:
            raise ConfigError(f"output={output!r}; choose one of {', '.join(OUTPUTS)}.")
        if int(n) < 1:
            raise ConfigError(f"n={n!r}: a scenes data set needs at least one image.")
        bad = [t for t in tags if t not in TAGS]
        if bad or not tags:
            raise ConfigError(f"scene tags {bad or list(tags)}; choose from {', '.join(TAGS)}.")
        self.split, self.output, self.tags = split, output, tuple(tags)
        self.scenes = [make_scene(np.random.default_rng([SPLIT_SEEDS[split], seed, i]), self.tags[i % len(self.tags)])
                       for i in range(int(n))]
        self.captions = sorted({s["prompt"] for s in self.scenes})
        index = {c: k for k, c in enumerate(self.captions)}
        self.classes = self.captions
        self.targets = [index[s["prompt"]] for s in self.scenes]
        self.images = torch.from_numpy(np.stack([render(s["objects"]) for s in self.scenes])).permute(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        img = self.images[i]  # (3, 32, 32) uint8
        return (to_model_range(img) if self.output == "float" else img), self.targets[i]


def evaluation_prompts(prompts_per_tag: int = 16, seed: int = 0, tags=TAGS, tries: int = 50) -> list[dict]:
    """GenEval's form of a benchmark: distinct prompts of the test split, up to ``prompts_per_tag`` per
    tag (fewer where a tag has fewer: single_object has one prompt per shape), each with its metadata
    (tag, prompt, include, exclude) and the objects of the scene it was first drawn with (a real render
    of it: ``render(p["objects"])``), tag by tag in the order of ``tags``. Drawn from (test seed, seed)."""
    out = []
    for t, tag in enumerate(tags):
        if tag not in TAGS:
            raise ConfigError(f"unknown scene tag {tag!r}; tags: {', '.join(TAGS)}.")
        seen = {}
        for i in range(int(prompts_per_tag) * tries):
            s = make_scene(np.random.default_rng([SPLIT_SEEDS["test"], seed, t, i]), tag)
            seen.setdefault(s["prompt"], {k: s[k] for k in ("tag", "prompt", "include", "exclude", "objects")})
            if len(seen) == prompts_per_tag:
                break
        out += list(seen.values())
    return out
