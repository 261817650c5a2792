"""The scene-text score: an image-text score trained by the pipeline, the embedded stand-in for HPSv3.

HPSv3 (Table 4) scores how well an image matches human preference for its prompt, with a 7B
vision-language model; at the embedded scale nothing of the kind exists offline. This score is
what the scenes allow instead: a small contrastive model (CLIP's objective) trained on real
(scene, caption) pairs, scoring an image by the cosine similarity of its embedding with its prompt's.
It measures prompt agreement on flat-colour scenes, not human preference: tables and plots always
call it "scene-text score", never HPSv3, and report it per scene tag (Table 4 reports per category).

    scorer = train_scene_text_scorer(Scenes("train", n=20000), bank)   # bank: data/text_encoders.py
    per_tag = scene_text_scores(scorer, images, prompt_indices, tags)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.latents import to_model_range
from ..errors import ConfigError

NAME = "scene-text score"


class SceneTextScorer(nn.Module):
    """Image (N, 3, 32, 32) in [-1, 1] and prompt features (N, L, d) + mask -> cosine similarity (N,)."""

    def __init__(self, text_dim: int, width: int = 128):
        super().__init__()
        self.text_dim, self.width = text_dim, width
        self.image = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),   # (N, 32, 16, 16)
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # (N, 64, 8, 8)
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # (N, 128, 4, 4)
            nn.Flatten(), nn.Linear(128 * 16, width))
        self.text = nn.Sequential(nn.Linear(text_dim, width), nn.ReLU(), nn.Linear(width, width))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))

    def embed_text(self, features, mask):
        m = mask.float()[..., None]
        return F.normalize(self.text((features * m).sum(1) / m.sum(1).clamp_min(1)), dim=-1)  # masked mean

    def embed_image(self, images):
        return F.normalize(self.image(images), dim=-1)

    def forward(self, images, features, mask):
        return (self.embed_image(images) * self.embed_text(features, mask)).sum(-1)  # (N,)


def _as_float_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images))
    if x.ndim != 4:
        raise ConfigError(f"images of shape {tuple(x.shape)}; give (N, 3, 32, 32) or (N, 32, 32, 3).")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    return to_model_range(x)


def train_scene_text_scorer(scenes, bank: dict, steps: int = 600, batch_size: int = 128, lr: float = 2e-3,
                            seed: int = 0) -> SceneTextScorer:
    """Fit the scorer on real (scene, caption) pairs with CLIP's symmetric contrastive loss; pairs
    of a batch that share a caption are not counted as negatives. ``bank``: the prompt bank of the
    scenes' captions (data/text_encoders.prompt_bank). Returns it in eval mode."""
    if list(bank["prompts"]) != list(scenes.captions):
        raise ConfigError("the prompt bank is not that of these scenes' captions; make it with "
                          "prompt_bank(encoder, scenes.captions).")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = _as_float_images(scenes.images)
    targets = torch.tensor(scenes.targets)
    model = SceneTextScorer(bank["features"].shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        y = targets[idx]
        img = model.embed_image(images[idx])
        txt = model.embed_text(bank["features"][y], bank["mask"][y])
        logits = model.log_scale.exp() * img @ txt.T  # (B, B)
        same = y[:, None] == y[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(y), dtype=torch.bool), float("-inf"))
        labels = torch.arange(len(y))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def scene_text_scores(scorer: SceneTextScorer, images, prompts, tags, bank: dict) -> dict:
    """Mean score per tag and overall ({tag: mean, "overall": mean, "n": {tag: count}}) of images
    (uint8 NHWC/NCHW or float in [-1, 1]) against the bank's prompts ``prompts`` (indices)."""
    x, y = _as_float_images(images), torch.as_tensor(np.asarray(prompts), dtype=torch.long)
    if not len(x) == len(y) == len(tags):
        raise ConfigError(f"{len(x)} images, {len(y)} prompts and {len(tags)} tags; give one of each per image.")
    s = torch.cat([scorer(x[i:i + 512], bank["features"][y[i:i + 512]], bank["mask"][y[i:i + 512]])
                   for i in range(0, len(x), 512)]).numpy()
    tags = np.asarray(tags)
    out = {t: float(s[tags == t].mean()) for t in dict.fromkeys(tags.tolist())}
    return {**out, "overall": float(s.mean()), "n": {t: int((tags == t).sum()) for t in out}}
