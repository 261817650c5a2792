"""(image, caption) webdataset shards (paper scale, text-to-image track): an index built once, then
random access to any sample, so the latent encoder reads them as it reads ImageNet.

The shards are plain tar files as img2dataset writes them (e.g. COYO-700M, LAION): the members of
one sample share a key, the member name up to its first dot (webdataset's rule)::

    00000.tar:  000000001.jpg  000000001.txt  000000001.json  000000002.jpg ...

``.jpg``/``.png``/``.webp`` is the image, ``.txt`` the caption (else ``caption`` in the ``.json``),
``.json`` the metadata. Shard patterns use webdataset's brace ranges: ``/data/coyo/{00000..01023}.tar``.

The paper's second-stage aesthetic filter is data, not code run here: either a text file of the keys
to keep (one per line; its output wherever it was computed), or a number of each sample's ``.json``
and its minimum (``{field: aesthetic_score, min: 5.0}``), or both.

    index = build_index(["/data/{00000..00003}.tar"], "results/paper/t2i/data", keep_keys=None)
    ds = CaptionShards("results/paper/t2i/data", image_size=512)   # item i -> (image (3, 512, 512), i)
    captions = read_captions("results/paper/t2i/data")              # caption i, in item order

Files written by build_index into ``data_dir``: ``index.npz`` (per sample: tar number, byte offset
and size of its image), ``captions.jsonl`` (one JSON string per line) and ``shards.json`` (the tar
files with their sizes, and what the filter kept). Labels are item indices: caption i is sample i's.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from ..progress import tqdm

from ..errors import ConfigError
from ..io import atomic_open, file_hash, write_json
from .imagenet import center_crop_arr
from .latents import to_model_range

IMAGE_KINDS = ("jpg", "jpeg", "png", "webp")
OPEN_FILES = 64  # tar files a process keeps open at once (10,000 shards would exceed the usual 1,024 limit)
INDEX, CAPTIONS, SHARDS = "index.npz", "captions.jsonl", "shards.json"
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(patterns) -> list[Path]:
    """Shard paths from patterns with brace ranges (``{000..012}``, zero-padded as written), in order."""
    out = []
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns):
        m = _RANGE.search(pattern)
        if m is None:
            out.append(Path(pattern).expanduser())
            continue
        lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
        if hi < lo:
            raise ConfigError(f"shard pattern {pattern!r}: the range {m.group(0)} runs backwards.")
        out += expand_shards([pattern[:m.start()] + f"{i:0{width}d}" + pattern[m.end():] for i in range(lo, hi + 1)])
    return out


def _key_and_kind(name: str) -> tuple[str, str]:
    """webdataset's split of a member name: key = the path up to the first dot of its file name."""
    folder, _, base = name.rpartition("/")
    stem, _, kind = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), kind.lower()


def scan_shard(path: Path) -> list[dict]:
    """The samples of one tar in member order: key, image offset/size, caption, metadata (dict or None).
    Samples without an image or a caption are left out (counted by build_index)."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, kind = _key_and_kind(m.name)
                s = samples.setdefault(key, {"key": key, "image": None, "caption": None, "meta": None})
                if kind in IMAGE_KINDS:
                    s["image"] = (m.offset_data, m.size)
                elif kind == "txt":
                    s["caption"] = tar.extractfile(m).read().decode("utf-8").strip()
                elif kind == "json":
                    s["meta"] = json.loads(tar.extractfile(m).read().decode("utf-8"))
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"webdataset shard {str(path)!r} is unreadable ({type(e).__name__}: {e}); it must be a "
                          "plain (uncompressed) tar, for random access: decompress a .tar.gz, re-download a broken "
                          "one, or remove it from data.shards.") from e
    for s in samples.values():
        if s["caption"] is None and isinstance(s["meta"], dict) and isinstance(s["meta"].get("caption"), str):
            s["caption"] = s["meta"]["caption"].strip()
    return list(samples.values())


def read_keys(path) -> set[str]:
    """The keys a filter keeps: a text file, one key per line (blank lines and '#' comments ignored)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"data.filter.keys: {str(p)!r} does not exist; give the kept keys' file (one key per line).")
    return {line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")}


def build_index(shards, data_dir, keep_keys=None, field: str | None = None, minimum: float | None = None,
                progress: bool = True) -> dict:
    """Scan the tar files once and write index.npz, captions.jsonl and shards.json into data_dir (each
    atomically). Returns shards.json's content: per tar its samples, and how many the filter removed."""
    paths = expand_shards(shards)
    if not paths:
        raise ConfigError("data.shards names no tar file; give a pattern such as /data/coyo/{00000..01023}.tar.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} webdataset shard(s) are missing, e.g. {missing[0]!r}; fix data.shards "
                          "(img2dataset writes them with --output_format webdataset).")
    if (field is None) != (minimum is None):
        raise ConfigError("data.filter: give field and min together (a number of each sample's .json and its "
                          "minimum), or neither.")
    keep = read_keys(keep_keys) if keep_keys else None
    tar_ids, offsets, sizes, captions, per_tar = [], [], [], [], []
    dropped = {"no_image": 0, "no_caption": 0, "not_in_keys": 0, "below_min": 0}
    for t, path in enumerate(tqdm(paths, desc="indexing shards", unit="tar", disable=not progress)):
        kept = 0
        for s in scan_shard(path):
            reason = ("no_image" if s["image"] is None else "no_caption" if not s["caption"] else
                      "not_in_keys" if keep is not None and s["key"] not in keep else
                      "below_min" if field is not None and not _at_least(s["meta"], field, minimum, path, s["key"])
                      else None)
            if reason:
                dropped[reason] += 1
                continue
            tar_ids.append(t)
            offsets.append(s["image"][0])
            sizes.append(s["image"][1])
            captions.append(s["caption"])
            kept += 1
        per_tar.append({"path": str(path), "bytes": path.stat().st_size, "samples": kept})
    if not captions:
        raise ConfigError(f"no sample of the {len(paths)} shard(s) is left ({dropped}); check the shards and the "
                          "filter.")
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / INDEX) as f:
        np.savez(f, tar=np.asarray(tar_ids, np.int32), offset=np.asarray(offsets, np.int64),
                 size=np.asarray(sizes, np.int64))
    with atomic_open(out / CAPTIONS, "w") as f:
        f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in captions)
    info = {"count": len(captions), "dropped": dropped, "filter": {"keys": str(keep_keys) if keep_keys else None,
                                                                    "field": field, "min": minimum},
            "shards": per_tar}
    write_json(out / SHARDS, info)
    return info


