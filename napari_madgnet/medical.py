"""Medical volumes with their geometry: DICOM, NIfTI, NRRD and MetaImage, read and written by SimpleITK.

Optional: SimpleITK comes with ``pip install "napari-madgnet[medical]"``; without it every function
here raises ``imagefile.MissingExtraError`` naming that command, and the rest of the package works.
SimpleITK reads every one of these formats with its spacing, origin and direction, and applies
DICOM's rescale slope/intercept, so CT arrives in Hounsfield units. Arrays and geometry follow the
conventions of ``napari_madgnet.imagefile`` (spatial axes ZYX, spacing/origin/direction in that
order; SimpleITK's own (x, y, z) order is reversed here and nowhere else).

Reading: ``read_medical(path, series=None)`` for a file or a DICOM folder. A DICOM folder with
several series (SeriesInstanceUID) is refused with the list of them unless ``series`` picks one;
one file of a series reads the whole series it belongs to. Writing: ``write_like(path, array,
reference)`` writes a mask (integer labels) or a probability map as NIfTI (.nii/.nii.gz), NRRD
(.nrrd) or MetaImage (.mha) with the reference's geometry, atomically.

Only technical DICOM attributes are kept (``DICOM_TAGS``: modality, series UID and description,
rescale, window); no patient identifiers are copied into metadata, layers or logs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.atomic import atomic_path
from napari_madgnet.errors import UserError
from napari_madgnet.imagefile import ImageFile, ImageReadError, require, spatial_axes

#: Format family of each suffix SimpleITK reads here (compound suffixes first).
MEDICAL_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".dcm": "dicom",
    ".dicom": "dicom",
}
#: Suffixes ``write_like`` writes: single files, so that a write can be atomic.
WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
#: The mask suffix for each input family: NIfTI for NIfTI and DICOM, NRRD for NRRD, MHA for MetaImage.
MASK_SUFFIX_FOR_FORMAT: dict[str, str] = {
    "nifti": ".nii.gz",
    "dicom": ".nii.gz",
    "nrrd": ".nrrd",
    "metaimage": ".mha",
}
#: The DICOM attributes kept in ``ImageFile.metadata["dicom"]`` (none identifies a patient).
DICOM_TAGS: dict[str, str] = {
    "0008|0060": "Modality",
    "0008|0016": "SOPClassUID",
    "0008|103e": "SeriesDescription",
    "0020|000e": "SeriesInstanceUID",
    "0020|0011": "SeriesNumber",
    "0018|0015": "BodyPartExamined",
    "0018|0050": "SliceThickness",
    "0028|1050": "WindowCenter",
    "0028|1051": "WindowWidth",
    "0028|1052": "RescaleIntercept",
    "0028|1053": "RescaleSlope",
    "0028|1054": "RescaleType",
}
_EXTRA = "medical"


def sitk() -> Any:
    """The SimpleITK module, or ``MissingExtraError`` naming the ``medical`` extra."""
    return require("SimpleITK", _EXTRA, "Reading and writing medical images (DICOM, NIfTI, NRRD, MetaImage)")


def medical_suffix(path: Path) -> str | None:
    """The medical suffix of ``path`` (".nii.gz", ".nrrd"...), lower case, or None."""
    name = path.name.lower()
    return next((s for s in MEDICAL_SUFFIXES if name.endswith(s)), None)


def is_dicom_file(path: Path) -> bool:
    """A .dcm/.dicom file, or any file with DICOM's "DICM" marker at byte 128 (most have no suffix)."""
    if path.name.upper() == "DICOMDIR" or path.name.startswith("."):
        return False
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (not in sub-folders), sorted by name."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_file() and _maybe_dicom_name(p) and is_dicom_file(p)]


def _maybe_dicom_name(path: Path) -> bool:
    """Skip the magic-number check for files whose suffix says they are something else."""
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom", ""):
        return True
    # Names like "1.2.840.113619.2.55.3" or "IM0001.1" have numeric "suffixes".
    return suffix[1:].isdigit()


def is_dicom_folder(path: Path) -> bool:
    """A folder (not a zarr store) with at least one DICOM file directly in it; stops at the first."""
    if not path.is_dir() or path.suffix.lower() == ".zarr":
        return False
    try:
        entries = path.iterdir()
        return any(p.is_file() and _maybe_dicom_name(p) and is_dicom_file(p) for p in entries)
    except OSError:
        return False


