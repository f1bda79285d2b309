"""Training-state checkpoints: everything a run needs to continue exactly where it stopped.

Model, optimiser, scheduler, AMP scaler, step, history and the python/numpy/torch RNG states are
stored as tensors and plain types only, so the file loads with ``torch.load(weights_only=True)``
(no pickle runs). Writes are atomic (``io.atomic_path``): a crash, kill -9 or cancel mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.model.checkpoint import atomic_torch_save

STATE_FORMAT = "napari-madgnet-train-state"
LAST_STATE = "last_state.pt"
BEST_MODEL = "best.pt"


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    key, mt, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "key": key,
            "state": torch.from_numpy(np.asarray(mt, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write a training state (``state`` must hold tensors and plain types only)."""
    full = {"format": STATE_FORMAT, "format_version": 1, **state, "rng": rng_state()}
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
