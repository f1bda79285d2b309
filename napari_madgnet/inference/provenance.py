"""What a result was made from: model file and hash, every parameter, device, package version.

Hashing a 130-250 MB checkpoint takes about a second, so hashes are cached by
(path, size, mtime) in memory and in ``cache_dir()/sha256.json`` for the next process.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import threading
from pathlib import Path
from typing import Any

from napari_madgnet import __version__
from napari_madgnet.io import atomic_path
from napari_madgnet.paths import cache_dir

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
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _memory[key] = digest
        disk = _read_disk()
        disk[key] = digest
        # a read-only cache must not break inference
        with contextlib.suppress(OSError), atomic_path(_disk_cache(), overwrite=True) as tmp:
            tmp.write_text(json.dumps(disk, indent=0))
    return digest


def model_provenance(model: Any) -> dict[str, Any]:
    """Name, path, sha256 and checkpoint metadata of a model, as far as they are known."""
    info = dict(getattr(model, "checkpoint_info", None) or {})
    path = getattr(model, "checkpoint_path", None) or info.get("source")
    if path and not Path(str(path)).is_file():
        path = None
    entry: dict[str, Any] = {
        "name": getattr(model, "model_name", None) or (Path(path).name if path else type(model).__name__),
        "path": str(path) if path else None,
        "sha256": file_sha256(path) if path and Path(path).is_file() else None,
        "class": type(model).__name__,
    }
    for key in ("config", "preprocessing", "provenance"):
        if key in info:
            entry[key] = info[key]
    return entry


def build_provenance(model: Any, config_dict: dict[str, Any], **resolved: Any) -> dict[str, Any]:
    """The provenance record stored with every result (JSON-serialisable)."""
    import torch

    return {
        "software": {
            "package": "napari-madgnet",
            "version": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_provenance(model),
        "config": config_dict,
        "resolved": resolved,
    }
