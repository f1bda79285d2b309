"""An image as read from a file: its pixels, their axes and their place in physical space.

Every reader of ``napari_madgnet.io`` returns an ``ImageFile``, so the CLI, the napari reader and
scripts get one description of an image whatever its format (TIFF, NIfTI, NRRD, MetaImage, DICOM,
video). The module is plain numpy: no SimpleITK, no napari.

Geometry conventions (the same for every format)
-------------------------------------------------
- ``axes`` names the array's dimensions with the letters T, Z, C, Y, X (``"ZYX"`` for a volume,
  ``"YX"`` for a plane, ``"TYXC"`` for a colour video). The *spatial* axes are the Z, Y, X letters
  in array order (``spatial_axes``).
- ``spacing``, ``origin`` and ``direction`` are given **in the order of the spatial axes** (Z, Y, X
  for a volume), not in ITK's (x, y, z) order. SimpleITK's arrays are (z, y, x) while its
  ``GetSpacing()``/``GetOrigin()`` are (x, y, z); the readers reverse them, so ``spacing[i]`` is the
  physical step along array axis ``i``.
- ``direction`` is the row-major n x n matrix whose column ``j`` is the unit vector (in physical
  coordinates, ordered like the spatial axes) of array axis ``j``. From ITK's (x, y, z) matrix it
  is that matrix with rows and columns reversed.
- A voxel's physical position is ``origin + direction @ (spacing * index)``, with ``index`` the
  array index of its spatial axes. The physical frame is the one of the file's reader: for
  SimpleITK (NIfTI, NRRD, MetaImage, DICOM) that is DICOM's patient frame LPS, in millimetres
  (NIfTI's RAS is converted on reading and back on writing).

``affine_matrix`` gives that map as a homogeneous matrix, ``napari_transform`` as a napari layer's
``scale``/``translate``/``affine``, and ``geometry_from_matrix`` takes such a matrix apart again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.layout import guess_note

#: The key of the geometry record in napari layer metadata (a plain, JSON-able dict).
GEOMETRY_KEY = "madgnet_geometry"

#: Relative tolerance under which two geometries (or a geometry and a layer transform) are equal.
GEOMETRY_TOLERANCE = 1e-6


class ImageReadError(UserError):
    """A file could not be read as an image; the message names the file and what to do.

    Re-exported as ``napari_madgnet.io.ImageReadError`` (where callers usually import it from).
    """


class MissingExtraError(UserError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> Any:
    """Import ``module`` or raise ``MissingExtraError`` naming ``pip install "napari-madgnet[extra]"``.

    ``purpose`` completes "... needs <module>", e.g. "Reading NIfTI files".
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the optional package {module.split('.')[0]}, which is not installed: "
            f'pip install "napari-madgnet[{extra}]"'
        ) from exc


def spatial_axes(axes: str) -> str:
    """The Z, Y, X letters of ``axes`` in array order: "TZYXC" -> "ZYX"."""
    return "".join(a for a in axes if a in "ZYX")


