"""A small Fashion-MNIST classifier as a cheap feature network for metrics (not Inception).

The FID Inception reads about 10 images/s on a 2-core CPU, too slow for the big grids of guidance
settings that the embedded workflow evaluates. Those grids are measured instead in the features of
this CNN, which the pipeline trains on Fashion-MNIST's training images in about a minute; the results
carry its ``label`` ("... not Inception") and its ``extractor_id`` (with the SHA-1 of the weights
file), so they are never mistaken for Inception FID. Tables keep Inception FID.

Network (1 x 32 x 32 grey, Fashion-MNIST padded to 32 x 32):

    block1  conv3x3 1->16,  BN, ReLU, maxpool2   (N, 16, 16, 16)
    block2  conv3x3 16->32, BN, ReLU, maxpool2   (N, 32, 8, 8)    -> "spatial": channels [:8], NHWC (512)
    block3  conv3x3 32->64, BN, ReLU, maxpool2   (N, 64, 4, 4)
    hidden  flatten, linear 1024->128, ReLU      (N, 128)         -> "pool" (penultimate, like pool3)
    head    linear 128->10                       (N, 10)          -> "logits" (the dataset's class ids)

Input: ``forward`` takes uint8 (N, 1, 32, 32) in [0, 255] (divided by 255 inside) or float already in
[0, 1]; both are then mapped to [-1, 1]. ``ClassifierExtractor`` takes the metrics code's uint8 RGB
(N, 3, 32, 32) (grey repeated to RGB) and uses the channel mean, which for grey images is the grey.

Weights file (``save_classifier``; written atomically): a ``torch.save`` dict with ``format``,
``version``, ``config`` (the constructor's arguments), ``state_dict`` and ``meta`` (JSON-ready: how it
was trained, e.g. steps and test accuracy).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ..progress import tqdm

from ..io import atomic_open, bytes_hash
from ..errors import ConfigError

FORMAT = "sparse_guidance.fashion_classifier"
FORMAT_VERSION = 1
FEATURE_VERSION = 1  # bump when extraction changes: invalidates every feature/statistics cache
NAME = "fashion-mnist-classifier"
IMAGE_SIZE = 32
NUM_CLASSES = 10
# Defaults, measured on an AMD EPYC CPU: 1500 steps of 128 (3.2 epochs) reach 91.5 % test accuracy in
# 58 s on one thread, 37 s on two; 1000 steps reach about 90.7 %. Features: about 7000 images/s on one thread.
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR = 1500, 128, 2e-3
REFIT = "rerun the workflow's classifier stage (snakemake ... classifier), which writes it"


class FashionClassifier(nn.Module):
    """Small CNN for grey 32 x 32 images: three conv blocks, a 128-d penultimate layer, 10 logits.

    ``features(x)`` returns {"pool": (N, hidden), "spatial": (N, 8*8*spatial_channels), "logits":
    (N, num_classes)}; ``forward(x)`` returns the logits. x: uint8 (N, 1, 32, 32) in [0, 255] or float
    in [0, 1] (N, 1, 32, 32); (N, 32, 32) is accepted too.
    """

    def __init__(self, widths=(16, 32, 64), hidden: int = 128, num_classes: int = NUM_CLASSES,
                 spatial_channels: int = 8):
        super().__init__()
        if len(widths) != 3 or not 1 <= spatial_channels <= widths[1]:
            raise ConfigError(f"widths={widths!r} must be three channel counts and spatial_channels="
                              f"{spatial_channels} at most widths[1].")
        self.config = dict(widths=[int(w) for w in widths], hidden=int(hidden), num_classes=int(num_classes),
                           spatial_channels=int(spatial_channels))
        c1, c2, c3 = widths
        self.block1 = self._block(1, c1)  # (N, c1, 16, 16)
        self.block2 = self._block(c1, c2)  # (N, c2, 8, 8)
        self.block3 = self._block(c2, c3)  # (N, c3, 4, 4)
        self.hidden = nn.Linear(c3 * 4 * 4, hidden)
        self.head = nn.Linear(hidden, num_classes)
        self.spatial_channels = spatial_channels

    @staticmethod
    def _block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d(2))

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] or float [0, 1], (N, 32, 32) or (N, 1, 32, 32) -> float (N, 1, 32, 32) in [-1, 1]."""
        if x.ndim == 3:
            x = x[:, None]  # (N, 1, H, W)
        if x.ndim != 4 or x.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ConfigError(f"the Fashion-MNIST classifier takes (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}) images; "
                              f"got {tuple(x.shape)}.")
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return x * 2 - 1  # (N, 1, 32, 32)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.block2(self.block1(self.prepare(x)))  # (N, c2, 8, 8)
        spatial = h[:, :self.spatial_channels].permute(0, 2, 3, 1).flatten(1)  # NHWC, (N, 8 * 8 * channels)
        pool = F.relu(self.hidden(self.block3(h).flatten(1)))  # (N, c3 * 16) -> (N, hidden)
        return {"pool": pool, "spatial": spatial, "logits": self.head(pool)}  # logits (N, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]  # (N, num_classes)


