"""What every export format shares: the model to export, its metadata, optional packages, safe writes."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from napari_madgnet.errors import UserError
from napari_madgnet.model import MADGNet
from napari_madgnet.model.checkpoint import DEFAULT_PREPROCESSING

#: The extra that brings the export packages (onnx, onnxruntime, bioimageio.spec).
EXTRA = "napari-madgnet[export]"
#: Names of the graph's input and output in the ONNX and bioimage.io files.
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Version of the metadata record written into every exported file.
METADATA_VERSION = 1


class ExportError(UserError):
    """An export that cannot be made or did not reproduce the model; the message says why."""


class MissingDependencyError(ExportError):
    """An optional package an export format needs is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional package, or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f'Install the export extra: pip install "{EXTRA}"'
        ) from exc


@dataclass
class ExportResult:
    """What an export wrote and how well the re-loaded file reproduced the model.

    ``checks`` maps a check name (e.g. ``"onnxruntime 1x3x96x97"``) to the largest absolute
    difference of the re-loaded file's logits from the PyTorch model's.
    """

    path: Path
    format: str
    metadata: dict[str, Any]
    checks: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"wrote {self.format} export: {self.path}"]
        lines += [f"  {name}: max |difference| from PyTorch {diff:.2e}" for name, diff in self.checks.items()]
        return "\n".join(lines)


def load_for_export(model_ref: Any) -> MADGNet:
    """The plain MADGNet to export: a MADGNet instance as given, or a registered name or path.

    Names and paths are resolved by :func:`napari_madgnet.registry.load_registered_model`
    (without its cache: the exporter switches the model to eval mode). Inference copies
    (folded BatchNorm, packed convolutions) are refused: they hold other weights than the
    checkpoint and CPU-specific operators.
    """
    if isinstance(model_ref, torch.nn.Module):
        model = model_ref
    else:
        from napari_madgnet.registry import load_registered_model

        model = load_registered_model(os.fspath(model_ref), device="cpu")
    if not isinstance(model, MADGNet):
        raise ExportError(f"only MADGNet models can be exported, got {type(model).__name__}")
    if getattr(model, "bn_folded", False):
        raise ExportError(
            "this is an inference copy (BatchNorm folded into the convolutions); export the plain "
            "model it was made from"
        )
    return model


@contextlib.contextmanager
def eval_on_cpu(model: MADGNet) -> Iterator[MADGNet]:
    """The model in eval mode on the CPU for the duration; its mode and device are restored."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval().to("cpu")
    try:
        yield model
    finally:
        model.train(was_training).to(device)


def input_channels(model: MADGNet) -> int:
    """Channels of the exported input: the checkpoint's ``preprocessing.channels`` (1 or 3)."""
    info = getattr(model, "checkpoint_info", None) or {}
    channels = (info.get("preprocessing") or {}).get("channels", 3)
    return 1 if channels == 1 else 3


def export_metadata(model: MADGNet, fmt: str) -> dict[str, Any]:
    """The record stored in every exported file: what the graph expects and where it came from.

    Keys: ``metadata_version``, ``format``, ``model_name``, ``config`` (architecture),
    ``preprocessing`` (the checkpoint's: normalization, input_size or tile_size, channels...),
    ``input`` / ``output`` (names, layout, dtype, range, activation), ``provenance`` (the
    checkpoint's), ``source`` (checkpoint path and sha256 where known), ``exported_by``
    (package, torch version, UTC time). JSON-serialisable.
    """
    from napari_madgnet import __version__

    info = dict(getattr(model, "checkpoint_info", None) or {})
    path = getattr(model, "checkpoint_path", None) or info.get("source")
    source: dict[str, Any] = {"path": None, "sha256": None}
    if path and Path(str(path)).is_file():
        from napari_madgnet.inference.provenance import file_sha256

        source = {"path": str(path), "sha256": file_sha256(path)}
    # A model built in Python has no checkpoint yet: save_model would record the release's defaults.
    preprocessing = dict(info.get("preprocessing") or DEFAULT_PREPROCESSING)
    channels = input_channels(model)
    record = {
        "metadata_version": METADATA_VERSION,
        "format": fmt,
        "model_name": getattr(model, "model_name", None) or (Path(str(path)).stem if path else None),
        "config": model.config.to_dict(),
        "preprocessing": preprocessing,
        "input": {
            "name": INPUT_NAME,
            "layout": "BCYX",
            "dtype": "float32",
            "channels": channels,
            "range": [0.0, 1.0],
            "note": "intensities already normalised to [0, 1] as 'preprocessing' says; any height "
            "and width >= 32 (padded inside to the multiple the network needs, output cropped back)",
        },
        "output": {
            "name": OUTPUT_NAME,
            "layout": "BCYX",
            "dtype": "float32",
            "channels": model.config.num_classes,
            "activation": "sigmoid",
            "threshold": 0.5,
            "note": "logits of the finest stage's map; mask = sigmoid(logits) >= 0.5",
        },
        "provenance": info.get("provenance") or {},
        "source": source,
        "exported_by": {
            "package": "napari-madgnet",
            "version": __version__,
            "torch": torch.__version__,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    return json.loads(json.dumps(record, default=str))


def check_target(out: str | os.PathLike[str], overwrite: bool) -> Path:
    """``out`` as a path; FileExistsError if it exists and ``overwrite`` is false."""
    target = Path(out).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    return target


@contextlib.contextmanager
def atomic_folder(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it takes ``path``'s place.

    An existing ``path`` (only with ``overwrite``) is moved aside first and deleted once the new
    folder is in place; if the body raises, the temporary folder is removed and ``path`` is
    left as it was.
    """
    check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def max_abs_difference(a: Any, b: Any) -> float:
    """Largest absolute difference of two arrays or tensors of the same shape (float64)."""
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    if a.shape != b.shape:
        raise ExportError(
            f"the exported model's output has shape {tuple(a.shape)}, expected {tuple(b.shape)}"
        )
    return float((a - b).abs().max())


def verification_input(channels: int, height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A deterministic float32 ``(batch, channels, height, width)`` input in [0, 1] with structure
    (smooth blobs plus noise), so that a wrong graph shows in the output."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, height).reshape(-1, 1)
    xx = torch.linspace(0, 1, width).reshape(1, -1)
    base = 0.5 + 0.25 * torch.sin(9 * yy + 3) * torch.cos(7 * xx + 1)
    noise = torch.rand(batch, channels, height, width, generator=g)
    return (0.7 * base + 0.3 * noise).clamp(0, 1).float()


def raise_if_off(checks: dict[str, float], tolerance: float) -> None:
    """Raise :class:`ExportError` if any check exceeds ``tolerance`` (NaN counts as exceeding)."""
    bad = {k: v for k, v in checks.items() if not v <= tolerance}
    if bad:
        shown = ", ".join(f"{k}: {v:.2e}" for k, v in bad.items())
        raise ExportError(
            f"the exported model does not reproduce PyTorch within {tolerance:g} ({shown}); nothing "
            "was written. Please report this with your torch and onnxruntime versions."
        )
