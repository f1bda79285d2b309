"""OnnxRuntimeModel: the engine-facing ONNX Runtime forward equals PyTorch and reuses its export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from napari_madgnet.export import ExportError
from napari_madgnet.export.common import verification_input
from napari_madgnet.export.runtime import OnnxRuntimeModel, onnxruntime_available
from napari_madgnet.model import load_model


def test_logits_equal_torch_and_the_export_is_cached_per_checkpoint(checkpoint: Path, monkeypatch) -> None:
    import napari_madgnet.export.runtime as runtime

    assert onnxruntime_available()
    backend = OnnxRuntimeModel(checkpoint, threads=1)
    model = load_model(checkpoint)
    x = verification_input(1, 70, 101, batch=2, seed=11)
    with torch.no_grad():
        expected = model(x)
    got = backend(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape == (2, 1, 70, 101)
    assert (got - expected).abs().max() <= 1e-4
    rgb = backend(x.expand(-1, 3, -1, -1))  # an RGB plane for a grey model: channel mean, as the engine
    assert (rgb - got).abs().max() <= 1e-6

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the checkpoint's ONNX file is cached")

    monkeypatch.setattr(runtime, "onnx_bytes", no_export)
    again = OnnxRuntimeModel(checkpoint, threads=1)
    assert torch.equal(again(x), got)


def test_cpu_only(checkpoint: Path) -> None:
    backend = OnnxRuntimeModel(checkpoint, threads=1)
    assert backend.eval() is backend and backend.to("cpu") is backend
    with pytest.raises(ExportError, match="CPU"):
        backend.to("cuda")
