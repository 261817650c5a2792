"""Files, once: atomic writes (a killed job never leaves half a file under a result's name) and
content hashes (resume keys, caches, checksums)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ConfigError


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------

@contextmanager
def atomic_open(path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing; on a clean exit flush, fsync, make it
    world-readable (mkstemp creates 0600) and rename it over ``path``; on an error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable_folder(folder, what: str, fix: str) -> None:
    """ConfigError unless ``folder`` exists as a writable folder or can be created: the nearest
    existing ancestor must be a writable folder (not a file). ``fix`` ends the message."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{what} {str(folder)!r} cannot be a folder: {str(existing)!r} is a file; {fix}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(folder)!r} cannot be written: {str(existing)!r} is read-only; {fix}.")


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist; run the workflow job that writes it first "
                          "(`snakemake <that file>`, or the target that needs it).")
    return json.loads(path.read_text())


def save_npz(path, **arrays) -> Path:
    """np.savez to a temporary file beside ``path``, then renamed over it (ADM image sets, statistics)."""
    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def copy_file(src, dst) -> Path:
    with open(src, "rb") as fsrc, atomic_open(dst) as fdst:
        shutil.copyfileobj(fsrc, fdst)
    return Path(dst)


def publish(src, dst) -> Path:
    """Make ``dst`` a hard link to ``src`` (a copy where links are impossible), replacing it atomically."""
    dst = Path(dst)
    if dst.exists() and os.path.samefile(src, dst):  # already published (a rename onto the same
        return dst                                   # file would do nothing and leave the .tmp link)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------

_FILE_HASHES: dict = {}


def file_hash(path, algorithm: str = "blake2b") -> str:
    """Hex digest of a file's bytes (blake2b-128, sha1 or sha256), memoised per process by
    (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    memo = (algorithm, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_HASHES:
        h = hashlib.blake2b(digest_size=16) if algorithm == "blake2b" else hashlib.new(algorithm)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        _FILE_HASHES[memo] = h.hexdigest()
    return _FILE_HASHES[memo]


def bytes_hash(data: bytes, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, data).hexdigest()


def array_digest(images: np.ndarray) -> str:
    """BLAKE2b-128 of an array's shape, dtype and bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(images.shape), str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def text_digest(*parts) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def digest(obj) -> str:
    """16 hex digits of the SHA-256 of an object's sorted JSON (job configurations, resume keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