def format_of(path: Path) -> str | None:
    """The medical format family of a path ("nifti", "nrrd", "metaimage", "dicom") or None."""
    suffix = medical_suffix(path)
    if suffix is not None:
        return MEDICAL_SUFFIXES[suffix]
    if path.is_dir():
        return "dicom" if is_dicom_folder(path) else None
    if path.is_file() and _maybe_dicom_name(path) and is_dicom_file(path):
        return "dicom"
    return None


def mask_suffix(fmt: str | None, source: Path | None = None) -> str | None:
    """The suffix of a mask of an image of format ``fmt`` (same family; NIfTI for DICOM), or None.

    An uncompressed .nii ``source`` gets an uncompressed .nii mask; other NIfTI get .nii.gz.
    """
    if fmt == "nifti" and source is not None and source.name.lower().endswith(".nii"):
        return ".nii"
    return MASK_SUFFIX_FOR_FORMAT.get(fmt or "")


# ---------------------------------------------------------------------------------------------
# Reading


def read_medical(path: str | os.PathLike[str], *, series: str | None = None) -> ImageFile:
    """Read a NIfTI, NRRD, MetaImage or DICOM file, or a DICOM folder, with its geometry.

    Returns an ``ImageFile`` with ``data`` a numpy array (Z, Y, X) for volumes, (Y, X) for 2-D
    images, (T, Z, Y, X) for 4-D files, with a trailing C for multi-component pixels (RGB).
    DICOM data has rescale slope/intercept applied (CT in HU, ``intensity_unit="HU"``).
    ``series``: the SeriesInstanceUID to read from a DICOM folder holding several.
    Raises ``io.ImageReadError`` for unreadable files and ambiguous folders, and
    ``MissingExtraError`` without SimpleITK.
    """
    p = Path(path)
    fmt = format_of(p)
    if fmt is None:
        raise ImageReadError(f"{p}: not a NIfTI, NRRD, MetaImage or DICOM file, nor a folder of DICOM files.")
    sk = sitk()
    if fmt == "dicom":
        return _read_dicom(p, series)
    try:
        image = sk.ReadImage(str(p))
    except RuntimeError as exc:
        raise ImageReadError(
            f"{p}: cannot be read as {fmt} ({_itk_message(exc)}). Is the file complete and of the type its "
            "extension says?"
        ) from exc
    return _from_sitk(image, p, fmt)


