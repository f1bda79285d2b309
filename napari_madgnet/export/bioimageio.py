"""A bioimage.io model package (spec 0.5) of a MADGNet: weights in three formats, test data, cover.

The package (a folder, or a ``.zip`` as the bioimage.io tools exchange it) holds:

- ``rdf.yaml``: the model description, written and validated with ``bioimageio.spec``;
- ``weights.pt``: the plain ``state_dict`` (``pytorch_state_dict`` weights), ``model.onnx``
  (opset >= 17, dynamic batch/height/width) and ``model_torchscript.pt`` (traced);
- ``test_input.npy`` / ``test_output.npy``: a crop of the bundled nuclei image (or the caller's
  image) before preprocessing, and the probabilities after postprocessing (sigmoid);
- ``cover.png`` (the test input beside its prediction), ``README.md`` (what the model expects,
  how it was checked), ``environment.yaml`` (what the ``pytorch_state_dict`` entry imports).

The ``pytorch_state_dict`` architecture: bioimage.io needs Python code that builds the network
before loading a state dict. MADGNet's code spans a dozen modules (three encoders, the
attention blocks, the DCT filters), so no single source file can honestly stand in for it; the
entry names the library callable ``napari_madgnet.model.network:MADGNet`` with the
architecture's keyword arguments and an ``environment.yaml`` that installs napari-madgnet. The
ONNX and TorchScript entries need no napari-madgnet at all. The three are checked against each
other on the test input before the package is written.

Preprocessing is stated in bioimage.io operators that reproduce the checkpoint's
normalisation: ``scale255`` (the release's 8-bit / 255) as ``scale_linear``, ``percentile`` as
``scale_range`` over the whole sample, CT windows as ``scale_linear`` + ``clip``. Models trained on
resized images (``input_size``) work at any size; the README says which size they were trained at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.io import atomic_path

from .common import (
    INPUT_NAME,
    ExportError,
    ExportResult,
    atomic_folder,
    check_target,
    eval_on_cpu,
    export_metadata,
    input_channels,
    load_for_export,
    max_abs_difference,
    raise_if_off,
    require,
)
from .onnx import MIN_OPSET, onnx_bytes, onnx_session
from .torchscript import METADATA_FILE, trace

OUTPUT_ID = "probabilities"
PAPER_URL = (
    "https://openaccess.thecvf.com/content/CVPR2024/html/Nam_Modality-agnostic_Domain_Generalizable_"
    "Medical_Image_Segmentation_by_Multi-Frequency_in_Multi-Scale_CVPR_2024_paper.html"
)
#: The three weight files must agree with the PyTorch model on the test input within this
#: (absolute, on probabilities); stated in rdf.yaml as the reproducibility tolerance.
PACKAGE_TOLERANCE = 1e-4
SPACE_MIN, SPACE_STEP = 32, 32


@dataclass(frozen=True)
class Citation:
    """A bioimage.io citation: free text and a DOI or URL (at least one)."""

    text: str
    doi: str | None = None
    url: str | None = None


PAPER = Citation(
    "Nam J.-H., Syazwany N. S., Kim S. J., Lee S.-C. Modality-agnostic Domain Generalizable Medical Image "
    "Segmentation by Multi-Frequency in Multi-Scale Attention. CVPR 2024, pp. 11480-11491.",
    url=PAPER_URL,
)

#: Training data sets recognised in a checkpoint's provenance ("trained_on"), by keywords.
KNOWN_DATASETS: tuple[tuple[tuple[str, ...], Citation], ...] = (
    (
        ("dsb2018", "data science bowl", "bbbc038", "nuclei_dsb2018"),
        Citation(
            "Caicedo J. C. et al. Nucleus segmentation across imaging experiments: the 2018 Data Science "
            "Bowl. Nature Methods 16, 1247-1253 (2019).",
            doi="10.1038/s41592-019-0612-7",
        ),
    ),
    (
        ("kvasir",),
        Citation(
            "Jha D. et al. Kvasir-SEG: A Segmented Polyp Dataset. MultiMedia Modeling (MMM) 2020.",
            url="https://arxiv.org/abs/1911.07069",
        ),
    ),
    (
        ("clinicdb",),
        Citation(
            "Bernal J. et al. WM-DOVA maps for accurate polyp highlighting in colonoscopy: Validation vs. "
            "saliency maps from physicians. Computerized Medical Imaging and Graphics 43, 99-111 (2015).",
            doi="10.1016/j.compmedimag.2015.02.007",
        ),
    ),
    (
        ("isic",),
        Citation(
            "Codella N. et al. Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge Hosted by "
            "the International Skin Imaging Collaboration (ISIC). arXiv:1902.03368 (2019).",
            url="https://arxiv.org/abs/1902.03368",
        ),
    ),
    (
        ("busi", "breast ultrasound"),
        Citation(
            "Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A. Dataset of breast ultrasound images. Data in "
            "Brief 28, 104863 (2020).",
            doi="10.1016/j.dib.2019.104863",
        ),
    ),
)


def training_data_citations(model: Any) -> list[Citation]:
    """Citations of the data sets the checkpoint's provenance names (may be empty)."""
    info = getattr(model, "checkpoint_info", None) or {}
    prov = info.get("provenance") or {}
    text = " ".join(str(prov.get(k) or "") for k in ("trained_on", "dataset", "source")).lower()
    return [cite for keys, cite in KNOWN_DATASETS if any(k in text for k in keys)]


