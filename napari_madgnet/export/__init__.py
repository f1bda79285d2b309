"""Export a MADGNet to ONNX, TorchScript or a bioimage.io model package.

Public API::

    export_model(model_ref, fmt, out, *, overwrite=False, **options) -> ExportResult
    export_onnx(model_ref, out, *, opset=17, overwrite=False, check_sizes=...)
    export_torchscript(model_ref, out, *, overwrite=False, check_sizes=...)
    export_bioimageio(model_ref, out, *, overwrite=False, name=..., authors=..., license=...,
                      training_data=[Citation(...)], test_image=None, test_size=128)
    read_onnx_metadata(path), read_torchscript_metadata(path), validate_package(path)
    TraceableMADGNet(model)          # the forward pass the ONNX and TorchScript graphs record

``model_ref`` is a :class:`~napari_madgnet.model.MADGNet`, a registered model name or a
checkpoint path. Every format is loaded back after writing and compared with the PyTorch model
(ONNX Runtime within 1e-4, TorchScript within 1e-5 on logits); a file that does not reproduce it
is not written. ONNX and bioimage.io need the ``export`` extra (``pip install
"napari-madgnet[export]"``); TorchScript needs only PyTorch. ``docs/export.md`` has the details.
"""

from __future__ import annotations

import os
from typing import Any

from .common import ExportError, ExportResult, MissingDependencyError
from .onnx import export_onnx, read_onnx_metadata
from .torchscript import export_torchscript, read_torchscript_metadata
from .traceable import TraceableMADGNet

#: The formats ``export_model`` and ``madgnet export --format`` accept.
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "bioimageio")


def export_model(
    model_ref: Any, fmt: str, out: str | os.PathLike[str], *, overwrite: bool = False, **options: Any
) -> ExportResult:
    """Export ``model_ref`` in format ``fmt`` (one of :data:`FORMATS`) to ``out``.

    ``options`` go to the format's function (:func:`export_onnx`, :func:`export_torchscript`,
    :func:`~napari_madgnet.export.bioimageio.export_bioimageio`). Raises ExportError for an
    unknown format, FileExistsError for an existing ``out`` without ``overwrite``.
    """
    name = str(fmt).lower()
    if name == "onnx":
        return export_onnx(model_ref, out, overwrite=overwrite, **options)
    if name == "torchscript":
        return export_torchscript(model_ref, out, overwrite=overwrite, **options)
    if name == "bioimageio":
        from .bioimageio import export_bioimageio

        return export_bioimageio(model_ref, out, overwrite=overwrite, **options)
    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def validate_package(source: str | os.PathLike[str]) -> Any:
    """Validate a bioimage.io package with ``bioimageio.spec`` (see :mod:`.bioimageio`)."""
    from .bioimageio import validate_package as _validate

    return _validate(source)


__all__ = [
    "FORMATS",
    "ExportError",
    "ExportResult",
    "MissingDependencyError",
    "TraceableMADGNet",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "read_onnx_metadata",
    "read_torchscript_metadata",
    "validate_package",
]