def _as_training_data(images, labels, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dtype != torch.uint8 or x.ndim != 3 or tuple(x.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise ConfigError(f"training images must be uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}); got {tuple(x.shape)} "
                          f"{x.dtype} (Fashion-MNIST padded to 32x32: FashionMNIST(split, output='uint8').images).")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ConfigError(f"labels must be integers of shape ({len(x)},); got {tuple(y.shape)} {y.dtype}.")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes}); got [{int(y.min())}, {int(y.max())}].")
    if len(x) < 2:
        raise ConfigError(f"training needs at least 2 images; got {len(x)}.")
    return x, y.long()


def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image (B, 1, H, W) by up to max_shift pixels in x and y (zero fill) and flip half of
    them horizontally: mild augmentation; Fashion-MNIST's 2-pixel black border makes shifts natural."""
    b, _, h, w = x.shape
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2, b), generator=g)  # (B,) each
    flip = torch.rand(b, generator=g) < 0.5  # (B,)
    padded = F.pad(x[:, 0], (max_shift,) * 4)  # (B, H + 2s, W + 2s)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    rows = max_shift + dy[:, None] + ar_h  # (B, H)
    cols = max_shift + dx[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # (B, W)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]  # (B, 1, H, W)


def train_classifier(images, labels, *, steps: int = TRAIN_STEPS, batch_size: int = TRAIN_BATCH,
                     lr: float = TRAIN_LR, seed: int = 0, augment: bool = False, progress: bool = True,
                     device="cpu") -> FashionClassifier:
    """Train a FashionClassifier with AdamW and a one-cycle learning rate (peak ``lr``).

    images: uint8 (N, 32, 32) (or (N, 1, 32, 32)), NumPy or torch; labels: (N,) ints in [0, 10).
    Deterministic given ``seed`` (on one device and thread count): the initial weights, the batch
    indices (sampled with replacement) and, with ``augment``, the augmentation (shifts of up to 2 px,
    horizontal flips; off by default: it costs about 1.5 points of test accuracy at the default
    steps) all come from generators seeded with it; the global RNG is left as it was. Returns the model in
    eval mode, on ``device``.
    """
    for k, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{k}={v!r} must be a positive integer.")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError(f"lr={lr!r} must be a positive number.")
    x_all, y_all = _as_training_data(images, labels, NUM_CLASSES)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # the initial weights from the seed, global RNG untouched
        torch.manual_seed(seed)
        model = FashionClassifier()
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=int(steps))
    g = torch.Generator().manual_seed(seed)  # batch indices and augmentation, on the CPU
    with tqdm(range(int(steps)), desc="classifier", unit="step", disable=not progress, leave=False) as bar:
        for step in bar:
            idx = torch.randint(0, len(x_all), (int(batch_size),), generator=g)
            x = x_all[idx, None].float() / 255  # (B, 1, 32, 32) in [0, 1]
            if augment:
                x = _shift(x, g, max_shift=2)
            loss = F.cross_entropy(model(x.to(device)), y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: FashionClassifier, images, labels, batch_size: int = 1000) -> float:
    """Top-1 accuracy of the model on uint8 images (N, 32, 32) with labels (N,)."""
    x, y = _as_training_data(images, labels, model.config["num_classes"])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = sum(int((model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    model.train(was_training)
    return hits / len(x)


def save_classifier(model: FashionClassifier, path, meta: dict | None = None) -> Path:
    """Write the weights, the architecture and ``meta`` (JSON-ready) to ``path`` atomically."""
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"classifier meta must be JSON-ready (numbers, strings, lists, dicts): {e}.") from e
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "version": FORMAT_VERSION, "config": model.config, "state_dict": state, "meta": meta}
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(blob, f)
    return path


def _read_weights(path) -> tuple[bytes, Path]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"classifier weights {str(path)!r} do not exist; {REFIT}.")
    return path.read_bytes(), path


