"""bioimage.io package (spec 0.5): validates with bioimageio.spec; its three weight formats,
loaded back as a consumer would, reproduce the test output from the test input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.spec")
pytest.importorskip("onnxruntime")

from napari_madgnet.export import ExportError, MissingDependencyError, export_model, validate_package
from napari_madgnet.export.bioimageio import (
    PACKAGE_TOLERANCE,
    Citation,
    _apply_plan,
    _preprocessing_plan,
    export_bioimageio,
)
from napari_madgnet.preprocess import Normalization, apply_range, fit_range

DATA = Citation("My annotated nuclei (lab notebook 7)", url="https://example.org/nuclei")


def _preprocess_as_rdf(raw: np.ndarray, steps: list[dict]) -> np.ndarray:
    """bioimage.io's definitions of the operators rdf.yaml names (independent of the exporter)."""
    x = raw
    for step in steps:
        kw = step.get("kwargs", {})
        if step["id"] == "ensure_dtype":
            x = x.astype(kw["dtype"])
        elif step["id"] == "scale_linear":
            x = x * kw.get("gain", 1.0) + kw.get("offset", 0.0)
        elif step["id"] == "scale_range":
            assert kw["axes"] == ["channel", "y", "x"]
            lo, hi = np.percentile(x[0], [kw["min_percentile"], kw["max_percentile"]])
            x = (x - lo) / (hi - lo + kw.get("eps", 1e-6))
        elif step["id"] == "clip":
            x = np.clip(x, kw["min"], kw["max"])
        else:
            raise AssertionError(f"unexpected operator {step['id']}")
    return x.astype(np.float32)


def _reproduce(package: Path, rdf: dict) -> dict[str, float]:
    """Run each weight format on the test input, as bioimage.io consumers would."""
    import onnxruntime

    from napari_madgnet.model import network

    raw = np.load(package / rdf["inputs"][0]["test_tensor"]["source"])
    expected = np.load(package / rdf["outputs"][0]["test_tensor"]["source"])
    x = torch.from_numpy(_preprocess_as_rdf(raw, rdf["inputs"][0]["preprocessing"]))
    weights = rdf["weights"]
    arch = weights["pytorch_state_dict"]["architecture"]
    assert arch["import_from"] == "napari_madgnet.model.network" and arch["callable"] == "MADGNet"
    net = getattr(network, arch["callable"])(**arch["kwargs"]).eval()
    state = torch.load(package / weights["pytorch_state_dict"]["source"], weights_only=True)
    net.load_state_dict(state, strict=True)
    scripted = torch.jit.load(str(package / weights["torchscript"]["source"]))
    session = onnxruntime.InferenceSession(str(package / weights["onnx"]["source"]))
    with torch.no_grad():
        outputs = {
            "pytorch_state_dict": net(x).numpy(),
            "torchscript": scripted(x).numpy(),
            "onnx": session.run(None, {"input": x.numpy()})[0],
        }
    return {k: float(np.abs(1 / (1 + np.exp(-v)) - expected).max()) for k, v in outputs.items()}


@pytest.mark.slow
def test_package_folder_validates_and_every_weight_format_reproduces_the_test_output(
    tmp_path: Path, checkpoint: Path
) -> None:
    out = tmp_path / "nuclei-package"
    result = export_model(checkpoint, "bioimageio", out, authors=["A. Tester"], test_size=64)
    assert result.path == out and all(v <= PACKAGE_TOLERANCE for v in result.checks.values())
    descr = validate_package(out)  # bioimageio.spec: format, hashes, test tensors
    assert descr.validation_summary.status in ("passed", "valid-format")
    rdf = yaml.safe_load((out / "rdf.yaml").read_text())
    assert rdf["format_version"].startswith("0.5")
    assert set(rdf["weights"]) == {"pytorch_state_dict", "onnx", "torchscript"}
    assert rdf["weights"]["onnx"]["opset_version"] >= 17
    cites = {c.get("doi") or c.get("url") for c in rdf["cite"]}
    assert "10.1038/s41592-019-0612-7" in cites  # the training data (DSB2018, from provenance)
    assert any("CVPR2024" in (c.get("url") or "") for c in rdf["cite"])  # the paper
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]][:3] == ["ensure_dtype", "scale_range", "clip"]
    assert np.load(out / "test_input.npy").shape == (1, 1, 64, 64)  # the grey checkpoint's channels
    diffs = _reproduce(out, rdf)
    assert all(v <= PACKAGE_TOLERANCE for v in diffs.values()), diffs
    import imageio.v3 as iio

    cover = iio.imread(out / "cover.png")
    assert cover.shape[1] == 2 * cover.shape[0] and cover.dtype == np.uint8
    assert "## Validation" in (out / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.slow
def test_zip_package_of_an_8bit_rgb_model_validates(tmp_path: Path, model) -> None:
    out = tmp_path / "model.zip"
    export_bioimageio(model, out, training_data=[DATA], test_size=64, name="MADGNet test (RGB)")
    descr = validate_package(out)
    assert descr.validation_summary.status in ("passed", "valid-format")
    assert descr.name == "MADGNet test (RGB)"
    assert descr.inputs[0].data.type == "uint8"  # the release's scale255: 8-bit input / 255
    assert any(str(c.url) == DATA.url for c in descr.cite)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bioimageio(model, out, training_data=[DATA])


def test_a_model_whose_training_data_is_unknown_needs_a_citation(tmp_path: Path, model) -> None:
    with pytest.raises(ExportError, match="cite the training data"):
        export_bioimageio(model, tmp_path / "pkg")
    with pytest.raises(ExportError, match="multiple of 32"):
        export_bioimageio(model, tmp_path / "pkg", training_data=[DATA], test_size=100)
    assert not any(tmp_path.iterdir())


def test_missing_bioimageio_spec_names_the_extra(tmp_path: Path, model, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(MissingDependencyError, match=r"napari-madgnet\[export\]"):
        export_bioimageio(model, tmp_path / "pkg", training_data=[DATA])


@pytest.mark.parametrize(
    ("method", "dtype"),
    [
        ("scale255", np.uint8),
        ("percentile", np.uint16),
        ("auto", np.float32),
        ("minmax", np.float32),
        ("none", np.float32),
        ("ct-lung", np.int16),
        ({"method": "ct", "window": (40, 400)}, np.int16),
        ({"method": "percentile", "low": 2, "high": 98}, np.uint16),
    ],
)
def test_bioimageio_preprocessing_reproduces_the_package_normalization(method, dtype) -> None:
    # An image with signal (a ramp, little noise): on pure noise the engine's no-signal rule
    # (preprocess: a range within the noise level is not stretched) has no bioimage.io equivalent.
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, 40 * 50).reshape(1, 1, 40, 50) + 0.01 * rng.standard_normal((1, 3, 40, 50))
    if np.dtype(dtype).kind == "f":
        raw = (ramp * (1.0 if method == "none" else 900.0)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -1200), min(info.max, 3000)
        raw = np.clip(lo + ramp * (hi - lo), lo, hi).astype(dtype)
    input_dtype, plan = _preprocessing_plan({"normalization": method})
    raw = raw.astype(input_dtype)
    ours = apply_range(raw, *fit_range(raw, Normalization.from_value(method)))
    assert np.abs(_apply_plan(raw, plan) - ours).max() <= 1e-5
