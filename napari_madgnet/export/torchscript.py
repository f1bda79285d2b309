"""TorchScript export: a traced graph of the plain model, loadable without napari-madgnet.

``torch.jit.trace`` of :class:`~napari_madgnet.export.traceable.TraceableMADGNet` (sizes as
tensors, so one trace serves every batch size, height and width) around the plain MADGNet:
its own weights and BatchNorm layers, never the inference copy whose packed convolutions are
CPU-specific operators. The archive holds the graph's code and weights only, so
``torch.jit.load(path)`` works where napari-madgnet is not installed (PyTorch >= 2.1). The
metadata record (:func:`~napari_madgnet.export.common.export_metadata`) is stored as the extra
file ``napari_madgnet.json`` (:func:`read_torchscript_metadata`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from napari_madgnet.io import atomic_path
from napari_madgnet.model import MADGNet

from .common import (
    ExportResult,
    check_target,
    eval_on_cpu,
    export_metadata,
    input_channels,
    load_for_export,
    max_abs_difference,
    raise_if_off,
    verification_input,
)
from .traceable import TraceableMADGNet

#: The re-loaded archive must match the PyTorch model within this (absolute, on logits).
TORCHSCRIPT_TOLERANCE = 1e-5
METADATA_FILE = "napari_madgnet.json"
DEFAULT_CHECK_SIZES: tuple[tuple[int, int, int], ...] = ((2, 70, 101),)


def trace(model: MADGNet) -> torch.jit.ScriptModule:
    """The traced module (CPU, eval mode): input ``(B, C, H, W)`` float32 in [0, 1], output
    logits ``(B, K, H, W)``. The caller keeps ``model`` in eval mode while using the trace."""
    example = verification_input(input_channels(model), 64, 64)
    with eval_on_cpu(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape arithmetic is intended
        # PyTorch 2.13 marks torch.jit.trace deprecated (see docs/export.md); it still works and
        # TorchScript is what deepImageJ and bioimage.io's "torchscript" weights need.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(TraceableMADGNet(model).eval(), (example,), check_trace=False)
    return traced.eval()


def read_torchscript_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata record stored in a TorchScript export (empty if it has none)."""
    extra = {METADATA_FILE: ""}
    torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}


def compare_torchscript(
    scripted: torch.jit.ScriptModule,
    model: MADGNet,
    sizes: Sequence[tuple[int, int, int]] = DEFAULT_CHECK_SIZES,
) -> dict[str, float]:
    """Max |TorchScript - PyTorch| of the logits at each (batch, height, width)."""
    channels = input_channels(model)
    checks: dict[str, float] = {}
    with eval_on_cpu(model), torch.no_grad():
        for batch, height, width in sizes:
            x = verification_input(channels, height, width, batch)
            checks[f"torchscript {batch}x{channels}x{height}x{width}"] = max_abs_difference(
                scripted(x), model(x)
            )
    return checks


def export_torchscript(
    model_ref: Any,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    check_sizes: Sequence[tuple[int, int, int]] = DEFAULT_CHECK_SIZES,
) -> ExportResult:
    """Write ``model_ref`` (a MADGNet, a registered name or a checkpoint path) as TorchScript.

    Unless ``check_sizes`` is empty, the written archive is loaded back with ``torch.jit.load``
    and compared with the model at each (batch, height, width); a difference above
    :data:`TORCHSCRIPT_TOLERANCE` raises :class:`~napari_madgnet.export.common.ExportError`
    and removes the file. Refuses an existing ``out`` unless ``overwrite``; atomic write.
    """
    target = check_target(out, overwrite)
    model = load_for_export(model_ref)
    metadata = export_metadata(model, "torchscript")
    traced = trace(model)
    checks: dict[str, float] = {}
    with atomic_path(target, overwrite=overwrite) as tmp:
        torch.jit.save(traced, os.fspath(tmp), _extra_files={METADATA_FILE: json.dumps(metadata)})
        if check_sizes:
            checks = compare_torchscript(
                torch.jit.load(os.fspath(tmp), map_location="cpu"), model, check_sizes
            )
            raise_if_off(checks, TORCHSCRIPT_TOLERANCE)
    return ExportResult(Path(target), "torchscript", metadata, checks)
