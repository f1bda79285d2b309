"""``madgnet predict --measure``: the per-object table of each mask, beside it as CSV.

The same table as the Measure dock (``measure.measure_objects``: area or volume, equivalent
diameter and centroid in the image file's physical units, mean/min/max intensity of the image);
only the file's geometry is read here: its spacing per spatial axis and its unit. A binary mask
is measured per connected object (``objects="auto"``), numbered as ``--instances components``
would number it; instance masks by their label values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def mask_spacing(image: Any, mask_axes: str) -> tuple[tuple[float, ...] | None, str | None]:
    """The pixel size per axis of the mask (1 for T) and its unit, from an ``ImageFile``'s
    geometry; (None, None) when the file has none (then the table is in pixels)."""
    if image.spacing is None or not image.axes:
        return None, None
    spatial = image.spatial_axes
    spacing = tuple(float(image.spacing[spatial.index(a)]) if a in spatial else 1.0 for a in mask_axes)
    return spacing, image.unit


def intensity_for(image: Any, mask: np.ndarray, axes: str | None) -> np.ndarray | None:
    """The image's pixels on the mask's grid (channels last), or None when they do not line up."""
    data = np.asarray(image.data)
    if axes and "C" in axes:
        data = np.moveaxis(data, axes.index("C"), -1)
    if data.shape == mask.shape or (data.ndim == mask.ndim + 1 and data.shape[:-1] == mask.shape):
        return data
    return None


def write_measurements(
    path: Path, mask: np.ndarray, image: Any, axes: str | None, *, overwrite: bool
) -> Path:
    """Measure ``mask`` (in ``axes`` order, C dropped) of ``image`` (an ``ImageFile``) into ``path``."""
    from napari_madgnet.measure import measure_to_csv

    mask_axes = axes.replace("C", "") if axes else None
    spacing, unit = mask_spacing(image, mask_axes) if mask_axes else (None, None)
    if spacing is not None and np.allclose(spacing, 1.0) and not unit:
        spacing = None
    return measure_to_csv(
        mask,
        intensity_for(image, mask, axes),
        path,
        spacing,
        unit=unit,
        axes=mask_axes,
        objects="auto",
        overwrite=overwrite,
    )
