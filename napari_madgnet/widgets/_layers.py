"""Writing results into napari layers: names, placement, provenance, and respect for user edits.

A mask layer we wrote carries a small record in its metadata (``METADATA_KEY``): which image it
belongs to, the provenance of the run, and a hash of the data as we left it. The layer's paint
events mark it edited; a hash mismatch catches edits made another way (``layer.data = ...``).
An edited layer is never overwritten without asking.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

METADATA_KEY = "napari-madgnet"
#: Above this many bytes the hash is skipped (it would stall the GUI); paint events still count.
HASH_LIMIT = 16 * 1024 * 1024


def layer_data(layer: Any) -> Any:
    """The layer's full-resolution data as it is stored (numpy, dask, zarr): never read here, so
    that a large or lazy layer is read in a worker thread, not on the GUI thread."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_axes(layer: Any) -> str:
    """The axes of a layer's data in the core's vocabulary: RGB layers end in C; others as
    ``layout.guess_axes`` of the shape ("" when the shape cannot be segmented)."""
    from napari_madgnet.layout import guess_axes

    ndim = len(layer_data(layer).shape)
    if getattr(layer, "rgb", False):
        return {3: "YXC", 4: "ZYXC", 5: "TZYXC"}.get(ndim, "")
    try:
        return guess_axes(tuple(layer_data(layer).shape))
    except ValueError:
        return ""


def output_name(image_name: str, kind: str = "mask") -> str:
    """``<image> mask`` / ``<image> probability``: the names a re-run finds and updates."""
    return f"{image_name} {kind}"


def unique_name(viewer: Any, name: str) -> str:
    """``name``, or ``name [2]``, ``name [3]``... when the viewer already has it."""
    taken = {layer.name for layer in viewer.layers}
    if name not in taken:
        return name
    i = 2
    while f"{name} [{i}]" in taken:
        i += 1
    return f"{name} [{i}]"


def _drop_axis(values: np.ndarray, axis: int | None) -> list[float]:
    return [float(v) for i, v in enumerate(values) if i != axis]


def placement(image_layer: Any, channel_axis: int | None = None) -> dict[str, Any]:
    """scale, translate and affine of the image, without its channel axis when it has one.

    ``channel_axis``: a channel dimension of a non-RGB layer (e.g. C in "CYX"), which the mask
    does not have; RGB layers keep their colour axis out of their transforms already.
    """
    scale = np.asarray(image_layer.scale, dtype=float)
    translate = np.asarray(image_layer.translate, dtype=float)
    affine = np.asarray(image_layer.affine.affine_matrix, dtype=float)
    if channel_axis is not None:
        keep = [i for i in range(affine.shape[0]) if i != channel_axis]
        affine = affine[np.ix_(keep, keep)]
    return {
        "scale": _drop_axis(scale, channel_axis),
        "translate": _drop_axis(translate, channel_axis),
        "affine": affine,
    }


def data_hash(data: Any) -> str | None:
    """A hash of in-memory data up to ``HASH_LIMIT`` bytes; None when too large or lazy."""
    if not isinstance(data, np.ndarray) or data.nbytes > HASH_LIMIT:
        return None
    return hashlib.blake2b(np.ascontiguousarray(data).view(np.uint8), digest_size=16).hexdigest()


def record(layer: Any) -> dict[str, Any] | None:
    """Our record on a layer, or None for a layer we did not write."""
    meta = getattr(layer, "metadata", None) or {}
    value = meta.get(METADATA_KEY)
    return value if isinstance(value, dict) else None


def mark(layer: Any, **values: Any) -> None:
    """Store our record on ``layer`` and make its paint events flag it as edited (once)."""
    rec = dict(record(layer) or {})
    rec.update(values)
    rec["hash"] = data_hash(layer.data)
    rec["edited"] = False
    layer.metadata = {**layer.metadata, METADATA_KEY: rec}
    if not rec.get("listening"):
        paint = getattr(layer.events, "paint", None)
        if paint is not None:
            paint.connect(lambda _event=None, lyr=layer: _flag_edited(lyr))
        rec["listening"] = True


def _flag_edited(layer: Any) -> None:
    rec = record(layer)
    if rec is not None:
        rec["edited"] = True


def is_user_edited(layer: Any) -> bool:
    """True for a Labels layer someone else made or edited since we wrote it."""
    rec = record(layer)
    if rec is None or rec.get("role") != "mask":
        return True
    if rec.get("edited"):
        return True
    stored = rec.get("hash")
    if stored is None:
        return False
    return data_hash(layer.data) != stored


def find_layer(viewer: Any, name: str, layer_type: type) -> Any:
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, layer_type):
            return layer
    return None


def write_region(
    viewer: Any,
    *,
    layer: Any,
    name: str,
    full_shape: tuple[int, ...],
    region: tuple[Any, ...],
    values: np.ndarray,
    kind: str,
    place: dict[str, Any],
    metadata: dict[str, Any],
) -> Any:
    """Write ``values`` at ``region`` of ``layer`` (a full-size array), or of a new layer.

    ``kind``: "labels" or "image". A new layer is zero-filled outside the region, so a slice or
    a part of the view can be segmented alone. The dtype grows when needed (e.g. instance ids).
    Runs on the GUI thread: a copy and one assignment, no computation.
    """
    values = np.asarray(values)
    if layer is not None and tuple(layer.data.shape) == tuple(full_shape):
        data = layer.data
        dtype = np.result_type(data.dtype, values.dtype)
        if _is_whole(region):
            layer.data = values.astype(dtype, copy=False)
        elif isinstance(data, np.ndarray) and dtype == data.dtype:
            data[region] = values  # in place: a slice of a big stack costs a slice
            layer.refresh()
        else:
            data = np.asarray(data).astype(dtype)
            data[region] = values
            layer.data = data
        layer.metadata = {**layer.metadata, **metadata}
        return layer
    data = np.zeros(full_shape, dtype=values.dtype)
    data[region] = values
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    extra = {} if kind == "labels" else {"colormap": "magma", "blending": "additive", "opacity": 0.6}
    return add(data, name=unique_name(viewer, name), metadata=metadata, **place, **extra)


def _is_whole(region: tuple[Any, ...]) -> bool:
    return all(isinstance(k, slice) and k == slice(None) for k in region)