@dataclass
class ImageFile:
    """An image read from a file.

    ``data``: the pixels, a numpy array or an array-like read lazily (memory map, zarr array,
    ``video.VideoFrames``). ``axes``: TZCYX letters of ``data``'s dimensions, or ``None`` when
    nothing fits (a 1-D or 6-D array); ``axes_source`` says whether the axes come from the file
    ("file": medical headers, ImageJ/OME/RGB TIFF tags, PNG modes) or a guess from the shape
    ("guessed", ``layout.guess_axes``: NPY, zarr, TIFF pages without axes metadata).
    ``spacing`` (physical units per pixel), ``origin`` and ``direction`` (row-major n x n) follow
    the order of the spatial axes, see the module docstring; ``None`` when the file has no
    geometry. ``unit``: the unit of spacing and origin ("mm"; "µm" for microscopy TIFFs).
    ``modality``: e.g. "CT", "MR" (DICOM's Modality); ``intensity_unit``: "HU"
    for CT data in Hounsfield units. ``source``: the path read; ``format``: the format family
    ("nifti", "nrrd", "metaimage", "dicom", "video", "tiff", "png", "npy", "zarr", ...);
    ``metadata``: what else the reader found (never patient identifiers).
    """

    data: Any
    axes: str | None = None
    axes_source: Literal["file", "guessed"] = "guessed"
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    origin: tuple[float, ...] | None = None
    direction: tuple[float, ...] | None = None
    modality: str | None = None
    intensity_unit: str | None = None
    source: Path | None = None
    format: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.axes is not None:
            self.axes = str(self.axes).upper()
            if len(self.axes) != len(self.data.shape) or set(self.axes) - set("TZCYX"):
                raise ValueError(f"axes {self.axes!r} do not describe an array of shape {self.shape}.")
        n = len(self.spatial_axes) if self.axes is not None else None
        for name in ("spacing", "origin"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if n is not None and len(value) != n:
                    raise ValueError(
                        f"{name} {value} has {len(value)} values for spatial axes {self.spatial_axes!r}."
                    )
                setattr(self, name, value)
        if self.direction is not None:
            self.direction = tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel())
            if n is not None and len(self.direction) != n * n:
                raise ValueError(f"direction has {len(self.direction)} values; expected {n} x {n}.")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def spatial_axes(self) -> str:
        """ "ZYX", "YX"...: the spatial axes in array order ("" when the axes are unknown)."""
        return spatial_axes(self.axes or "")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        axes = self.axes or ""
        return tuple(self.shape[axes.index(a)] for a in self.spatial_axes)

    @property
    def has_geometry(self) -> bool:
        return self.spacing is not None

    def direction_matrix(self) -> np.ndarray:
        """The direction as an n x n array (identity when the file has none)."""
        n = len(self.spatial_axes)
        if self.direction is None:
            return np.eye(n)
        return np.asarray(self.direction, dtype=float).reshape(n, n)

    def geometry(self) -> dict[str, Any]:
        """The geometry as a plain dict (stored in napari layer metadata under ``GEOMETRY_KEY``).

        Keys: axes (spatial), shape (spatial), spacing, origin, direction (row-major), unit,
        modality, intensity_unit, format, source, and ``extra`` (what writers need to rebuild
        non-spatial dimensions, e.g. the time step of a 4-D NIfTI).
        """
        n = len(self.spatial_axes)
        return {
            "axes": self.spatial_axes,
            "shape": list(self.spatial_shape),
            "spacing": list(self.spacing) if self.spacing is not None else [1.0] * n,
            "origin": list(self.origin) if self.origin is not None else [0.0] * n,
            "direction": [float(v) for v in self.direction_matrix().ravel()],
            "unit": self.unit,
            "modality": self.modality,
            "intensity_unit": self.intensity_unit,
            "format": self.format,
            "source": str(self.source) if self.source is not None else None,
            "extra": dict(self.metadata.get("geometry_extra") or {}),
        }

    @classmethod
    def from_geometry(cls, data: Any, geometry: dict[str, Any], axes: str | None = None) -> ImageFile:
        """An ``ImageFile`` of ``data`` placed by a ``geometry()`` dict (e.g. from layer metadata).

        ``axes``: of ``data``; by default the geometry's spatial axes.
        """
        extra = dict(geometry.get("extra") or {})
        return cls(
            data=data,
            axes=axes or geometry["axes"],
            axes_source="file",
            spacing=tuple(geometry["spacing"]),
            unit=geometry.get("unit"),
            origin=tuple(geometry["origin"]),
            direction=tuple(geometry["direction"]),
            modality=geometry.get("modality"),
            intensity_unit=geometry.get("intensity_unit"),
            source=Path(geometry["source"]) if geometry.get("source") else None,
            format=geometry.get("format"),
            metadata={"geometry_extra": extra} if extra else {},
        )


#: Length units in millimetres (medical formats store mm; microscopy TIFFs often say µm).
MILLIMETRES = {"nm": 1e-6, "µm": 1e-3, "mm": 1.0, "cm": 10.0, "m": 1e3}


def in_millimetres(image: ImageFile) -> ImageFile:
    """``image`` with spacing and origin in mm, for writers whose formats store mm (NIfTI...).

    No unit: taken as mm already (the medical readers' unit). A unit that is not a length (or
    unknown): the geometry is dropped, so the writer places the array at unit spacing rather
    than at a wrong scale.
    """
    if image.unit in (None, "mm") or image.spacing is None:
        return image
    factor = MILLIMETRES.get(image.unit)
    if factor is None:
        return replace(image, spacing=None, origin=None, direction=None, unit=None)
    origin = None if image.origin is None else tuple(v * factor for v in image.origin)
    return replace(image, spacing=tuple(v * factor for v in image.spacing), origin=origin, unit="mm")


class AxesNotes:
    """Where an image's axes came from, and a note printed once per guessed layout.

    For ``madgnet predict``: ``check(image, given_axes)`` returns the record for the run log and
    the result's provenance, ``{"axes": ..., "axes_source": "given" | "file" | "guessed"}``, and
    the note to print (``layout.guess_note``) the first time a guessed layout is met (same axes
    and same sizes apart from Y and X: a folder of same-shaped images gets one note), else None.
    """

    def __init__(self) -> None:
        self._told: set[tuple[str, tuple[int, ...]]] = set()

    def check(self, image: ImageFile, given_axes: str | None = None) -> tuple[dict[str, Any], str | None]:
        if given_axes:
            return {"axes": given_axes, "axes_source": "given"}, None
        info: dict[str, Any] = {"axes": image.axes, "axes_source": image.axes_source}
        if image.axes is None or image.axes_source != "guessed":
            return info, None
        key = (image.axes, tuple(n for a, n in zip(image.axes, image.shape, strict=True) if a not in "YX"))
        if key in self._told:
            return info, None
        self._told.add(key)
        name = image.source.name if image.source is not None else "the image"
        return info, guess_note(name, image.shape, image.axes)