def _itk_message(exc: BaseException) -> str:
    """ITK's exceptions carry file/line noise; keep the description lines."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("sitk::ERROR", "ITK ERROR", "/", "Location"))]
    text = " ".join(keep or lines)
    return text.replace("itk::ERROR: ", "")[:300]


def list_dicom_series(folder: Path) -> list[dict[str, Any]]:
    """The DICOM series directly in ``folder``: uid, files (sorted by position), modality, description."""
    sk = sitk()
    try:
        uids = sk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise ImageReadError(f"{folder}: cannot list its DICOM series ({_itk_message(exc)}).") from exc
    out = []
    for uid in uids:
        files = [Path(f) for f in sk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)]
        tags = _file_tags(files[0]) if files else {}
        out.append(
            {
                "uid": uid,
                "files": files,
                "modality": tags.get("Modality", "?"),
                "description": tags.get("SeriesDescription", ""),
                "number": tags.get("SeriesNumber", ""),
            }
        )
    return out


def _file_tags(path: Path) -> dict[str, str]:
    sk = sitk()
    reader = sk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {
        name: reader.GetMetaData(key).strip()
        for key, name in DICOM_TAGS.items()
        if reader.HasMetaDataKey(key)
    }


def _describe_series(info: dict[str, Any]) -> str:
    desc = f" '{info['description']}'" if info["description"] else ""
    files = info["files"]
    return f"  {info['uid']}: {info['modality']}{desc}, {len(files)} file(s), e.g. {files[0].name}"


def _read_dicom(path: Path, series: str | None) -> ImageFile:
    error = ImageReadError
    if path.is_dir():
        found = list_dicom_series(path)
        if not found:
            raise error(f"{path}: no DICOM series found in this folder (sub-folders are not searched).")
        if series is not None:
            chosen = [s for s in found if s["uid"] == series]
            if not chosen:
                raise error(
                    f"{path}: no DICOM series {series!r} here; the folder holds:\n"
                    + "\n".join(_describe_series(s) for s in found)
                )
            info = chosen[0]
        elif len(found) > 1:
            raise error(
                f"{path}: the folder holds {len(found)} DICOM series; choose one by its SeriesInstanceUID "
                "(CLI: --series UID; Python: series=UID) or give one of its files instead of the folder:\n"
                + "\n".join(_describe_series(s) for s in found)
            )
        else:
            info = found[0]
        return _read_series(info["files"], path, info["uid"])
    tags = _file_tags(path)
    if not tags and not is_dicom_file(path):
        raise error(f"{path}: cannot be read as DICOM. Is the file complete?")
    uid = tags.get("SeriesInstanceUID")
    if series is not None and uid is not None and series != uid:
        raise error(f"{path}: belongs to DICOM series {uid}, not to the requested series {series}.")
    files = [path]
    if uid:
        try:
            files = [Path(f) for f in sitk().ImageSeriesReader.GetGDCMSeriesFileNames(str(path.parent), uid)]
        except RuntimeError:
            files = [path]
        if not any(f.resolve() == path.resolve() for f in files):
            files = [path]
    return _read_series(files, path, uid)


def _read_series(files: list[Path], source: Path, uid: str | None) -> ImageFile:
    sk = sitk()
    error = ImageReadError
    reader = sk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise error(
            f"{source}: cannot read the DICOM series ({_itk_message(exc)}). Are all its files complete?"
        ) from exc
    tags = {
        name: reader.GetMetaData(0, key).strip()
        for key, name in DICOM_TAGS.items()
        if reader.HasMetaDataKey(0, key)
    }
    out = _from_sitk(image, source, "dicom")
    out.modality = tags.get("Modality") or None
    if out.modality == "CT":
        out.intensity_unit = "HU"  # CT pixel data after rescale slope/intercept is in HU by definition
    elif tags.get("RescaleType"):
        out.intensity_unit = tags["RescaleType"]
    out.metadata["dicom"] = tags
    out.metadata["dicom_files"] = len(files)
    if uid:
        out.metadata["series_uid"] = uid
    spread = _slice_spacing_spread(reader, image, len(files))
    if spread is not None:
        out.metadata.setdefault("warnings", []).append(spread)
        warnings.warn(f"{source}: {spread}", stacklevel=3)
    return out


def _slice_spacing_spread(reader: Any, image: Any, n: int) -> str | None:
    """A warning when the slices are not evenly spaced (missing or irregular slices), else None."""
    if n < 3 or image.GetDimension() != 3:
        return None
    try:
        positions = np.array(
            [[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(n)]
        )
    except (RuntimeError, ValueError):
        return None
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    steps = np.diff(positions @ normal)
    if steps.size and np.ptp(steps) > 0.01 * max(abs(float(np.mean(steps))), 1e-6):
        return (
            f"slice spacing varies from {steps.min():.4g} to {steps.max():.4g} mm (missing or irregular "
            f"slices); the volume uses {image.GetSpacing()[2]:.4g} mm throughout."
        )
    return None


def _from_sitk(image: Any, source: Path, fmt: str) -> ImageFile:
    """An ``ImageFile`` from a SimpleITK image: arrays and geometry in the project's ZYX order."""
    sk = sitk()
    dim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    data = sk.GetArrayFromImage(image)  # (…, z, y, x[, c]): ITK's index order reversed
    itk_spacing = image.GetSpacing()
    itk_origin = image.GetOrigin()
    itk_direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    n_spatial = min(dim, 3)
    axes = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(dim)
    if axes is None:
        raise ImageReadError(f"{source}: a {dim}-D image; only 2-D to 4-D images are supported.")
    if components > 1:
        axes += "C"
    extra: dict[str, Any] = {}
    if dim == 4:  # ITK's 4th index (numpy's first axis) is time
        extra = {"t_spacing": float(itk_spacing[3]), "t_origin": float(itk_origin[3])}
    # Reverse (x, y, z) into the order of the spatial axes (z, y, x).
    spacing = tuple(float(v) for v in itk_spacing[:n_spatial][::-1])
    origin = tuple(float(v) for v in itk_origin[:n_spatial][::-1])
    direction = itk_direction[:n_spatial, :n_spatial][::-1, ::-1]
    metadata: dict[str, Any] = {"geometry_extra": extra} if extra else {}
    if fmt != "dicom":
        keys = [k for k in image.GetMetaDataKeys() if not k.startswith("ITK_")]
        header = {k: image.GetMetaData(k)[:200] for k in keys[:100]}
        if header:
            metadata["header"] = header
    return ImageFile(
        data=data,
        axes=axes,
        axes_source="file",
        spacing=spacing,
        unit="mm",
        origin=origin,
        direction=tuple(direction.ravel()),
        source=source,
        format=fmt,
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------
# Writing


def write_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in WRITE_SUFFIXES if name.endswith(s)), None)


