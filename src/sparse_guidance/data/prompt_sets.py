"""Evaluation prompt sets of the text-to-image track: each prompt with its tag (a GenEval tag or an
HPSv3 category) and, for GenEval, its metadata. A set is the track's ``data.eval`` (the default,
named ``eval``) or one of ``data.prompt_sets``; an experiment says which it samples (``prompts:``).

Formats (``format:``):
- ``scenes`` (the default): drawn from the embedded scenes' test split (data/scenes.py:
  evaluation_prompts; prompts_per_tag, seed, tags).
- ``geneval``: GenEval's own ``prompts/evaluation_metadata.jsonl`` (its repository; 553 prompts,
  one JSON object per line: tag, include, exclude, prompt), read as it is (``path``).
- ``tagged``: a JSON Lines file of ``{"prompt": ..., "tag": ...}`` (``path``), e.g. the HPSv3
  benchmark's prompts with their category as tag (the 12 columns of Table 4).

    prompts = load_prompt_set({"format": "geneval", "path": "geneval/prompts/evaluation_metadata.jsonl"})
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .scenes import TAGS, evaluation_prompts

FORMATS = ("scenes", "geneval", "tagged")


def load_prompt_set(spec: dict) -> list[dict]:
    """The prompts of a set, in order: dicts with at least ``prompt`` and ``tag``."""
    fmt = spec.get("format", "scenes")
    if fmt == "scenes":
        return evaluation_prompts(spec.get("prompts_per_tag", 16), spec.get("seed", 0), spec.get("tags", TAGS))
    if fmt not in FORMATS:
        raise ConfigError(f"prompt set format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    path = Path(str(spec.get("path") or "")).expanduser()
    if not spec.get("path") or not path.is_file():
        raise ConfigError(f"prompt set ({fmt}): path {str(spec.get('path'))!r} is not a file; give "
                          + ("GenEval's prompts/evaluation_metadata.jsonl." if fmt == "geneval" else
                             "a JSON Lines file of {\"prompt\": ..., \"tag\": ...}."))
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"{str(path)!r}, line {n}: not JSON ({e}).") from e
        need = ("tag", "prompt", "include") if fmt == "geneval" else ("tag", "prompt")
        if not isinstance(item, dict) or any(k not in item for k in need) or not str(item["prompt"]).strip():
            raise ConfigError(f"{str(path)!r}, line {n}: a prompt needs {', '.join(need)} (a non-empty prompt).")
        out.append(item)
    if not out:
        raise ConfigError(f"prompt set {str(path)!r} holds no prompt.")
    return out
