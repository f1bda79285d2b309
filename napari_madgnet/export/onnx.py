"""ONNX export: one graph for every batch size, height and width, checked in ONNX Runtime.

The graph is recorded by PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``) from :class:`~napari_madgnet.export.traceable.TraceableMADGNet`, whose
size-dependent steps are tensor operations, so ``Shape``/``Range``/``Where`` nodes carry them
and the graph is right at sizes other than the example's (the network pads to multiples of
32, or of 64 from a height of about 512 on, and pools some attention branches only at larger
sizes). Why not ``dynamo=True``: ``torch.export`` turns each Python decision on a symbolic size
into a guard, so the padding rule and the per-size branch choices either specialise the graph
to the example's size or fail to export unless they are rewritten with ``torch.cond``; the
traced wrapper needs neither that nor the ``onnxscript`` package, and the same wrapper serves
the TorchScript export. PyTorch marks this exporter deprecated (since 2.9) but ships it in
2.13; the tests exercise it, so its removal would show at once.

The file's ``metadata_props`` hold ``napari_madgnet`` (the JSON record of
:func:`~napari_madgnet.export.common.export_metadata`) and ``preprocessing`` (its
preprocessing part, JSON), readable with :func:`read_onnx_metadata` or any ONNX tool.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.io import atomic_path
from napari_madgnet.model import MADGNet

from .common import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    ExportResult,
    check_target,
    eval_on_cpu,
    export_metadata,
    input_channels,
    load_for_export,
    max_abs_difference,
    raise_if_off,
    require,
    verification_input,
)
from .traceable import TraceableMADGNet

#: Lowest ONNX opset written (the issue asks for >= 17; 17 runs in ONNX Runtime >= 1.14).
MIN_OPSET = 17
#: ONNX Runtime must match PyTorch within this (absolute, on logits).
ONNX_TOLERANCE = 1e-4
#: (batch, height, width) checked after export: a batch of two at a size that is padded inside.
DEFAULT_CHECK_SIZES: tuple[tuple[int, int, int], ...] = ((2, 70, 101),)


def onnx_bytes(model: MADGNet, opset: int = MIN_OPSET, metadata: dict[str, Any] | None = None) -> bytes:
    """The serialised ONNX model of ``model`` (eval mode, CPU, float32) with dynamic batch, height
    and width; input ``"input"`` ``(B, C, H, W)``, output ``"logits"`` ``(B, K, H, W)``.

    ``metadata`` (JSON-serialisable) is stored in ``metadata_props``. Raises
    :class:`~napari_madgnet.export.common.ExportError` for an opset below 17.
    """
    onnx = require("onnx", "ONNX export")
    _check_opset(opset)
    channels = input_channels(model)
    buffer = io.BytesIO()
    with eval_on_cpu(model), torch.no_grad(), warnings.catch_warnings():
        # The deprecation notice of the TorchScript-based exporter (see the module docstring)
        # and the tracer's notes on shape arithmetic, which is intended here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(
            TraceableMADGNet(model),
            (verification_input(channels, 64, 64),),
            buffer,
            dynamo=False,
            opset_version=int(opset),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "napari-madgnet"
    proto.doc_string = (
        "MADGNet (Nam et al., CVPR 2024) exported by napari-madgnet. Input: float32 (B, C, H, W) in "
        "[0, 1], normalised as metadata 'preprocessing' says; output: logits (B, K, H, W), "
        "mask = sigmoid(logits) >= 0.5."
    )
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _check_opset(opset: int) -> None:
    if int(opset) < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {MIN_OPSET} or newer")


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``metadata_props`` of an ONNX file, JSON values decoded (the weights are not read)."""
    onnx = require("onnx", "Reading ONNX metadata")
    proto = onnx.load(os.fspath(path), load_external_data=False)
    out: dict[str, Any] = {}
    for entry in proto.metadata_props:
        try:
            out[entry.key] = json.loads(entry.value)
        except ValueError:
            out[entry.key] = entry.value
    return out


def onnx_session(path: str | os.PathLike[str] | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a file (or its bytes); ``threads`` intra-op threads."""
    ort = require("onnxruntime", "Running an ONNX export")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = path if isinstance(path, bytes) else os.fspath(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def compare_onnx(
    session: Any, model: MADGNet, sizes: Sequence[tuple[int, int, int]] = DEFAULT_CHECK_SIZES
) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| of the logits at each (batch, height, width)."""
    channels = input_channels(model)
    checks: dict[str, float] = {}
    with eval_on_cpu(model), torch.no_grad():
        for batch, height, width in sizes:
            x = verification_input(channels, height, width, batch)
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            checks[f"onnxruntime {batch}x{channels}x{height}x{width}"] = max_abs_difference(
                np.asarray(got), model(x)
            )
    return checks


def export_onnx(
    model_ref: Any,
    out: str | os.PathLike[str],
    *,
    opset: int = MIN_OPSET,
    overwrite: bool = False,
    check_sizes: Sequence[tuple[int, int, int]] = DEFAULT_CHECK_SIZES,
) -> ExportResult:
    """Write ``model_ref`` (a MADGNet, a registered name or a checkpoint path) as an ONNX file.

    Dynamic batch, height and width; ``opset`` >= 17. The file records the preprocessing the
    model expects (see the module docstring). Unless ``check_sizes`` is empty, the written
    file is loaded in ONNX Runtime (CPU) and its logits compared with PyTorch's at each
    (batch, height, width); a difference above :data:`ONNX_TOLERANCE` raises
    :class:`~napari_madgnet.export.common.ExportError` and nothing is written. Refuses an
    existing ``out`` unless ``overwrite``; the write is atomic.
    """
    _check_opset(opset)
    require("onnx", "ONNX export")
    if check_sizes:
        require("onnxruntime", "Checking an ONNX export")
    target = check_target(out, overwrite)
    model = load_for_export(model_ref)
    metadata = export_metadata(model, "onnx")
    data = onnx_bytes(model, opset, {"napari_madgnet": metadata, "preprocessing": metadata["preprocessing"]})
    checks: dict[str, float] = {}
    if check_sizes:
        checks = compare_onnx(onnx_session(data, threads=torch.get_num_threads()), model, check_sizes)
        raise_if_off(checks, ONNX_TOLERANCE)
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return ExportResult(Path(target), "onnx", metadata, checks)
