"""A layer's pixel size and its unit, for measurements and comparisons in physical units.

napari places a layer with ``scale`` (the pixel size per dimension: the plugin's reader puts a
scan's spacing there, ``imagefile.napari_transform``) and, since napari 0.5, names the unit in
``units``. The medical reader also records the scan's geometry (unit included) in the layer's
metadata. A rotation in ``affine`` does not change distances, so the scale is the spacing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_madgnet.imagefile import GEOMETRY_KEY

#: napari's name for "no physical unit".
_NO_UNIT = {"pixel", "px", "", "dimensionless"}


def layer_spacing(layer: Any) -> tuple[float, ...] | None:
    """The layer's pixel size per dimension (its ``scale``), or None when it is 1 everywhere
    (then measurements are in pixels)."""
    scale = np.abs(np.asarray(layer.scale, dtype=float))
    return None if np.allclose(scale, 1.0) else tuple(float(s) for s in scale)


def layer_unit(layer: Any) -> str:
    """The unit of the layer's scale in plain letters ("mm", "um"), or "" when unknown.

    From napari's ``layer.units`` when one physical unit is set for all dimensions, else from the
    scan geometry the plugin's reader stored in the metadata.
    """
    names: set[str] = set()
    for unit in getattr(layer, "units", None) or ():
        text = f"{unit:~}" if hasattr(unit, "dimensionality") else str(unit)
        if text not in _NO_UNIT:
            names.add(text)
    if len(names) == 1:
        return names.pop().replace("µ", "u").replace("μ", "u")
    geometry = (getattr(layer, "metadata", None) or {}).get(GEOMETRY_KEY)
    unit = geometry.get("unit") if isinstance(geometry, dict) else None
    return str(unit).replace("µ", "u").replace("μ", "u") if unit else ""
