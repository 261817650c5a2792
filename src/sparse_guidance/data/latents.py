"""Pre-encoded latents in memory-mappable shards with a manifest; resumable encoding.

Layout of ``out_dir``::

    manifest.json        what was encoded, how, and the completed shards with their checksums
    shard-00000.npy      (n, C, h, w) latents (float32 or float16), codec-scaled (e.g. × 0.18215)
    labels-00000.npy     (n,) int64 class labels
    ...

Shard k holds dataset items [k·shard_size, (k+1)·shard_size) in order; with flip=True it holds them
and then the same items mirrored left-right (encoded from the flipped images, as MaskDiT's
feature extraction does), so the total count doubles.

Crash safety (the protocol): each file is written to a temporary file in the same folder and
renamed over its final name (os.replace); the manifest lists only shards whose two files are in
place, and is itself rewritten the same way after every shard. A run killed anywhere leaves a
manifest that describes only whole shards; the next call with the same arguments removes stray
temporary files, keeps the listed shards whose sha256 still matches and encodes the rest.
Stochastic codecs (the VAE's posterior sample) draw from a generator seeded by (seed, shard), so
a resumed encoding equals an uninterrupted one bit for bit.
"""
from __future__ import annotations

import bisect
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ..progress import tqdm

from ..io import bytes_hash, file_hash, write_bytes
from ..errors import ConfigError
from .codecs import Codec

MANIFEST = "manifest.json"
FORMAT = "sparse-guidance-latents"
VERSION = 1
DTYPES = ("float32", "float16")
VERIFY = ("size", "sha256")
MANIFEST_KEYS = ("shards", "complete", "num_shards", "count", "latent_shape", "dtype", "codec", "num_classes",
                 "class_histogram")
SHARD_KEYS = ("index", "count", "latents", "labels", "bytes", "sha256")
# Manifest fields that must agree for a resumed encoding to continue an earlier one.
SETTINGS = ("format", "version", "codec", "source_count", "count", "flip", "shard_size", "num_shards",
            "dtype", "seed", "latent_shape", "source_digest")


def shard_files(index: int) -> tuple[str, str]:
    """File names (latents, labels) of shard ``index``."""
    return f"shard-{index:05d}.npy", f"labels-{index:05d}.npy"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def read_manifest(out_dir: str | Path) -> dict | None:
    """The manifest of a latent folder, or None if there is none; ConfigError if it is unreadable."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"latent manifest {str(path)!r} is unreadable ({e}); delete the folder and re-encode.") from e
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ConfigError(f"{str(path)!r} is not a {FORMAT} v{VERSION} manifest; use another folder.")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    missing += [f"shards[{i}].{k}" for i, sh in enumerate(manifest.get("shards") or []) for k in SHARD_KEYS if k not in sh]
    if "scale_factor" not in (manifest.get("codec") or {}):
        missing.append("codec.scale_factor")
    if missing:
        raise ConfigError(f"latent manifest {str(path)!r} lacks {', '.join(missing[:6])}; it was edited or written by "
                          "something else: delete the folder and re-encode.")
    return manifest


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; float images pass unchanged (assumed in [-1, 1])."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


def shard_seed(seed: int, index: int) -> int:
    """Independent, reproducible generator seed for shard ``index`` of an encoding seeded by ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _class_histogram(out_dir: Path, shards: list[dict], num_classes: int | None, per_item: bool = False):
    """Label counts over the listed shards (length num_classes, or max label + 1 if unknown); None
    where each label names one item (a caption per sample: a histogram of ones)."""
    if per_item:
        return None
    labels = [np.load(out_dir / s["labels"]) for s in shards]
    return np.bincount(np.concatenate(labels) if labels else np.zeros(0, np.int64), minlength=num_classes or 0).tolist()


def _write_manifest(out_dir: Path, settings: dict, shards: dict[int, dict], num_classes: int | None,
                    per_item: bool = False):
    done = [shards[i] for i in sorted(shards)]
    manifest = {**settings, "complete": len(done) == settings["num_shards"], "num_classes": num_classes,
                "class_histogram": _class_histogram(out_dir, done, num_classes, per_item),
                "layout": "shard k: dataset items [k*shard_size, (k+1)*shard_size), then (flip) the same mirrored",
                "shards": done}
    write_bytes(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def _shard_intact(out_dir: Path, entry: dict) -> bool:
    """Both files of a listed shard exist and match their recorded sha256."""
    for key in ("latents", "labels"):
        path = out_dir / entry[key]
        if not path.is_file() or path.stat().st_size != entry["bytes"][key] or file_hash(path, "sha256") != entry["sha256"][key]:
            return False
    return True


def _remove_stray_temps(out_dir: Path):
    for p in out_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def _clear(out_dir: Path):
    for pattern in ("shard-*.npy", "labels-*.npy", MANIFEST):
        for p in out_dir.glob(pattern):
            p.unlink()


@dataclass
class EncodeReport:
    """What encode_dataset did: shards it encoded in this call and shards it kept from an earlier one."""
    out_dir: Path
    manifest: dict
    encoded: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)


