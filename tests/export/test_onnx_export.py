"""ONNX export: dynamic batch/height/width, ONNX Runtime equals PyTorch within 1e-4, metadata."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from napari_madgnet.export import ExportError, MissingDependencyError, export_model, read_onnx_metadata
from napari_madgnet.export.common import verification_input
from napari_madgnet.export.onnx import ONNX_TOLERANCE, export_onnx, onnx_session
from napari_madgnet.model import load_model

from .conftest import PREPROCESSING


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = export_model(checkpoint, "onnx", out)
    assert result.path == out and out.is_file()
    assert all(diff <= ONNX_TOLERANCE for diff in result.checks.values()) and result.checks
    return out


@pytest.fixture(scope="module")
def loaded(checkpoint: Path):
    return load_model(checkpoint)


# 300 x 301 is padded to 320 x 320; 544 x 544 to 576 x 576 (a 64-multiple) with every attention
# branch pooling; 352 x 352 is not padded; the graph was traced at 64 x 64.
SIZES = [
    pytest.param((1, 300, 301), id="300x301"),
    pytest.param((1, 544, 544), id="544x544", marks=pytest.mark.slow),
    pytest.param((1, 352, 352), id="352x352"),
    pytest.param((3, 70, 101), id="batch3-70x101"),
]


@pytest.mark.parametrize("shape", SIZES)
def test_onnxruntime_equals_torch_at_sizes_the_network_pads(exported: Path, loaded, shape) -> None:
    model = loaded
    batch, height, width = shape
    x = verification_input(1, height, width, batch, seed=3)
    (got,) = onnx_session(exported, threads=1).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape == (batch, 1, height, width)
    assert expected.std() > 0.05
    assert np.abs(got - expected).max() <= ONNX_TOLERANCE


def test_onnx_file_records_preprocessing_opset_and_dynamic_axes(exported: Path, checkpoint: Path) -> None:
    import onnx

    meta = read_onnx_metadata(exported)
    assert meta["preprocessing"] == {**PREPROCESSING}
    record = meta["napari_madgnet"]
    assert record["preprocessing"] == meta["preprocessing"]
    assert record["input"]["channels"] == 1 and record["output"]["activation"] == "sigmoid"
    assert record["config"]["backbone"] == "resnest50"
    assert record["source"]["path"] == str(checkpoint) and len(record["source"]["sha256"]) == 64
    assert record["provenance"]["trained_on"].startswith("nuclei_dsb2018_image")
    proto = onnx.load(str(exported), load_external_data=False)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]


def test_export_refuses_existing_output_and_replaces_it_with_overwrite(
    tmp_path: Path, model, monkeypatch
) -> None:
    import napari_madgnet.export.onnx as onnx_export

    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(model, out, check_sizes=())
    with pytest.raises(ExportError, match="opset 13 is too old"):
        export_onnx(model, out, opset=13, overwrite=True)
    assert out.read_bytes() == b"keep me"
    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda *args, **kwargs: b"new graph")
    onnx_export.export_onnx(model, out, overwrite=True, check_sizes=())
    assert out.read_bytes() == b"new graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary files left


def test_a_model_without_checkpoint_records_the_release_preprocessing(model) -> None:
    from napari_madgnet.export.common import export_metadata
    from napari_madgnet.model.checkpoint import DEFAULT_PREPROCESSING

    record = export_metadata(model, "onnx")
    assert record["preprocessing"] == DEFAULT_PREPROCESSING
    assert record["input"]["channels"] == 3 and record["source"] == {"path": None, "sha256": None}


def test_a_graph_that_does_not_reproduce_the_model_is_not_written(
    tmp_path: Path, exported: Path, model, monkeypatch
) -> None:
    import napari_madgnet.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda *args, **kwargs: exported.read_bytes())
    monkeypatch.setattr(onnx_export, "compare_onnx", lambda *args: {"onnxruntime 2x3x70x101": 3e-4})
    with pytest.raises(ExportError, match=r"does not reproduce PyTorch within 0\.0001"):
        onnx_export.export_onnx(model, tmp_path / "bad.onnx")
    assert not any(tmp_path.iterdir())


def test_missing_onnx_package_names_the_extra(tmp_path: Path, model, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(MissingDependencyError, match=r"napari-madgnet\[export\]"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())
