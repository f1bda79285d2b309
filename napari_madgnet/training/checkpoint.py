"""Training-state checkpoints: everything a run needs to continue exactly where it stopped.

Model, optimiser, scheduler, AMP scaler, step and history are stored as tensors and plain types
only (sampling is a pure function of the seed and the sample index, so no RNG state is needed),
so the file loads with ``torch.load(weights_only=True)``
(no pickle runs). Writes are atomic (``io.atomic_path``): a crash, kill -9 or cancel mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from napari_madgnet.model.checkpoint import atomic_torch_save

STATE_FORMAT = "napari-madgnet-train-state"
LAST_STATE = "last_state.pt"
BEST_MODEL = "best.pt"


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write a training state (``state`` must hold tensors and plain types only)."""
    full = {"format": STATE_FORMAT, "format_version": 1, **state}
    atomic_torch_save(full, Path(path))
    return Path(path)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training state safely (weights_only) and check that it is one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no training state to resume from; start without --resume.")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{p} is not a napari-madgnet training state (a saved model cannot be resumed).")
    return state
