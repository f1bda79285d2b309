"""sha256 of files: plain, and cached for large checkpoints.

Hashing a 130-250 MB checkpoint takes about a second, so ``file_sha256`` caches digests by
(path, size, mtime) in memory and in ``cache_dir()/sha256.json`` for the next process.
``sha256_file`` always reads the file (downloads are checked with it, never from a cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

from napari_madgnet.io import atomic_path
from napari_madgnet.paths import cache_dir


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (no cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_lock = threading.Lock()
_memory: dict[str, str] = {}


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _disk_cache() -> Path:
    return cache_dir() / "sha256.json"


def _read_disk() -> dict[str, str]:
    try:
        data = json.loads(_disk_cache().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, hashed once per (path, size, mtime)."""
    p = Path(path)
    key = _key(p)
    with _lock:
        if key in _memory:
            return _memory[key]
        disk = _read_disk()
        if key in disk:
            _memory[key] = disk[key]
            return disk[key]
    digest = sha256_file(p)
    with _lock:
        _memory[key] = digest
        disk = _read_disk()
        disk[key] = digest
        # a read-only cache must not break inference
        with contextlib.suppress(OSError), atomic_path(_disk_cache(), overwrite=True) as tmp:
            tmp.write_text(json.dumps(disk, indent=0))
    return digest
