"""GenEval's scoring rules on the compositional scenes, with a detector by construction (embedded).

GenEval (Ghosh et al.; djghosh13/geneval) detects objects with Mask2Former, names their colours with
CLIP and checks each prompt's metadata: every ``include`` clause (at least ``count`` objects of the
class, among the most confident ``count`` of them the asked colour, the asked relation to the objects
matched by another clause) and no ``exclude`` clause (fewer than ``count``). Its thresholds: detection
confidence 0.3 (0.9 for counting), at most 16 objects per class, relative position with threshold
0.1 (data/scenes.py: relative_position). The score of a tag is the fraction of its images judged
correct; GenEval's overall score is the mean over its six tags (the scenes' extra "keywords" tag is
reported apart).

Here the detector is exact by construction, since a scene is flat colours on a grey ground:
  1. each pixel takes its nearest colour of the palette (the ten colours and the ground);
  2. connected pixels of one colour form a candidate (4-neighbours, at least MIN_AREA pixels); its
     colour confidence is how close its pixels are to the palette colour;
  3. a small shape classifier trained by the pipeline (``train_shape_classifier``, on masks of
     rendered shapes and of noise blobs) names its shape or rejects it as clutter; confidence =
     colour confidence × shape probability.
``check_detector`` scores real renders first: near 1.0 there is what makes a sample's score mean
something.

    clf = train_shape_classifier()
    scores = geneval_scores(images, [scene metadata...], clf)    # {tag: accuracy, ..., "overall"}
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ..data.scenes import BACKGROUND, COLORS, RADIUS, SHAPES, SIZE, Scenes, relative_position, shape_mask
from ..errors import ConfigError

THRESHOLD, COUNTING_THRESHOLD, MAX_OBJECTS = 0.3, 0.9, 16  # GenEval's defaults
GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
MIN_AREA = 6
CROP = 12  # shape classifier input: the object's mask in its box, resized to CROP × CROP
CONNECTIVITY = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])  # 4-neighbours: a rendered shape is 4-connected
PALETTE = np.array([BACKGROUND, *COLORS.values()], np.float32)  # (11, 3): 0 is the ground
COLOR_NAMES = (None, *COLORS)
COLOR_SCALE = 60.0  # RGB distance at which a pixel's colour confidence falls to 1/e


# ---------------------------------------------------------------------------------------------
# The shape classifier
# ---------------------------------------------------------------------------------------------

def mask_crop(mask: np.ndarray) -> torch.Tensor:
    """A mask (H, W) bool cut to its box and resized to (CROP, CROP) float in [0, 1]."""
    ys, xs = np.nonzero(mask)
    box = torch.from_numpy(mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32))
    return F.interpolate(box[None, None], size=(CROP, CROP), mode="area")[0, 0]


class ShapeClassifier(nn.Module):
    """(N, CROP, CROP) masks -> logits over SHAPES and, last, CLUTTER (a blob that is no shape, such as
    noise gives): a two-layer MLP."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(CROP * CROP, hidden), nn.ReLU(),
                                 nn.Linear(hidden, len(SHAPES) + 1))

    def forward(self, x):
        return self.net(x)


def clutter_mask(rng) -> np.ndarray:
    """The largest connected blob of random pixels (density 0.3-0.7): what noise looks like."""
    components, count = ndimage.label(rng.random((SIZE, SIZE)) < rng.uniform(0.3, 0.7), structure=CONNECTIVITY)
    sizes = np.bincount(components.ravel())[1:]
    return components == (int(sizes.argmax()) + 1) if count else np.zeros((SIZE, SIZE), bool)


