"""Conventions shared by the measurement and QC modules: axes, units and what an object is.

- **Axes**: a string of one letter per array axis, ending in ``"YX"``; the letters before it may
  be ``"Z"`` (a spatial axis) and ``"T"`` (time, never treated as space: each time point is
  measured or compared on its own). Defaults: ``"YX"`` for 2-D arrays, ``"ZYX"`` for 3-D,
  ``"TZYX"`` for 4-D. Label images have no channel axis.
- **Spacing**: one positive number per array axis (napari's ``layer.scale``); the entry of a
  ``"T"`` axis is ignored. None means 1 per axis and lengths in pixels.
- **Unit tag** in column names: ``"px"`` without spacing, else the given unit (``"mm"``,
  ``"um"`` for µm); ``"units"`` when a spacing is given without naming its unit.
- **Objects**: ``"labels"`` takes each label value as one object (instance labels, or one object
  per class); ``"components"`` splits each label value into its connected pieces (a binary mask
  becomes one object per connected blob); ``"auto"`` picks ``"components"`` for boolean masks and
  masks with a single foreground value, else ``"labels"``. Pieces are face-connected (4-connected
  in 2-D, 6-connected in 3-D) and numbered in raster order, as the post-processing of ``madgnet
  predict --instances`` (``scipy.ndimage.label``) numbers objects. Components are found per frame
  (time point, or plane when planes are measured separately).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.surface_metrics import SpacingLike, as_spacing

ObjectsMode = Literal["auto", "labels", "components"]
_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}


def resolve_axes(ndim: int, axes: str | None) -> str:
    """The axes string for an array of ``ndim`` axes (see the module docstring); ``UserError`` if invalid."""
    if axes is None:
        if ndim not in _DEFAULT_AXES:
            raise UserError(
                f"a label image with {ndim} axes: pass axes (e.g. 'TZYX'); 2-D to 4-D arrays are supported."
            )
        return _DEFAULT_AXES[ndim]
    ax = axes.upper()
    if len(ax) != ndim:
        raise UserError(f"axes {axes!r} has {len(ax)} letters but the array has {ndim} axes (shape needed).")
    if "C" in ax:
        raise UserError(f"axes {axes!r}: label images have no channel axis; compare or measure one channel.")
    if not ax.endswith("YX") or len(set(ax)) != len(ax) or set(ax) - set("TZYX"):
        raise UserError(f"axes {axes!r}: use distinct letters from T, Z, Y, X, ending in YX (e.g. 'ZYX').")
    if "T" in ax and ax[0] != "T":
        raise UserError(f"axes {axes!r}: put the time axis first (e.g. 'TZYX').")
    return ax


def axis_spacing(spacing: SpacingLike, axes: str) -> np.ndarray:
    """One spacing per axis of ``axes`` (float64; ``UserError`` for a wrong length or value)."""
    return as_spacing(spacing, len(axes))


def unit_tag(unit: str | None, spacing: SpacingLike) -> str:
    """The unit as written in column names: 'px', 'mm', 'um' (for µm), or 'units'."""
    if unit:
        tag = unit.strip().replace("µ", "u").replace("μ", "u")
        if not tag.isascii() or not tag.replace("_", "").isalnum():
            raise UserError(f"unit {unit!r}: use a plain name such as mm, um or px.")
        return tag
    return "px" if spacing is None else "units"


def check_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as an array, or ``UserError`` if it is not a label image (integers >= 0, booleans)."""
    lab = np.asarray(labels)
    if lab.dtype.kind not in "biu":
        raise UserError(
            f"a label image must hold integers or booleans, got {lab.dtype}; threshold probabilities first."
        )
    if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
        raise UserError("a label image must not hold negative values (0 is background).")
    return lab


def objects_mode(labels: np.ndarray, objects: ObjectsMode = "auto") -> Literal["labels", "components"]:
    """Resolve ``"auto"`` for the whole image (see the module docstring)."""
    if objects not in ("auto", "labels", "components"):
        raise UserError(f"objects must be 'auto', 'labels' or 'components', got {objects!r}.")
    if objects != "auto":
        return objects
    lab = check_labels(labels)
    if lab.dtype == bool:
        return "components"
    foreground = lab[lab > 0]  # one foreground value (1, or 255 in an 8-bit mask file): binary
    return "components" if foreground.size == 0 or foreground.min() == foreground.max() else "labels"


def instance_labels(labels: np.ndarray, objects: ObjectsMode = "auto") -> np.ndarray:
    """An integer label image whose values are the objects (see the module docstring).

    Apply it to one frame (time point, or plane when planes are measured separately) at a time:
    connected components of a whole stack would join pieces through the neighbouring frames.
    """
    lab = check_labels(labels)
    objects = objects_mode(lab, objects)
    if objects == "components":
        from skimage.measure import label

        # connectivity=1: face neighbours, as scipy.ndimage.label in the post-processing.
        return label(lab.astype(np.uint8) if lab.dtype == bool else lab, background=0, connectivity=1)
    return lab.astype(np.int64, copy=False) if lab.dtype == bool else lab


def iter_frames(array: np.ndarray, n_lead: int) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(index, sub-array)`` for every position of the first ``n_lead`` axes (one item if 0)."""
    if n_lead == 0:
        yield (), array
        return
    for idx in np.ndindex(*array.shape[:n_lead]):
        yield idx, array[idx]
