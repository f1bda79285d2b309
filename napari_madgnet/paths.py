"""Where napari-madgnet keeps files on the user's machine.

Two folders, each movable by an environment variable so that clusters, shared installs and tests
can point them elsewhere without touching code:

- ``MADGNET_CACHE_DIR``: downloaded files (ImageNet encoder weights).
- ``MADGNET_MODELS_DIR``: the model registry, the user's imported and fine-tuned models.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "napari-madgnet"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path.home() / fallback


def cache_dir() -> Path:
    """Folder for downloads; ``MADGNET_CACHE_DIR`` overrides the per-user cache."""
    override = os.environ.get("MADGNET_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return _xdg("XDG_CACHE_HOME", ".cache") / APP_NAME


def models_dir() -> Path:
    """Folder of the model registry; ``MADGNET_MODELS_DIR`` overrides the per-user data folder."""
    override = os.environ.get("MADGNET_MODELS_DIR")
    if override:
        return Path(override).expanduser()
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_NAME / "models"