def _batches(start: int, stop: int, batch_size: int) -> list[list[int]]:
    return [list(range(a, min(a + batch_size, stop))) for a in range(start, stop, batch_size)]


def encode_dataset(dataset, codec: Codec, out_dir: str | Path, shard_size: int = 10000, batch_size: int = 64,
                   flip: bool = False, device: str | torch.device = "cpu", dtype: str = "float32", seed: int = 0,
                   num_workers: int = 0, overwrite: bool = False, progress: bool = True) -> EncodeReport:
    """Encode a dataset of (image, label) into latent shards + manifest (see the module docstring).

    dataset items: image uint8 (C, H, W) in [0, 255] or float in [-1, 1], label int. Calling again with
    the same arguments resumes an unfinished folder (or returns at once if it is complete); other
    arguments on a folder that holds an encoding raise ConfigError unless overwrite=True.
    dtype: "float32", or "float16" to halve the disk (ImageNet: 1.28M × 4×32×32 -> 10.5 GB).
    """
    n = len(dataset)
    if n == 0:
        raise ConfigError("encode_dataset got an empty dataset.")
    if shard_size < 1 or batch_size < 1:
        raise ConfigError(f"shard_size and batch_size must be >= 1; got {shard_size}, {batch_size}.")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown latent dtype {dtype!r}; choose one of {DTYPES}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stray_temps(out_dir)

    first = dataset[0][0]
    num_shards = -(-n // shard_size)
    settings = dict(format=FORMAT, version=VERSION, codec=codec.config(), scale_factor=codec.scale_factor,
                    source_count=n, count=n * (2 if flip else 1), flip=bool(flip), shard_size=shard_size,
                    num_shards=num_shards, dtype=dtype, seed=seed,
                    latent_shape=list(codec.latent_shape(first.shape[-2], first.shape[-1])),
                    source_digest=getattr(dataset, "source_digest", None))  # which samples (webdataset's index)
    classes = getattr(dataset, "classes", None)
    per_item = bool(getattr(dataset, "labels_index_items", False))  # label i: item i's caption (webdataset.py)
    num_classes = len(classes) if classes is not None else (len(dataset) if per_item else None)

    done = _resume(out_dir, settings, overwrite)
    report = EncodeReport(out_dir, {}, reused=sorted(done))
    todo = [k for k in range(num_shards) if k not in done]
    if not todo:
        report.manifest = _write_manifest(out_dir, settings, done, num_classes, per_item)
        return report

    codec.to(device)
    batches = {k: _batches(k * shard_size, min((k + 1) * shard_size, n), batch_size) for k in todo}
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[b for k in todo for b in batches[k]],
                                         num_workers=num_workers)
    items = iter(loader)
    with tqdm(total=sum(min((k + 1) * shard_size, n) - k * shard_size for k in todo), unit="img",
              desc=f"encoding {out_dir.name}", disable=not progress) as bar:
        for k in todo:
            gen = torch.Generator().manual_seed(shard_seed(seed, k))
            parts, flipped, labels = [], [], []
            for _ in batches[k]:
                x, y = next(items)
                x = to_model_range(x).to(device)  # (B, C, H, W)
                z = codec.encode(torch.cat([x, x.flip(-1)]) if flip else x, generator=gen).cpu()
                parts.append(z[:len(x)])
                flipped.append(z[len(x):])
                labels.append(torch.as_tensor(y, dtype=torch.int64))
                bar.update(len(x))
            lat = torch.cat(parts + flipped if flip else parts).numpy().astype(dtype)  # (n_k, C, h, w)
            lab = torch.cat(labels * 2 if flip else labels).numpy()  # (n_k,)
            first = k * shard_size
            if not np.isfinite(lat).all():  # (also a float16 overflow)
                raise ConfigError(f"encoding shard {k} (images {first}..{first + sum(map(len, parts)) - 1}): "
                                  f"the codec gave NaN or infinite latents as {dtype}; check the images and the "
                                  "codec's weights (or encode as float32).")
            if num_classes is not None and (lab.min() < 0 or lab.max() >= num_classes):
                raise ConfigError(f"encoding shard {k}: labels span {lab.min()}..{lab.max()}, but the dataset names "
                                  f"{num_classes} classes (0..{num_classes - 1}); fix the labels.")
            done[k] = _write_shard(out_dir, k, lat, lab)
            report.encoded.append(k)
            report.manifest = _write_manifest(out_dir, settings, done, num_classes, per_item)
            bar.set_postfix(shard=f"{len(done)}/{num_shards}")
    return report


def _resume(out_dir: Path, settings: dict, overwrite: bool) -> dict[int, dict]:
    """Shards of an earlier run with the same settings that are still intact (index -> entry)."""
    if overwrite:
        _clear(out_dir)
        return {}
    old = read_manifest(out_dir)
    if old is None:
        return {}
    diff = [k for k in SETTINGS if old.get(k) != settings[k]]
    if diff:
        shown = "; ".join(f"{k}: folder has {old.get(k)!r}, asked {settings[k]!r}" for k in diff[:4])
        raise ConfigError(f"{str(out_dir)!r} holds another encoding ({shown}); use another out_dir or overwrite=True.")
    return {e["index"]: e for e in old["shards"] if _shard_intact(out_dir, e)}