def _model_from_bytes(data: bytes, path: Path, device) -> FashionClassifier:
    fix = f"delete {str(path)!r} and {REFIT}"
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"classifier weights {str(path)!r} are not a readable file ({type(e).__name__}: {e}); "
                          f"{fix}.") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError(f"{str(path)!r} is not a Fashion-MNIST classifier file written by save_classifier; {fix}.")
    if blob.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} has classifier format version {blob.get('version')!r}, this code reads "
                          f"{FORMAT_VERSION}; {fix}.")
    try:
        model = FashionClassifier(**blob["config"])
        model.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise ConfigError(f"classifier weights {str(path)!r} do not fit the network ({type(e).__name__}: {e}); "
                          f"{fix}.") from e
    model.meta = dict(blob.get("meta") or {})
    return model.to(device).eval()


def load_classifier(path, device="cpu") -> FashionClassifier:
    """A FashionClassifier from ``save_classifier``'s file, in eval mode (``.meta``: what was saved);
    ConfigError naming the path if the file is missing or damaged."""
    data, path = _read_weights(path)
    return _model_from_bytes(data, path, device)


class ClassifierExtractor(nn.Module):
    """The trained Fashion-MNIST classifier behind the metrics code's feature-extractor protocol.

    ``extract`` takes uint8 RGB (N, 3, 32, 32) (grey repeated to RGB, as the metrics code makes it),
    averages the channels back to grey and returns {"pool": (N, 128), "spatial": (N, 512), "logits":
    (N, 10)}. ``extractor_id`` holds the SHA-1 of the weights file as it was loaded, so cached features
    and reference statistics are invalidated when the classifier is retrained. No resizing: other
    sizes than 32 x 32 raise ConfigError.
    """

    label = f"{NAME} (trained by the pipeline, not Inception)"
    has_logits = True
    resize = None

    def __init__(self, weights_path):
        super().__init__()
        data, self.weights_path = _read_weights(weights_path)
        self.sha1 = bytes_hash(data, "sha1")  # of the bytes actually loaded
        self.net = _model_from_bytes(data, self.weights_path, "cpu")
        self.meta = self.net.meta
        self.num_classes = self.net.config["num_classes"]
        self.requires_grad_(False)
        self.eval()

    @property
    def extractor_id(self) -> str:
        return f"{NAME}|sha1={self.sha1}|grey=channel-mean|spatial=block2[:{self.net.spatial_channels}]nhwc" \
               f"|v{FEATURE_VERSION}"

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, 32, 32) -> {"pool": (N, 128), "spatial": (N, 512), "logits": (N, 10)}."""
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
            got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
            raise ConfigError(f"{NAME} input must be a uint8 tensor (N, 3, H, W); got {got}.")
        if tuple(x.shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ConfigError(f"{NAME} reads {IMAGE_SIZE}x{IMAGE_SIZE} images (Fashion-MNIST padded); got "
                              f"{tuple(x.shape[2:])}: it does not resize.")
        grey = x.to(self.device).float().mean(1, keepdim=True) / 255  # (N, 1, 32, 32) in [0, 1]
        return self.net.features(grey)

    def forward(self, x):
        return self.extract(x)
