"""Loading models for the widgets' worker threads, once, and letting the GPU go afterwards.

Loading a checkpoint takes seconds on a CPU; a Segment widget re-runs often (another slice,
another scope), so the last model is kept, keyed by file and modification time, and reloaded
only when the choice or the file changes. Only one job per widget runs at a time, so the cache
needs no lock; it lives on the widget, not in a module global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ModelCache:
    """The last loaded model of one widget."""

    def __init__(self) -> None:
        self._key: tuple[str, int] | None = None
        self._model: Any = None

    def get(self, name_or_path: str) -> Any:
        """The model a registry name or checkpoint path stands for, as its inference copy
        (``inference.fast_model``, loaded on the CPU): re-runs reuse its packed weights."""
        from napari_madgnet.inference import fast_model
        from napari_madgnet.registry import load_registered_model, resolve_model

        entry = resolve_model(name_or_path)
        if entry.problem:
            raise ValueError(
                f"Model {entry.name!r} ({entry.path}) cannot be used: {entry.problem}. "
                "Pick another model, or re-save this one with napari_madgnet.model.save_model."
            )
        path = Path(entry.path)
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key != self._key:
            self._model = None  # let the old one go before loading the new one
            try:
                self._model = fast_model(load_registered_model(name_or_path))
            except Exception as exc:
                raise ValueError(
                    f"{path} could not be loaded as a MADGNet model ({type(exc).__name__}: {exc}). "
                    "Pick another model, or check that the file is complete (re-copy or re-export it)."
                ) from exc
            self._key = key
        return self._model

    def release(self) -> None:
        """Move the model back to the CPU and give the GPU's cached memory back."""
        model = self._model
        if model is None:
            return
        import torch

        try:
            on_gpu = next(model.parameters()).device.type != "cpu"
        except StopIteration:
            on_gpu = False
        if on_gpu:
            model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def clear(self) -> None:
        self._model = None
        self._key = None