def _write_shard(out_dir: Path, index: int, latents: np.ndarray, labels: np.ndarray) -> dict:
    """Write one shard's two files atomically; its manifest entry."""
    names = shard_files(index)
    entry = dict(index=index, count=len(labels), latents=names[0], labels=names[1], sha256={}, bytes={})
    for key, name, arr in zip(("latents", "labels"), names, (latents, labels)):
        data = _npy_bytes(arr)
        write_bytes(out_dir / name, data)
        entry["sha256"][key] = bytes_hash(data, "sha256")
        entry["bytes"][key] = len(data)
    return entry


class LatentDataset(torch.utils.data.Dataset):
    """Memory-mapped latent shards written by encode_dataset: item i -> (latent (C, h, w) float32, label).

    The folder must hold a complete encoding: ConfigError naming it if the manifest is missing, the
    encoding is unfinished, a shard is missing or damaged, or a label is not a class 0..K-1.
    verify="sha256" (the default: once per process, as a job opens its inputs) re-hashes every file
    against the manifest's SHA-256 (it reads everything once); verify="size" checks only each shard's
    byte size, array shape and dtype.
    Attributes: manifest, labels (N,) int64, latent_shape, num_classes, scale_factor, codec.
    """

    def __init__(self, out_dir: str | Path, verify: str = "sha256"):
        if verify not in VERIFY:
            raise ConfigError(f"unknown verify {verify!r}; choose one of {VERIFY}.")
        self.out_dir = Path(out_dir)
        manifest = read_manifest(self.out_dir)
        if manifest is None:
            raise ConfigError(f"{str(self.out_dir)!r} has no {MANIFEST}: encode the dataset there first "
                              "(sparse_guidance.data.encode_dataset).")
        shards = manifest["shards"]
        if not manifest["complete"] or [s["index"] for s in shards] != list(range(manifest["num_shards"])):
            raise ConfigError(f"latent encoding in {str(self.out_dir)!r} is unfinished ({len(shards)} of "
                              f"{manifest['num_shards']} shards); rerun encode_dataset with the same arguments "
                              "to resume.")
        self.manifest, self.latent_shape = manifest, tuple(manifest["latent_shape"])
        self.codec, self.scale_factor = manifest["codec"], manifest["codec"]["scale_factor"]
        self.num_classes = manifest["num_classes"] or len(manifest["class_histogram"] or [])
        for s in shards:
            self._check_shard(s, verify)
        self.labels = np.concatenate([np.load(self.out_dir / s["labels"]) for s in shards])
        if len(self.labels) != manifest["count"]:
            raise ConfigError(f"latent folder {str(self.out_dir)!r}: shards hold {len(self.labels)} items, the "
                              f"manifest says {manifest['count']}; re-encode it.")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ConfigError(f"latent folder {str(self.out_dir)!r}: labels span {self.labels.min()}..{self.labels.max()}, "
                              f"not the classes 0..{self.num_classes - 1} of its manifest (label {self.num_classes} "
                              "would train as the null class); re-encode it.")
        self._paths = [self.out_dir / s["latents"] for s in shards]
        self._ends = np.cumsum([s["count"] for s in shards]).tolist()
        self._arrays: dict[int, np.ndarray] = {}

    def _check_shard(self, s: dict, verify: str):
        where = f"latent shard {s['index']} in {str(self.out_dir)!r}"
        for key in ("latents", "labels"):
            path = self.out_dir / s[key]
            if not path.is_file():
                raise ConfigError(f"{where}: {s[key]} is missing; rerun encode_dataset with the same arguments "
                                  "to re-encode it.")
            if path.stat().st_size != s["bytes"][key] or (verify == "sha256" and file_hash(path, "sha256") != s["sha256"][key]):
                raise ConfigError(f"{where}: {s[key]} is corrupt (size or sha256 differs from the manifest); rerun "
                                  "encode_dataset with the same arguments to re-encode it.")
        arr = np.load(self.out_dir / s["latents"], mmap_mode="r")
        if arr.shape != (s["count"], *self.latent_shape) or arr.dtype != np.dtype(self.manifest["dtype"]):
            raise ConfigError(f"{where}: holds {arr.shape} {arr.dtype}, the manifest says "
                              f"{(s['count'], *self.latent_shape)} {self.manifest['dtype']}; re-encode it.")

    def _shard(self, k: int) -> np.ndarray:
        if k not in self._arrays:  # opened lazily, so DataLoader workers map their own copies
            self._arrays[k] = np.load(self._paths[k], mmap_mode="r")
        return self._arrays[k]

    def __getstate__(self):
        return {**self.__dict__, "_arrays": {}}

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} latents")
        k = bisect.bisect_right(self._ends, index)
        j = index - (self._ends[k - 1] if k else 0)
        z = torch.from_numpy(np.array(self._shard(k)[j], dtype=np.float32))  # (C, h, w)
        return z, int(self.labels[index])