def affine_matrix(
    spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...] | np.ndarray | None
) -> np.ndarray:
    """The (n+1) x (n+1) homogeneous map from array index to physical position.

    ``position = origin + direction @ (spacing * index)``, all in the order of the spatial axes.
    """
    n = len(spacing)
    d = np.eye(n) if direction is None else np.asarray(direction, dtype=float).reshape(n, n)
    m = np.eye(n + 1)
    m[:n, :n] = d * np.asarray(spacing, dtype=float)[None, :]
    m[:n, n] = np.asarray(origin, dtype=float)
    return m


def geometry_from_matrix(
    matrix: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) of an index-to-physical homogeneous matrix.

    The inverse of ``affine_matrix``: spacing is the length of each column, direction the
    normalised columns. Raises ``UserError`` when the columns are not orthogonal (a sheared
    transform, which NIfTI/NRRD/MetaImage geometry cannot hold).
    """
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0] - 1
    linear = m[:n, :n]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise UserError(f"The transform {m.tolist()} collapses an axis (zero scale); it cannot be saved.")
    direction = linear / spacing[None, :]
    if not np.allclose(direction.T @ direction, np.eye(n), atol=1e-5):
        raise UserError(
            "The layer's transform has shear or non-orthogonal axes; medical image formats store only "
            "spacing, origin and a rotation. Remove the shear (layer.shear) before saving."
        )
    return (
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in m[:n, n]),
        tuple(float(v) for v in direction.ravel()),
    )


def is_identity(direction: tuple[float, ...] | np.ndarray | None, tol: float = GEOMETRY_TOLERANCE) -> bool:
    if direction is None:
        return True
    d = np.asarray(direction, dtype=float)
    n = math.isqrt(d.size)
    return bool(np.allclose(d.reshape(n, n), np.eye(n), rtol=0, atol=tol))


def napari_transform(image: ImageFile, layer_axes: str | None = None) -> dict[str, Any]:
    """``scale``, ``translate`` and (when the direction is not identity) ``affine`` of a napari layer.

    napari maps data to world as ``affine @ (scale * index + translate)``. With ``scale`` =
    spacing and ``translate`` = origin, the physical position ``origin + D @ (spacing * index)``
    needs ``affine = [[D, origin - D @ origin], [0, 1]]``; for an identity direction that is the
    identity, and no affine is given. ``layer_axes``: the layer's dimensions (the image's axes
    without an RGB "C"); non-spatial ones (T, C) get scale 1, translate 0 and no rotation.
    """
    axes = layer_axes if layer_axes is not None else (image.axes or "")
    n = len(axes)
    scale = np.ones(n)
    translate = np.zeros(n)
    if not image.has_geometry:
        return {"scale": scale.tolist(), "translate": translate.tolist()}
    sp_axes = image.spatial_axes
    idx = [axes.index(a) for a in sp_axes]
    scale[idx] = image.spacing
    translate[idx] = image.origin if image.origin is not None else 0.0
    out: dict[str, Any] = {"scale": scale.tolist(), "translate": translate.tolist()}
    d = image.direction_matrix()
    if not is_identity(d):
        full = np.eye(n)
        full[np.ix_(idx, idx)] = d
        affine = np.eye(n + 1)
        affine[:n, :n] = full
        affine[:n, n] = translate - full @ translate
        out["affine"] = affine
    return out


def geometry_matches(a: dict[str, Any], b: dict[str, Any], tol: float = GEOMETRY_TOLERANCE) -> bool:
    """True when two ``geometry()`` dicts place voxels at the same physical positions."""
    if list(a.get("shape") or []) != list(b.get("shape") or []):
        return False
    ma = affine_matrix(a["spacing"], a["origin"], a["direction"])
    mb = affine_matrix(b["spacing"], b["origin"], b["direction"])
    scale = max(1.0, float(np.abs(ma).max()), float(np.abs(mb).max()))
    return bool(np.allclose(ma, mb, rtol=0, atol=tol * scale))


def planes_last(axes: str) -> tuple[tuple[int, ...], str]:
    """The transpose that puts Y and X last among the non-channel axes, and the axes after it.

    The engine segments Y-X planes and wants Y, X last (a C axis may follow or precede them).
    Naming a volume's axes differently (``--axes YZX`` for an array stored (Z, Y, X)) chooses
    other planes: the array is transposed so the new Y and X come last, and the labels are
    transposed back with ``np.argsort`` of the perm without C. Returns (perm, axes after the
    transpose); the identity when Y and X are already last.
    """
    axes = axes.upper()
    if not {"Y", "X"} <= set(axes):
        raise UserError(f"Axes {axes!r} must include Y and X.")
    core = [a for a in axes if a != "C"]
    if core[-2:] == ["Y", "X"]:
        return tuple(range(len(axes))), axes
    order = [a for a in axes if a not in "YXC"] + (["C"] if "C" in axes else []) + ["Y", "X"]
    return tuple(axes.index(a) for a in order), "".join(order)