def label_dtype_for(array: np.ndarray) -> np.dtype:
    """The smallest of uint8, uint16, int32 that holds the labels; ``UserError`` otherwise."""
    if array.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(
            f"A mask holds integer labels; got {array.dtype}. Write probabilities with kind='image'."
        )
    if array.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(array.min()), int(array.max())
    if lo >= 0 and hi <= 255:
        return np.dtype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return np.dtype(np.uint16)
    if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    raise UserError(f"Labels range [{lo}, {hi}] does not fit 32-bit integers.")


def write_like(
    path: str | os.PathLike[str],
    array: Any,
    reference: ImageFile,
    *,
    kind: str = "mask",
    overwrite: bool = False,
) -> Path:
    """Write ``array`` with the geometry of ``reference`` as .nii/.nii.gz, .nrrd or .mha.

    ``kind="mask"``: integer labels, stored as uint8, uint16 or int32 (the smallest that holds
    them). ``kind="image"``: any numeric data as float32 or its own integer type (probability
    maps); an array with one more leading axis than the reference's spatial grid (classes,
    (K, Z, Y, X)) is stored as K components per voxel. The array's axes are the reference's axes
    without C; its shape must equal the reference's along them. The file is written beside its
    final path and renamed (``io.atomic_path``); an existing file is refused unless ``overwrite``.
    Raises ``UserError`` for a shape or format mismatch, ``FileExistsError``, ``MissingExtraError``.
    """
    sk = sitk()
    target = Path(path)
    suffix = write_suffix(target)
    if suffix is None:
        raise UserError(
            f"{target}: cannot write {target.suffix!r} with geometry; use one of {', '.join(WRITE_SUFFIXES)}."
        )
    if kind not in ("mask", "image"):
        raise ValueError(f"kind must be 'mask' or 'image', got {kind!r}.")
    arr = np.asarray(array)
    axes = (reference.axes or "").replace("C", "")
    if not axes:
        raise UserError("The reference image has no axes; cannot place the array in space.")
    expected = tuple(reference.shape[(reference.axes or "").index(a)] for a in axes)
    vector = kind == "image" and arr.ndim == len(axes) + 1 and tuple(arr.shape[1:]) == expected
    if vector and arr.shape[0] == 1:
        arr, vector = arr[0], False
    if tuple(arr.shape[1:] if vector else arr.shape) != expected:
        raise UserError(
            f"{target}: the array's shape {tuple(arr.shape)} does not match the image's {expected} "
            f"(axes {axes}); a mask must have the image's voxel grid."
        )
    order = [a for a in axes if a not in "ZYX"] + [a for a in axes if a in "ZYX"]
    if list(axes) != order or spatial_axes(axes) not in ("YX", "ZYX"):
        raise UserError(f"{target}: cannot write axes {axes!r} with geometry; expected YX, ZYX or TZYX.")
    if kind == "mask":
        arr = arr.astype(label_dtype_for(arr), copy=False)
    elif arr.dtype.kind == "f" or arr.dtype == bool:
        arr = arr.astype(np.float32, copy=False)
    if vector:
        arr = np.moveaxis(arr, 0, -1)  # SimpleITK wants components last
    image = sk.GetImageFromArray(np.ascontiguousarray(arr), isVector=vector)
    spacing, origin, direction = _itk_geometry(reference, axes)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    with atomic_path(target, overwrite=overwrite) as tmp:
        try:
            sk.WriteImage(image, str(tmp), useCompression=suffix != ".nii")
        except RuntimeError as exc:
            raise UserError(f"{target}: SimpleITK could not write it ({_itk_message(exc)}).") from exc
    return target


def _itk_geometry(reference: ImageFile, axes: str) -> tuple[list[float], list[float], list[float]]:
    """(spacing, origin, direction) in ITK's (x, y, z[, t]) order for an array with ``axes``."""
    n = len(axes)
    sp_axes = spatial_axes(axes)
    k = len(sp_axes)
    geometry = reference.geometry()
    if geometry["axes"] != sp_axes:
        raise UserError(
            f"The reference's spatial axes {geometry['axes']!r} differ from the array's {sp_axes!r}."
        )
    extra = geometry["extra"]
    spacing = np.ones(n)
    origin = np.zeros(n)
    direction = np.eye(n)
    lead = n - k  # non-spatial axes (T) come first in numpy order, last in ITK's
    spacing[lead:] = geometry["spacing"]
    origin[lead:] = geometry["origin"]
    direction[lead:, lead:] = np.asarray(geometry["direction"], dtype=float).reshape(k, k)
    if lead:
        spacing[0] = float(extra.get("t_spacing", 1.0))
        origin[0] = float(extra.get("t_origin", 0.0))
    return spacing[::-1].tolist(), origin[::-1].tolist(), direction[::-1, ::-1].ravel().tolist()
