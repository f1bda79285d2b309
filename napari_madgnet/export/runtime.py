"""ONNX Runtime as a CPU inference backend: a MADGNet's logits from its ONNX export.

:class:`OnnxRuntimeModel` is a drop-in for what the engine runs on the CPU
(``napari_madgnet.inference.fast_model(model)``): called with a float32 ``(B, C, H, W)`` CPU
tensor in [0, 1], it returns the logits ``(B, K, H, W)`` as a CPU tensor. It exports the model
once (:func:`~napari_madgnet.export.onnx.onnx_bytes`, a few seconds) and keeps the ONNX file in
``cache_dir()/onnx/`` keyed by the checkpoint's sha256 and the versions that shape the graph,
so later runs with the same checkpoint start at once. Float32 only, CPU only.

It does not depend on the engine; wiring it in is a choice between ``fast_model(model)`` and
``OnnxRuntimeModel(model, threads=torch.get_num_threads())`` where the engine prepares its
network (see docs/export.md for the measured speed).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.io import atomic_path
from napari_madgnet.model import MADGNet

from .common import (
    INPUT_NAME,
    ExportError,
    MissingDependencyError,
    eval_on_cpu,
    input_channels,
    load_for_export,
    require,
)
from .onnx import MIN_OPSET, onnx_bytes


def onnxruntime_available() -> bool:
    """True when ONNX Runtime and onnx can be imported (the ``export`` extra)."""
    try:
        require("onnxruntime", "The onnxruntime backend")
        require("onnx", "The onnxruntime backend")
    except MissingDependencyError:
        return False
    return True


def _cache_key(model: MADGNet) -> str | None:
    """Name of the cached ONNX file: checkpoint sha256 + everything that shapes the graph; None
    for a model without a checkpoint file (it is exported afresh)."""
    from napari_madgnet import __version__

    info = getattr(model, "checkpoint_info", None) or {}
    path = getattr(model, "checkpoint_path", None) or info.get("source")
    if not path or not Path(str(path)).is_file():
        return None
    from napari_madgnet.inference.provenance import file_sha256

    parts = [file_sha256(path), __version__, torch.__version__, str(MIN_OPSET), str(input_channels(model))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _onnx_model(model: MADGNet) -> bytes:
    from napari_madgnet.paths import cache_dir

    key = _cache_key(model)
    cached = cache_dir() / "onnx" / f"{key}.onnx" if key else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    data = onnx_bytes(model)
    if cached is not None:
        try:
            with atomic_path(cached, overwrite=True) as tmp:
                tmp.write_bytes(data)
        except OSError:
            pass  # a read-only cache only costs the export next time
    return data


class OnnxRuntimeModel:
    """Logits of a MADGNet computed by ONNX Runtime on the CPU.

    ``model``: a MADGNet, a registered name or a checkpoint path. ``threads``: intra-op threads
    (default: ``torch.get_num_threads()``, the engine's setting). ``spin``: let idle intra-op
    threads spin-wait between operators (ONNX Runtime's default; off by default here because
    it takes CPU from PyTorch, NumPy and the GUI in the same process; measured in
    benchmarks/bench_export.py). Raises :class:`~napari_madgnet.export.common.MissingDependencyError`
    without the ``export`` extra.
    """

    backend = "onnxruntime"

    def __init__(self, model: Any, threads: int | None = None, spin: bool = False) -> None:
        ort = require("onnxruntime", "The onnxruntime inference backend")
        net = load_for_export(model)
        self.num_classes = net.config.num_classes
        self.channels = input_channels(net)
        with eval_on_cpu(net):
            data = _onnx_model(net)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float CPU tensor in [0, 1] -> ``(B, K, H, W)`` float32 logits."""
        if x.device.type != "cpu":
            raise ExportError(f"the onnxruntime backend runs on the CPU; got a tensor on {x.device}")
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 1 or 3, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:  # the graph's input has the checkpoint's channel count
            x = x.expand(-1, 3, -1, -1) if self.channels == 3 else x.mean(dim=1, keepdim=True)
        feed = np.ascontiguousarray(x.detach().to(torch.float32).numpy())
        (logits,) = self.session.run(None, {INPUT_NAME: feed})
        return torch.from_numpy(logits)

    def eval(self) -> OnnxRuntimeModel:
        return self

    def to(self, device: Any) -> OnnxRuntimeModel:
        if torch.device(device).type != "cpu":
            raise ExportError("the onnxruntime backend runs on the CPU only")
        return self


__all__ = ["OnnxRuntimeModel", "onnxruntime_available"]
