"""Per-object measurements of a label image: size, equivalent diameter, centroid, intensities.

The numbers come from ``skimage.measure.regionprops_table`` with its ``spacing`` argument, so
area/volume and centroid are in physical units when a spacing is given. The result is a dict of
equal-length columns (a table): written to CSV by ``write_csv``/``measure_to_csv`` and shown in
napari through ``napari_features`` (napari matches feature rows to label values by an ``index``
column).

Two ways to measure a stack (axes ``"ZYX"``):

- ``per_plane=False`` (default): objects are n-D; a label value is one object across planes and
  its size is a volume. Right for 3-D segmentations and for plane-by-plane segmentations whose
  labels were linked across planes. Use ``objects="components"`` to make each 3-D connected piece
  (connected in Z too) its own object.
- ``per_plane=True``: each Y-X plane is measured on its own; a row is one object in one plane,
  with the plane index (column ``z``) and its size as an area. Right for stacks of independent
  2-D segmentations, where the same label value in two planes is not the same object.

A ``"T"`` axis is never spatial: each time point is measured on its own (column ``t``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.labelutils import (
    ObjectsMode,
    axis_spacing,
    check_labels,
    instance_labels,
    iter_frames,
    objects_mode,
    resolve_axes,
    unit_tag,
)
from napari_madgnet.surface_metrics import SpacingLike
from napari_madgnet.tables import Table, write_csv

_SIZE_NAME = {2: "area", 3: "volume"}
_INTENSITY = (
    ("intensity_mean", "mean_intensity"),
    ("intensity_min", "min_intensity"),
    ("intensity_max", "max_intensity"),
)
_INTEGER_COLUMNS = ("label", "t", "z", "pixels", "voxels")


def measure_objects(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    spacing: SpacingLike = None,
    axes: str | None = None,
    unit: str | None = None,
    per_plane: bool = False,
    objects: ObjectsMode = "labels",
) -> dict[str, np.ndarray]:
    """Measure every object of ``labels``; returns columns (name -> 1-D array), one row per object.

    ``labels``: integer (or boolean) label image, 0 = background, 2-D to 4-D (see ``axes``).
    ``image``: optional intensity image of the same shape, or with one extra last axis of
    channels (RGB); adds ``mean_intensity``, ``min_intensity``, ``max_intensity`` (``_c0``...
    per channel) in the image's own values.
    ``spacing``: pixel size per axis (napari's ``layer.scale``), a number for isotropic pixels, or
    None (sizes in pixels). ``unit``: the spacing's unit for the column names (``"mm"``, ``"um"``).
    ``axes``: e.g. ``"ZYX"``, ``"TYX"``, ``"TZYX"`` (default by dimension: YX, ZYX, TZYX).
    ``per_plane``: measure each Y-X plane separately (see the module docstring).
    ``objects``: ``"labels"`` (default: each label value is an object), ``"components"`` (each
    connected piece is), or ``"auto"`` (components for binary masks).

    Columns, in order: ``t``/``z`` (frame or plane index, when iterated), ``label``, the size
    (``area_<u>2`` in 2-D, ``volume_<u>3`` in 3-D, or ``area_px``/``volume_vox`` without a
    spacing), ``pixels``/``voxels`` (count), ``equivalent_diameter_<u>`` (the diameter of the disc
    or ball of the same size), ``centroid_<axis>_<u>`` for each spatial axis (index x spacing;
    for planes, the plane's position), then the intensities. Raises ``UserError`` for non-integer
    labels, a shape mismatch, bad axes or spacing.
    """
    from skimage.measure import regionprops_table

    lab = check_labels(labels)
    mode = objects_mode(lab, objects)  # "auto" decided on the whole image, applied per frame
    ax = resolve_axes(lab.ndim, axes)
    sp = axis_spacing(spacing, ax)
    tag = unit_tag(unit, spacing)
    img = _check_image(image, lab.shape)
    n_lead = len(ax) - 2 if per_plane else (1 if ax.startswith("T") else 0)
    spatial = ax[n_lead:]
    sp_spatial = sp[n_lead:]
    d = len(spatial)
    size_col = _size_column(d, tag)
    cols: dict[str, list] = {c: [] for c in (*[a.lower() for a in ax[:n_lead]], "label", size_col)}
    cols["voxels" if d == 3 else "pixels"] = []
    cols[f"equivalent_diameter_{tag}"] = []
    cent_axes = [a for a in ax if a != "T"] if per_plane else list(spatial)
    for a in cent_axes:
        cols[f"centroid_{a.lower()}_{tag}"] = []
    props = ["label", "area", "centroid", "num_pixels"]
    if img is not None:
        props += [p for p, _ in _INTENSITY]
    n_channels = 0 if img is None else (img.shape[-1] if img.ndim > lab.ndim else 1)
    for _, col in _INTENSITY if img is not None else ():
        for c in range(n_channels):
            cols[col if n_channels == 1 else f"{col}_c{c}"] = []
    for idx, frame in iter_frames(lab, n_lead):
        if not frame.any():
            continue
        intensity = None if img is None else img[idx]
        table = regionprops_table(
            instance_labels(frame, mode), intensity, properties=props, spacing=tuple(sp_spatial)
        )
        n = len(table["label"])
        for a, i in zip(ax[:n_lead], idx, strict=True):
            cols[a.lower()].extend([i] * n)
        cols["label"].extend(table["label"].tolist())
        cols[size_col].extend(table["area"].tolist())
        cols["voxels" if d == 3 else "pixels"].extend(table["num_pixels"].tolist())
        cols[f"equivalent_diameter_{tag}"].extend(_equivalent_diameter(np.asarray(table["area"]), d))
        for a in cent_axes:
            key = f"centroid_{a.lower()}_{tag}"
            if a in spatial:
                cols[key].extend(table[f"centroid-{spatial.index(a)}"].tolist())
            else:  # a plane's position along an iterated spatial axis
                cols[key].extend([idx[ax.index(a)] * float(sp[ax.index(a)])] * n)
        for p_name, col in _INTENSITY if img is not None else ():
            for c in range(n_channels):
                key = p_name if n_channels == 1 else f"{p_name}-{c}"
                cols[col if n_channels == 1 else f"{col}_c{c}"].extend(table[key].tolist())
    return {k: np.asarray(v, np.int64 if k in _INTEGER_COLUMNS else np.float64) for k, v in cols.items()}


def _size_column(ndim: int, tag: str) -> str:
    if tag == "px":
        return "volume_vox" if ndim == 3 else "area_px"
    return f"{_SIZE_NAME[ndim]}_{tag}{ndim}"


def _equivalent_diameter(size: np.ndarray, ndim: int) -> list[float]:
    """Diameter of the n-ball with the given n-volume (2 sqrt(A/pi) in 2-D, (6V/pi)^(1/3) in 3-D)."""
    unit_ball = math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1)
    return (2.0 * (size / unit_ball) ** (1.0 / ndim)).tolist()


def _check_image(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if image is None:
        return None
    img = np.asarray(image)
    if img.shape != shape and not (img.ndim == len(shape) + 1 and img.shape[:-1] == shape):
        raise UserError(
            f"the image has shape {img.shape} but the labels {shape}; measure with the image the labels "
            "were made from (same shape, or with one extra last axis of channels)."
        )
    if img.dtype == bool:
        img = img.astype(np.uint8)
    return img


def napari_features(table: Table) -> dict[str, np.ndarray]:
    """The table as a napari Labels ``features`` dict: an ``index`` column (the label values) first.

    napari matches feature rows to label values through ``index``. A label value may appear only
    once: a per-plane table whose planes reuse label values cannot be shown as features (raises
    ``UserError``; measure in 3-D or relabel the stack so that values are unique).
    """
    cols = dict(table)
    labels = np.asarray(cols.get("label", []))
    if labels.size != np.unique(labels).size:
        raise UserError(
            "label values repeat in this table (per-plane measurements of a stack whose planes reuse "
            "values); napari's features need one row per label value: measure in 3-D or relabel."
        )
    return {"index": labels, **cols}


def measure_to_csv(
    labels: np.ndarray,
    image: np.ndarray | None,
    path: str | os.PathLike[str],
    spacing: SpacingLike = None,
    *,
    unit: str | None = None,
    axes: str | None = None,
    per_plane: bool = False,
    objects: ObjectsMode = "auto",
    overwrite: bool = False,
) -> Path:
    """``measure_objects`` written to ``path`` as CSV (atomic; an existing file is kept unless
    ``overwrite``; ``FileExistsError`` then). Returns the path. For ``madgnet predict --measure``.

    ``objects`` defaults to ``"auto"`` here: a binary mask is measured per connected object,
    numbered as ``madgnet predict --instances`` would number it; instance labels as they are.
    """
    table = measure_objects(
        labels, image, spacing=spacing, axes=axes, unit=unit, per_plane=per_plane, objects=objects
    )
    return write_csv(table, path, overwrite=overwrite)
