"""What a result was made from: model file and hash, every parameter, device, package version."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path
from typing import Any

from napari_madgnet import __version__
from napari_madgnet.hashing import file_sha256


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