# ----------------------------------------------------------------------------- preprocessing


def _preprocessing_plan(preprocessing: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(input dtype, [(bioimage.io operator id, kwargs), ...]) for a checkpoint's normalisation."""
    from napari_madgnet.preprocess import CT_WINDOWS, Normalization

    try:
        norm = Normalization.from_value(preprocessing.get("normalization"))
    except (TypeError, ValueError) as exc:
        raise ExportError(
            f"the checkpoint's normalization cannot be expressed for bioimage.io: {exc}"
        ) from exc
    method = norm.method
    to_float = ("ensure_dtype", {"dtype": "float32"})
    clip = ("clip", {"min": 0.0, "max": 1.0})
    if method == "scale255":
        return "uint8", [to_float, ("scale_linear", {"gain": 1.0 / 255.0, "offset": 0.0})]
    if method in ("auto", "percentile", "minmax"):
        low, high = (0.0, 100.0) if method == "minmax" else (norm.low, norm.high)
        axes = ["channel", "y", "x"]  # jointly over the sample, as napari_madgnet.preprocess does
        kwargs = {"axes": axes, "min_percentile": low, "max_percentile": high}
        return "float32", [to_float, ("scale_range", kwargs), clip]
    if method == "none":
        return "float32", [to_float, clip]
    centre, width = norm.window if method == "ct" else CT_WINDOWS[method]  # type: ignore[misc]
    lo = centre - width / 2.0
    return "float32", [to_float, ("scale_linear", {"gain": 1.0 / width, "offset": -lo / width}), clip]


def _apply_plan(raw: np.ndarray, plan: list[tuple[str, dict[str, Any]]]) -> np.ndarray:
    """The plan's operators on a (1, C, Y, X) array, with bioimage.io's definitions."""
    x = raw
    for op, kw in plan:
        if op == "ensure_dtype":
            x = x.astype(kw["dtype"])
        elif op == "scale_linear":
            x = (x * np.float32(kw["gain"]) + np.float32(kw["offset"])).astype(np.float32)
        elif op == "scale_range":
            lo, hi = np.percentile(x[0], [kw["min_percentile"], kw["max_percentile"]])
            x = ((x - lo) / (hi - lo + 1e-6)).astype(np.float32)  # spec default eps = 1e-6
        elif op == "clip":
            x = np.clip(x, kw["min"], kw["max"]).astype(np.float32)
        else:  # pragma: no cover - the plan only names the operators above
            raise AssertionError(op)
    return x


def _test_input(image: Any, channels: int, size: int, dtype: str) -> np.ndarray:
    """(1, C, size, size) test input from ``image`` (2-D or channels-last RGB) or the bundled
    nuclei sample: a centred crop, grey repeated to 3 channels, in the declared dtype."""
    if image is None:
        from napari_madgnet.sample_data import load_nuclei

        image = load_nuclei()[0]
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1) if channels == 1 else np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 2:
        arr = np.repeat(arr[None], channels, axis=0)
    if arr.ndim != 3 or arr.shape[0] != channels:
        raise ExportError(f"the test image must be 2-D or RGB (Y, X, 3), got shape {np.shape(image)}")
    h, w = arr.shape[1:]
    if min(h, w) < size:
        raise ExportError(f"the test image ({h} x {w}) is smaller than the test size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    crop = arr[:, top : top + size, left : left + size]
    if dtype == "uint8" and crop.dtype != np.uint8:
        # An 8-bit model gets 8-bit data: the crop's 0.1-99.9 percentile range mapped to 0-255.
        lo, hi = np.percentile(crop, [0.1, 99.9])
        crop = np.clip((crop.astype(np.float64) - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).round()
    return np.ascontiguousarray(crop[None].astype(dtype))


# ----------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cover(raw: np.ndarray, probabilities: np.ndarray, path: Path) -> None:
    """A 2:1 PNG: the test input, and the input with the predicted mask's outline and fill in red."""
    import imageio.v3 as iio

    img = raw[0].astype(np.float64)
    img = img.mean(axis=0) if img.shape[0] != 3 else np.moveaxis(img, 0, -1)
    lo, hi = np.percentile(img, [0.5, 99.5])
    img = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
    mask = probabilities[0].max(axis=0) >= 0.5
    overlay = rgb.copy()
    overlay[mask] = 0.55 * overlay[mask] + 0.45 * np.array([1.0, 0.1, 0.1])
    iio.imwrite(
        path, (np.concatenate([rgb, overlay], axis=1) * 255).round().astype(np.uint8), extension=".png"
    )


def _samples(raw: np.ndarray, probabilities: np.ndarray, files: dict[str, Path]) -> None:
    """The test tensors as TIFF (CYX), the "sample tensors" bioimage.io shows to people. A grey
    input (one channel) gets none: bioimage.io's check counts its dimensions after squeezing."""
    import tifffile

    if raw.shape[1] == 3:
        tifffile.imwrite(files["sample_input"], raw[0], photometric="rgb", planarconfig="separate")
    else:
        del files["sample_input"]
    tifffile.imwrite(files["sample_output"], probabilities[0].astype(np.float32))


def _environment(path: Path) -> None:
    from napari_madgnet import __version__

    path.write_text(
        "# What the pytorch_state_dict weights entry imports (napari_madgnet.model.network:MADGNet).\n"
        "name: napari-madgnet\n"
        "channels:\n  - conda-forge\n"
        "dependencies:\n"
        "  - python>=3.10\n"
        "  - pip\n"
        "  - pip:\n"
        f"    - napari-madgnet=={__version__}\n"
    )


def _readme(path: Path, name: str, metadata: dict[str, Any], checks: dict[str, float], plan: list) -> None:
    prep = metadata["preprocessing"]
    trained_at = prep.get("input_size") or prep.get("tile_size")
    how = "resized to" if prep.get("input_size") else "patches of"
    size_note = f" It was trained on images {how} {trained_at} x {trained_at} px." if trained_at else ""
    lines = [
        f"# {name}",
        "",
        "MADGNet (Nam et al., CVPR 2024) segmentation model exported by napari-madgnet "
        f"{metadata['exported_by']['version']} (PyTorch {metadata['exported_by']['torch']}).",
        "",
        "## Input and output",
        "",
        f"- input `{INPUT_NAME}`: (batch, {metadata['input']['channels']} channels, y, x); any y, x >= 32 "
        "(the network pads to the multiple it needs and crops back)." + size_note,
        "- preprocessing: " + ", ".join(f"`{op}` {kw}" for op, kw in plan),
        f"- output `{OUTPUT_ID}`: (batch, {metadata['output']['channels']}, y, x), sigmoid probabilities; "
        "mask = probability >= 0.5.",
        "",
        "## Weights",
        "",
        "- `weights.pt`: PyTorch state dict for `napari_madgnet.model.network.MADGNet(**kwargs)` "
        "(needs `pip install napari-madgnet`, see `environment.yaml`).",
        "- `model.onnx`: ONNX (dynamic batch, height, width); needs only ONNX Runtime.",
        "- `model_torchscript.pt`: TorchScript (`torch.jit.load`); needs only PyTorch.",
        "",
        "## Validation",
        "",
        "Each weight file was loaded back and run on the test input before packaging; the largest absolute "
        "difference of its probabilities from the PyTorch model's:",
        "",
        *[f"- {k}: {v:.2e}" for k, v in checks.items()],
        "",
        "## Metadata",
        "",
        "```json",
        json.dumps({k: metadata[k] for k in ("config", "preprocessing", "provenance", "source")}, indent=2),
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


# ----------------------------------------------------------------------------- description


def _descr(
    *,
    name: str,
    description: str,
    authors: Sequence[str],
    license: str,
    cites: Sequence[Citation],
    metadata: dict[str, Any],
    channels: int,
    num_classes: int,
    input_dtype: str,
    plan: list[tuple[str, dict[str, Any]]],
    files: dict[str, Path],
    opset: int,
) -> Any:
    from bioimageio.spec.model import v0_5 as m

    def file(key: str) -> Any:
        return m.FileDescr(source=files[key].name, sha256=_sha256(files[key]))

    ops = {
        "ensure_dtype": (m.EnsureDtypeDescr, m.EnsureDtypeKwargs),
        "scale_linear": (m.ScaleLinearDescr, m.ScaleLinearKwargs),
        "scale_range": (m.ScaleRangeDescr, m.ScaleRangeKwargs),
        "clip": (m.ClipDescr, m.ClipKwargs),
    }
    preprocessing = [ops[op][0](kwargs=ops[op][1](**kw)) for op, kw in plan]
    space_in = [
        m.SpaceInputAxis(id=m.AxisId(a), size=m.ParameterizedSize(min=SPACE_MIN, step=SPACE_STEP))
        for a in "yx"
    ]
    space_out = [
        m.SpaceOutputAxis(
            id=m.AxisId(a), size=m.SizeReference(tensor_id=m.TensorId(INPUT_NAME), axis_id=m.AxisId(a))
        )
        for a in "yx"
    ]
    in_channels = ["intensity"] if channels == 1 else ["red", "green", "blue"]
    out_channels = ["foreground"] if num_classes == 1 else [f"class{i + 1}" for i in range(num_classes)]
    kwargs = {k: v for k, v in metadata["config"].items() if k != "in_channels"}
    torch_version = m.Version(torch.__version__.split("+")[0])
    weights = m.WeightsDescr(
        pytorch_state_dict=m.PytorchStateDictWeightsDescr(
            source=files["state_dict"].name,
            sha256=_sha256(files["state_dict"]),
            architecture=m.ArchitectureFromLibraryDescr(
                import_from="napari_madgnet.model.network", callable=m.Identifier("MADGNet"), kwargs=kwargs
            ),
            pytorch_version=torch_version,
            dependencies=file("environment"),
            comment="Needs napari-madgnet (environment.yaml): MADGNet's code spans several modules.",
        ),
        onnx=m.OnnxWeightsDescr(
            source=files["onnx"].name,
            sha256=_sha256(files["onnx"]),
            opset_version=opset,
            parent="pytorch_state_dict",
        ),
        torchscript=m.TorchscriptWeightsDescr(
            source=files["torchscript"].name,
            sha256=_sha256(files["torchscript"]),
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
    )
    return m.ModelDescr(
        name=name,
        description=description,
        authors=[m.Author(name=a) for a in authors],
        cite=[m.CiteEntry(text=c.text, doi=c.doi, url=c.url) for c in cites],
        license=license,
        documentation=file("readme"),
        covers=[file("cover")],
        tags=["segmentation", "2d", "madgnet", "pytorch", "onnx", "torchscript", "napari-madgnet"],
        inputs=[
            m.InputTensorDescr(
                id=m.TensorId(INPUT_NAME),
                description="image, intensities as the preprocessing expects",
                axes=[
                    m.BatchAxis(),
                    m.ChannelAxis(channel_names=[m.Identifier(c) for c in in_channels]),
                    *space_in,
                ],
                test_tensor=file("test_input"),
                sample_tensor=file("sample_input") if "sample_input" in files else None,
                data=m.IntervalOrRatioDataDescr(type=input_dtype),
                preprocessing=preprocessing,
            )
        ],
        outputs=[
            m.OutputTensorDescr(
                id=m.TensorId(OUTPUT_ID),
                description="per-class probabilities (sigmoid of the network's logits); mask = p >= 0.5",
                axes=[
                    m.BatchAxis(),
                    m.ChannelAxis(channel_names=[m.Identifier(c) for c in out_channels]),
                    *space_out,
                ],
                test_tensor=file("test_output"),
                sample_tensor=file("sample_output"),
                data=m.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                postprocessing=[m.SigmoidDescr()],
            )
        ],
        weights=weights,
        config={
            "bioimageio": {
                "reproducibility_tolerance": [
                    {"absolute_tolerance": PACKAGE_TOLERANCE, "relative_tolerance": 0.0}
                ]
            },
            "napari_madgnet": metadata,
        },
    )


def validate_package(source: str | os.PathLike[str]) -> Any:
    """Load and validate a package (folder with rdf.yaml, the rdf.yaml, or a .zip) with
    ``bioimageio.spec``, checking the files' hashes and test tensors; returns the description.

    Raises :class:`~napari_madgnet.export.common.ExportError` with the validation summary if the
    package does not validate.
    """
    spec = require("bioimageio.spec", "bioimage.io export")
    path = Path(source)
    if path.is_dir():
        path = path / "rdf.yaml"
    descr = spec.load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    if summary.status not in ("passed", "valid-format"):
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.errors) or summary.status
        raise ExportError(f"the bioimage.io package {source} does not validate: {errors}")
    return descr


# ----------------------------------------------------------------------------- export


def export_bioimageio(
    model_ref: Any,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    license: str = "CC-BY-4.0",
    training_data: Sequence[Citation] = (),
    test_image: Any = None,
    test_size: int = 128,
    opset: int = MIN_OPSET,
) -> ExportResult:
    """Write a bioimage.io model package (spec 0.5) of ``model_ref`` to ``out``.

    ``out`` ending in ``.zip`` gets the zipped package, anything else a folder. ``model_ref``:
    a MADGNet, a registered name or a checkpoint path. ``name`` (letters, digits, spaces,
    ``_+-()``), ``description``, ``authors`` (default: the user's login name) and ``license``
    (an SPDX id; the released MADGNet weights carry none, so do not publish packages of them)
    go into rdf.yaml. ``training_data`` cites the data the model was trained on; without it the
    data sets the checkpoint's provenance names are recognised (see :data:`KNOWN_DATASETS`),
    else :class:`~napari_madgnet.export.common.ExportError` asks for one. ``test_image``: a 2-D
    or RGB array to crop the ``test_size`` x ``test_size`` test input from (default: the
    bundled nuclei image).

    The state dict, ONNX and TorchScript weights are each loaded back and run on the test input;
    any that differs from the PyTorch model by more than :data:`PACKAGE_TOLERANCE` raises
    ExportError. The description is validated with ``bioimageio.spec`` (hashes, test tensors)
    before the package takes ``out``'s place; an existing ``out`` is refused unless
    ``overwrite``. Needs the ``export`` extra (onnx, onnxruntime, bioimageio.spec).
    """
    spec = require("bioimageio.spec", "bioimage.io export")
    require("onnx", "bioimage.io export (ONNX weights)")
    require("onnxruntime", "bioimage.io export (checking the ONNX weights)")
    target = check_target(out, overwrite)
    if test_size < SPACE_MIN or test_size % SPACE_STEP:
        raise ExportError(f"test_size must be a multiple of {SPACE_STEP} and >= {SPACE_MIN}, got {test_size}")
    model = load_for_export(model_ref)
    metadata = export_metadata(model, "bioimageio")
    cites = [PAPER, *(training_data or training_data_citations(model))]
    if len(cites) == 1:
        raise ExportError(
            "a bioimage.io package must cite the training data, and this model's provenance names "
            f"no data set it knows ({metadata['provenance'].get('trained_on') or 'nothing recorded'}); "
            "pass training_data=[Citation(text, doi=... or url=...)] "
            "(CLI: --data-citation TEXT with --data-doi DOI or --data-url URL)"
        )
    channels, num_classes = input_channels(model), model.config.num_classes
    input_dtype, plan = _preprocessing_plan(metadata["preprocessing"])
    label = name or f"MADGNet {metadata.get('model_name') or model.config.backbone}"
    label = "".join(c if c.isalnum() or c in " _+-()" else "-" for c in label)[:128]

    with _staging(target, overwrite) as staging:
        files = {
            "state_dict": staging / "weights.pt",
            "onnx": staging / "model.onnx",
            "torchscript": staging / "model_torchscript.pt",
            "test_input": staging / "test_input.npy",
            "test_output": staging / "test_output.npy",
            "cover": staging / "cover.png",
            "readme": staging / "README.md",
            "environment": staging / "environment.yaml",
            "sample_input": staging / "sample_input.tif",
            "sample_output": staging / "sample_output.tif",
        }
        raw = _test_input(test_image, channels, test_size, input_dtype)
        x = torch.from_numpy(_apply_plan(raw, plan))
        with eval_on_cpu(model), torch.no_grad():
            expected = torch.sigmoid(model(x))
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, files["state_dict"])
            props = {"napari_madgnet": metadata, "preprocessing": metadata["preprocessing"]}
            files["onnx"].write_bytes(onnx_bytes(model, opset, props))
            extra = {METADATA_FILE: json.dumps(metadata)}
            torch.jit.save(trace(model), os.fspath(files["torchscript"]), _extra_files=extra)
        checks = _check_weights(files, metadata, x, expected)
        np.save(files["test_input"], raw, allow_pickle=False)
        np.save(files["test_output"], expected.numpy().astype(np.float32), allow_pickle=False)
        _cover(raw, expected.numpy(), files["cover"])
        _samples(raw, expected.numpy(), files)
        _readme(files["readme"], label, metadata, checks, plan)
        _environment(files["environment"])
        with spec.ValidationContext(root=staging, perform_io_checks=True):
            descr = _descr(
                name=label,
                description=description
                or "MADGNet (CVPR 2024) modality-agnostic 2-D segmentation, exported by napari-madgnet.",
                authors=list(authors) or [_login()],
                license=license,
                cites=cites,
                metadata=metadata,
                channels=channels,
                num_classes=num_classes,
                input_dtype=input_dtype,
                plan=plan,
                files=files,
                opset=opset,
            )
        spec.save_bioimageio_yaml_only(descr, file=staging / "rdf.yaml")
        validate_package(staging)
        if target.suffix.lower() == ".zip":
            with atomic_path(target, overwrite=overwrite) as tmp:
                tmp.unlink()
                spec.save_bioimageio_package(staging / "rdf.yaml", output_path=tmp)
    return ExportResult(Path(target), "bioimageio", metadata, checks)


def _check_weights(
    files: dict[str, Path], metadata: dict[str, Any], x: torch.Tensor, expected: torch.Tensor
) -> dict:
    """Load each weight file back as a consumer would and compare its probabilities."""
    from napari_madgnet.model import MADGNet

    shape = "x".join(map(str, x.shape))
    checks: dict[str, float] = {}
    kwargs = {k: v for k, v in metadata["config"].items() if k != "in_channels"}
    net = MADGNet(**kwargs)
    net.load_state_dict(torch.load(files["state_dict"], map_location="cpu", weights_only=True), strict=True)
    with torch.no_grad():
        checks[f"pytorch_state_dict {shape}"] = max_abs_difference(torch.sigmoid(net.eval()(x)), expected)
        scripted = torch.jit.load(os.fspath(files["torchscript"]), map_location="cpu")
        checks[f"torchscript {shape}"] = max_abs_difference(torch.sigmoid(scripted(x)), expected)
    (logits,) = onnx_session(files["onnx"], threads=torch.get_num_threads()).run(
        None, {INPUT_NAME: x.numpy()}
    )
    checks[f"onnxruntime {shape}"] = max_abs_difference(torch.sigmoid(torch.from_numpy(logits)), expected)
    raise_if_off(checks, PACKAGE_TOLERANCE)
    return checks


@contextlib.contextmanager
def _staging(target: Path, overwrite: bool) -> Iterator[Path]:
    """The folder the package is assembled in: for a folder target, the temporary folder that
    takes its place on success; for a .zip, a temporary folder removed afterwards."""
    if target.suffix.lower() != ".zip":
        with atomic_folder(target, overwrite=overwrite) as folder:
            yield folder
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as folder:
        yield Path(folder)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"