def shape_examples(n: int, seed: int, flip_prob: float = 0.05, clutter: float = 0.2):
    """n (mask crop, class index) pairs: rendered shapes at random sizes and places with a fraction
    ``flip_prob`` of their edge pixels flipped (a sample is never exact), and a fraction ``clutter``
    of noise blobs (class len(SHAPES))."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    while len(crops) < n:
        if rng.random() < clutter:
            m = clutter_mask(rng)
            if m.sum() >= MIN_AREA:
                crops.append(mask_crop(m))
                labels.append(len(SHAPES))
            continue
        k = int(rng.integers(len(SHAPES)))
        r = float(rng.uniform(RADIUS[0] - 1, RADIUS[1] + 1))
        cx, cy = rng.uniform(r + 1, SIZE - r - 1, size=2)
        m = shape_mask(SHAPES[k], cx, cy, r)
        edge = m ^ ndimage.binary_erosion(m)
        m = m ^ (edge & (rng.random(m.shape) < flip_prob * 4))
        if m.sum() >= MIN_AREA:
            crops.append(mask_crop(m))
            labels.append(k)
    return torch.stack(crops), torch.tensor(labels)


def train_shape_classifier(n: int = 4000, steps: int = 400, seed: int = 0) -> ShapeClassifier:
    """Fit the classifier on ``n`` rendered masks (seeded; a few seconds on a CPU); eval mode."""
    x, y = shape_examples(n, seed)
    torch.manual_seed(seed)
    clf = ShapeClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n, (128,), generator=g)
        loss = F.cross_entropy(clf(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


# ---------------------------------------------------------------------------------------------
# Detection and GenEval's rules
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def detect(image: np.ndarray, classifier: ShapeClassifier) -> dict[str, list[dict]]:
    """Objects of a uint8 (H, W, 3) image by shape: [{box, color, confidence}], most confident first,
    those above no threshold yet (``evaluate`` applies GenEval's)."""
    img = np.asarray(image, np.float32)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ConfigError(f"detect: an image of shape {img.shape}; give uint8 (H, W, 3) RGB.")
    dist = np.linalg.norm(img[:, :, None, :] - PALETTE[None, None], axis=-1)  # (H, W, 11)
    nearest = dist.argmin(-1)
    found, crops = [], []
    for c in range(1, len(PALETTE)):
        components, count = ndimage.label(nearest == c, structure=CONNECTIVITY)
        for k in range(1, count + 1):
            m = components == k
            if m.sum() < MIN_AREA:
                continue
            ys, xs = np.nonzero(m)
            found.append({"box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                          "color": COLOR_NAMES[c],
                          "color_confidence": float(np.exp(-(dist[m, c] / COLOR_SCALE) ** 2).mean())})
            crops.append(mask_crop(m))
    objects: dict[str, list[dict]] = {}
    if found:
        probs = classifier(torch.stack(crops)).softmax(-1).numpy()
        for obj, p in zip(found, probs):
            k = int(p.argmax())
            if k == len(SHAPES):  # clutter: no object
                continue
            obj["confidence"] = obj.pop("color_confidence") * float(p[k])
            objects.setdefault(SHAPES[k], []).append(obj)
    return {s: sorted(v, key=lambda o: -o["confidence"]) for s, v in objects.items()}


def evaluate(objects: dict[str, list[dict]], metadata: dict) -> tuple[bool, str]:
    """GenEval's judgement of one image: (correct, reasons) from its detections and the prompt's metadata."""
    threshold = COUNTING_THRESHOLD if metadata["tag"] == "counting" else THRESHOLD
    objects = {s: [o for o in v if o["confidence"] > threshold][:MAX_OBJECTS] for s, v in objects.items()}
    correct, reasons, matched = True, [], []
    for req in metadata.get("include", []):
        name, ok = req["class"], True
        found = objects.get(name, [])[:req["count"]]
        if len(found) < req["count"]:
            ok = False
            reasons.append(f"expected {name}>={req['count']}, found {len(found)}")
        else:
            if "color" in req and [o["color"] for o in found].count(req["color"]) < req["count"]:
                ok = False
                reasons.append(f"expected {req['color']} {name}, found {', '.join(o['color'] for o in found)}")
            if "position" in req and ok:
                rel, target = req["position"]
                if matched[target] is None:
                    ok = False
                    reasons.append(f"no target for {name} to be {rel}")
                elif not all(rel in relative_position(o["box"], t["box"]) for o in found for t in matched[target]):
                    ok = False
                    reasons.append(f"expected {name} {rel} target")
        correct &= ok
        matched.append(found if ok else None)
    for req in metadata.get("exclude", []):
        if len(objects.get(req["class"], [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {len(objects[req['class']])}")
    return correct, "; ".join(reasons)


def geneval_scores(images, metadata: list[dict], classifier: ShapeClassifier) -> dict:
    """Accuracy per tag (the fraction of its images judged correct), ``overall`` (the mean over
    GenEval's six tags present) and ``n`` per tag; images uint8 (N, H, W, 3) or (N, 3, H, W)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    if len(images) != len(metadata):
        raise ConfigError(f"{len(images)} images but {len(metadata)} prompts' metadata; give one per image.")
    by_tag: dict[str, list[bool]] = {}
    for img, meta in zip(images, metadata):
        by_tag.setdefault(meta["tag"], []).append(evaluate(detect(img, classifier), meta)[0])
    scores = {tag: float(np.mean(v)) for tag, v in by_tag.items()}
    six = [scores[t] for t in GENEVAL_TAGS if t in scores]
    return {**scores, "overall": float(np.mean(six)) if six else None, "n": {t: len(v) for t, v in by_tag.items()}}


def check_detector(classifier: ShapeClassifier, n: int = 700, seed: int = 0, minimum: float = 0.95) -> dict:
    """GenEval scores of ``n`` real renders (the scenes' test split): the detector must find what the
    captions say on real images (every tag >= ``minimum``) before it scores samples."""
    scenes = Scenes("test", n=n, seed=seed, output="uint8")
    scores = geneval_scores(scenes.images.numpy(), scenes.scenes, classifier)
    low = {t: v for t, v in scores.items() if t not in ("overall", "n") and v < minimum}
    if low:
        raise ConfigError(f"the scene detector scores real renders below {minimum}: {low}; retrain the shape "
                          "classifier (more examples or steps) before scoring samples.")
    return scores
