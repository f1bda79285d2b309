"""Moving the viewer to a place in a layer: a slice (the dims sliders) or a region (camera).

The places come from the core in the layer's data coordinates (pixel indices: a plane index
along the stack axes, a box or a centre in Y-X). They are mapped to world coordinates through
the layer's own transform (``layer.data_to_world``: scale, translate, affine), so anisotropic
and shifted layers land right. Only the axes that are not displayed move the sliders; the
displayed ones move the camera. Qt-free: it talks to napari's viewer model only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_madgnet.widgets._scope import viewer_camera

#: Share of the canvas a region fills after "go to" (the rest shows its surroundings).
FILL = 0.8


def _world_point(layer: Any, data_point: Sequence[float]) -> np.ndarray:
    return np.asarray(layer.data_to_world(np.asarray(data_point, dtype=float)), dtype=float)


def _viewer_axis(viewer: Any, layer: Any, layer_axis: int) -> int:
    """The viewer dimension of a layer dimension (layers with fewer dims sit in the last ones)."""
    return viewer.dims.ndim - layer.ndim + layer_axis


def go_to(
    viewer: Any,
    layer: Any,
    data_point: Sequence[float],
    extent: Sequence[float] | None = None,
) -> np.ndarray:
    """Show ``data_point`` (one value per layer dimension, data coordinates) of ``layer``.

    The sliders of the dimensions not on screen move to the point; the camera centres on it in
    the displayed ones. ``extent``: the size (data pixels, one per layer dimension; displayed
    ones used) of a region to fit on the canvas (``FILL`` of it); None keeps the zoom.
    Returns the point in world coordinates.
    """
    world = _world_point(layer, data_point)
    displayed = list(viewer.dims.displayed)
    for i, value in enumerate(world):
        axis = _viewer_axis(viewer, layer, i)
        if axis >= 0 and axis not in displayed:
            viewer.dims.set_point(axis, float(value))
    camera = viewer_camera(viewer)
    layer_displayed = [d - (viewer.dims.ndim - layer.ndim) for d in displayed]
    if all(0 <= d < layer.ndim for d in layer_displayed):
        camera.center = tuple(float(world[d]) for d in layer_displayed)
        if extent is not None:
            _fit(viewer, camera, layer, layer_displayed, extent)
    return world


def _fit(viewer: Any, camera: Any, layer: Any, dims: list[int], extent: Sequence[float]) -> None:
    """Zoom so that a box of ``extent`` data pixels fills ``FILL`` of the canvas."""
    size = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
    if size is None:
        return
    scale = np.abs(np.asarray(layer.scale, dtype=float))
    canvas = [float(v) for v in size][-2:]
    world_extent = [max(float(extent[d]) * scale[d], 1e-9) for d in dims[-2:]]
    camera.zoom = FILL * min(c / e for c, e in zip(canvas, world_extent, strict=True))


def plane_point(layer: Any, index: Sequence[int], box: Sequence[int] | None = None) -> list[float]:
    """A data point on the plane ``index`` (leading axes) at the centre of ``box`` (y0, x0, y1, x1;
    None: the plane's centre)."""
    shape = tuple(layer.data.shape)
    h, w = shape[len(index)], shape[len(index) + 1]
    y0, x0, y1, x1 = box if box is not None else (0, 0, h, w)
    return [*map(float, index), (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2]


def go_to_plane(viewer: Any, layer: Any, index: Sequence[int]) -> np.ndarray:
    """Move the sliders to plane ``index`` (leading axes of ``layer``) and keep the view."""
    point = plane_point(layer, index)
    world = _world_point(layer, point)
    displayed = set(viewer.dims.displayed)
    for i in range(len(index)):
        axis = _viewer_axis(viewer, layer, i)
        if axis >= 0 and axis not in displayed:
            viewer.dims.set_point(axis, float(world[i]))
    return world
