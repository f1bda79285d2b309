"""Which part of a layer's data a run covers: the current slice, the whole stack, or the part in view.

Kept free of Qt: given the data's shape and axes, the viewer's current position (in the layer's
data coordinates) and the visible rectangle, it returns the index that cuts the input out and the
index where the result goes in the full-size output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SCOPES: tuple[str, ...] = ("current slice", "whole stack", "part in view")

#: The smallest crop worth segmenting: the network downsamples 32x.
MIN_VIEW = 32


@dataclass(frozen=True)
class Region:
    """``key`` cuts the input from the layer data; ``out_key`` places results in the output.

    ``axes``: the axes of the cut-out input (stack axes fixed to an index are gone).
    ``out_shape``: the full output shape (the data's without C).
    """

    key: tuple[Any, ...]
    out_key: tuple[Any, ...]
    axes: str
    out_shape: tuple[int, ...]

    @property
    def whole(self) -> bool:
        return all(isinstance(k, slice) and k == slice(None) for k in self.out_key)


def channel_axis(axes: str) -> int | None:
    return axes.index("C") if "C" in axes else None


def compute_region(
    shape: tuple[int, ...],
    axes: str,
    scope: str,
    position: np.ndarray | None = None,
    view: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Region:
    """The region of ``scope``.

    ``position``: the current point in data coordinates, one value per data axis (C ignored).
    ``view``: ((y0, y1), (x0, x1)) visible in data coordinates, for "part in view".
    Raises ValueError naming the fix when the view holds too little of the image.
    """
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; choose one of {', '.join(SCOPES)}.")
    if len(axes) != len(shape):
        raise ValueError(
            f"Axes {axes!r} name {len(axes)} dimensions but the layer has {len(shape)} (shape {shape}); "
            "correct the axes field."
        )
    pos = np.zeros(len(shape)) if position is None else np.asarray(position, dtype=float)
    key: list[Any] = []
    for i, a in enumerate(axes):
        if a in "TZ" and scope != "whole stack":
            key.append(int(np.clip(np.round(pos[i]), 0, shape[i] - 1)))
        else:
            key.append(slice(None))
    if scope == "part in view":
        if view is None:
            raise ValueError("The visible part of the view is unknown; use 'current slice' instead.")
        for axis_name, (lo, hi) in zip("YX", view, strict=True):
            i = axes.index(axis_name)
            a0 = int(np.clip(np.floor(min(lo, hi)), 0, shape[i]))
            a1 = int(np.clip(np.ceil(max(lo, hi)), 0, shape[i]))
            if a1 - a0 < MIN_VIEW:
                raise ValueError(
                    f"Only {max(0, a1 - a0)} px of the image along {axis_name} are in view (at least "
                    f"{MIN_VIEW} needed); zoom out or pan to the image, or use 'current slice'."
                )
            if (a0, a1) != (0, shape[i]):
                key[i] = slice(a0, a1)
    sub_axes = "".join(a for a, k in zip(axes, key, strict=True) if not isinstance(k, int))
    c = channel_axis(axes)
    out_key = tuple(k for i, k in enumerate(key) if i != c)
    out_shape = tuple(s for i, s in enumerate(shape) if i != c)
    return Region(tuple(key), out_key, sub_axes, out_shape)


Rect = tuple[tuple[float, float], tuple[float, float]]


def visible_rect(viewer: Any, layer: Any, axes: str) -> Rect | None:
    """The canvas rectangle in ``layer``'s data coordinates (Y, X), or None when not 2-D."""
    if viewer.dims.ndisplay != 2:
        return None
    size = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
    if size is None:
        return None
    h, w = (float(v) for v in size)
    camera = viewer_camera(viewer)
    zoom = float(camera.zoom)
    cy, cx = (float(v) for v in camera.center[-2:])
    point = np.asarray(viewer.dims.point, dtype=float)
    corners = []
    for dy, dx in ((-1, -1), (1, 1), (-1, 1), (1, -1)):
        p = point.copy()
        p[-2], p[-1] = cy + dy * h / 2 / zoom, cx + dx * w / 2 / zoom
        corners.append(layer_position(layer, p, axes))
    corners_arr = np.asarray(corners)
    yi, xi = axes.index("Y"), axes.index("X")
    return (
        (corners_arr[:, yi].min(), corners_arr[:, yi].max()),
        (corners_arr[:, xi].min(), corners_arr[:, xi].max()),
    )


def viewer_camera(viewer: Any) -> Any:
    """napari >= 0.9 keeps the camera on ``viewer.scene``; older versions on the viewer."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def layer_position(layer: Any, world_point: np.ndarray, axes: str) -> np.ndarray:
    """A world point in the layer's data coordinates, one value per data axis (0 for RGB's C)."""
    coords = list(np.asarray(layer.world_to_data(world_point), dtype=float))
    while len(coords) < len(axes):  # RGB: the colour axis is not a layer dimension
        coords.append(0.0)
    return np.asarray(coords[: len(axes)])