def _at_least(meta, field, minimum, path, key) -> bool:
    value = meta.get(field) if isinstance(meta, dict) else None
    if value is None:
        return False  # a sample the filter has no score for is not kept
    try:
        return float(value) >= float(minimum)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{str(path)!r}, sample {key!r}: .json field {field!r} is {value!r}, not a number.") from e


def read_captions(data_dir) -> list[str]:
    """The captions of an index, in item order (caption i belongs to sample i)."""
    path = Path(data_dir) / CAPTIONS
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist; index the shards first (the prepare_data job).")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class CaptionShards(torch.utils.data.Dataset):
    """The indexed samples: item i -> (image (3, S, S) uint8 or float in [-1, 1], ADM's center crop to
    ``image_size``; i, the index of its caption).

    Images are read with ``os.pread`` (no shared file offset) from at most OPEN_FILES tar files open
    per process; the handles are the opening process's own, so forked DataLoader workers open their
    own. ``source_digest`` (the index's hash) tells the latent encoder which samples these are."""

    labels_index_items = True  # one label per sample: the latent manifest keeps no class histogram

    def __init__(self, data_dir, image_size: int = 512, output: str = "float"):
        d = Path(data_dir)
        if not (d / INDEX).is_file() or not (d / SHARDS).is_file():
            raise ConfigError(f"{str(d)!r} holds no shard index ({INDEX}, {SHARDS}); run the prepare_data job.")
        with np.load(d / INDEX) as z:
            self.tar, self.offset, self.size = z["tar"], z["offset"], z["size"]
        self.shards = json.loads((d / SHARDS).read_text())["shards"]
        self.paths = [s["path"] for s in self.shards]
        self.source_digest = file_hash(d / INDEX, "sha256")
        self.image_size, self.output, self.classes = int(image_size), output, None
        self._files: OrderedDict[int, int] = OrderedDict()  # tar number -> file descriptor, oldest first
        self._pid = None

    def __getstate__(self):
        return {**self.__dict__, "_files": OrderedDict(), "_pid": None}

    def __len__(self) -> int:
        return len(self.tar)

    def _fd(self, t: int) -> int:
        if self._pid != os.getpid():  # a forked worker: the parent's descriptors are not its own
            self._files, self._pid = OrderedDict(), os.getpid()
        if t in self._files:
            self._files.move_to_end(t)
            return self._files[t]
        path = self.paths[t]
        try:
            if os.path.getsize(path) != self.shards[t]["bytes"]:
                raise ConfigError(f"webdataset shard {path!r} changed size since it was indexed; rerun the "
                                  "prepare_data job.")
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ConfigError(f"cannot open webdataset shard {path!r} ({e}).") from e
        self._files[t] = fd
        if len(self._files) > OPEN_FILES:
            os.close(self._files.popitem(last=False)[1])
        return fd

    def __getitem__(self, i: int):
        t = int(self.tar[i])
        data = os.pread(self._fd(t), int(self.size[i]), int(self.offset[i]))
        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except (OSError, ValueError) as e:
            raise ConfigError(f"sample {i} of {self.paths[t]!r} is not a readable image ({e}); the shard changed "
                              "since it was indexed: rerun the prepare_data job.") from e
        x = torch.from_numpy(np.array(center_crop_arr(image, self.image_size))).permute(2, 0, 1)  # (3, S, S)
        return (to_model_range(x) if self.output == "float" else x), i
