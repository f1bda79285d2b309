"""Probabilities to a label image: threshold, clean up, optionally number the objects.

Separate from the network on purpose: the widget re-runs it when a slider moves, on the cached
probabilities, in milliseconds. Everything is done plane by plane (segmentation is 2-D), so a
stack stored in zarr is processed without loading it whole.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import ndimage

from napari_madgnet.errors import UserError
from napari_madgnet.inference.config import PostprocessConfig
from napari_madgnet.inference.instances import components, watershed_instances


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    labels, n = ndimage.label(mask)  # 4-connectivity, as skimage's default
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels, n, sizes


def clean_mask(mask: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """Fill holes, drop small objects, keep the largest: one boolean 2-D mask."""
    if config.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if config.min_size > 1 or config.largest:
        labels, n, sizes = _components(mask)
        if n:
            keep = sizes >= max(config.min_size, 1)
            if config.largest:
                keep = np.zeros_like(keep)
                if sizes.max() >= max(config.min_size, 1):
                    keep[int(np.argmax(sizes))] = True
            keep[0] = False
            mask = keep[labels]
    return mask


def label_dtype(n_classes: int, instances: bool) -> np.dtype:
    """uint8 for class ids (up to 255 classes), int32 for instance ids (napari Labels' favourite)."""
    if instances or n_classes > 254:
        return np.dtype(np.int32)
    return np.dtype(np.uint8)


def postprocess_plane(prob: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) class ids 0..K; class k+1 painted after k, so it wins."""
    labels = np.zeros(prob.shape[1:], dtype=label_dtype(prob.shape[0], False))
    for k in range(prob.shape[0]):
        mask = clean_mask(np.asarray(prob[k]) > config.threshold, config)
        labels[mask] = k + 1
    return labels


def instance_method(instances: bool | str, have_distance: bool, head_weight: float = 0.5) -> str | None:
    """The objects method ``instances`` means: None (class ids), "components" or "watershed".

    ``True`` is the default: watershed when the distance map is there (the engine keeps it for
    models trained with the distance head), else components. Asking for "watershed" with a
    ``head_weight`` > 0 without a distance map raises ``UserError``.
    """
    if instances is False:
        return None
    if instances is True:
        return "watershed" if have_distance else "components"
    if instances == "watershed" and not have_distance and head_weight > 0:
        raise UserError(
            "Watershed instances need the predicted distance map, which this result does not hold: "
            "segment again with instances 'watershed' (the engine then keeps the distance map), use "
            "head_weight 0 (the mask's own distance only), or instances 'components'."
        )
    return str(instances)


def _plane(array: Any, idx: tuple[int, ...]) -> np.ndarray | None:
    return None if array is None else np.asarray(array[(slice(None), *idx)])


def postprocess(
    probabilities: Any,
    config: PostprocessConfig | None = None,
    *,
    out: Any = None,
    distance: Any = None,
    boundary: Any = None,
) -> Any:
    """Label image from (K, ..., H, W) probabilities, without running the network again.

    Returns class ids (0 background, k for class k), or, with ``config.instances``, objects
    numbered 1..N uniquely over the whole stack (objects of different classes get different
    numbers): connected components, or the watershed of ``inference.instances`` on ``distance``
    (and ``boundary``), the (K, ..., H, W) head maps the engine cached beside the probabilities.
    ``out``: a preallocated array (numpy or zarr) of shape (..., H, W). Raises ``UserError``
    for a watershed without a distance map, ValueError for mismatched shapes.
    """
    config = config or PostprocessConfig()
    shape = tuple(probabilities.shape)
    if len(shape) < 3:
        raise ValueError(
            f"probabilities must be (classes, ..., H, W), got shape {shape}; "
            "add the class axis with probabilities[None]."
        )
    for name, array in (("distance", distance), ("boundary", boundary)):
        if array is not None and tuple(array.shape) != shape:
            raise ValueError(f"the {name} maps have shape {tuple(array.shape)}, the probabilities {shape}.")
    method = instance_method(config.instances, distance is not None, config.head_weight)
    n_classes = shape[0]
    dtype = label_dtype(n_classes, method is not None)
    if out is None:
        out = np.zeros(shape[1:], dtype=dtype)
    elif tuple(out.shape) != shape[1:]:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape[1:]}.")
    next_id = 0
    for idx in itertools.product(*(range(n) for n in shape[1:-2])):
        plane = postprocess_plane(np.asarray(probabilities[(slice(None), *idx)]), config)
        if method is not None:
            dist, bnd = _plane(distance, idx), _plane(boundary, idx)
            inst = np.zeros(plane.shape, dtype=np.int32)
            for k in range(1, n_classes + 1):
                if method == "watershed":
                    lab, n = watershed_instances(
                        plane == k,
                        None if dist is None else dist[k - 1],
                        None if bnd is None else bnd[k - 1],
                        peak_height=config.peak_height,
                        boundary_barrier=config.boundary_barrier,
                        head_weight=config.head_weight if dist is not None else 0.0,
                    )
                else:
                    lab, n = components(plane == k)
                if n:
                    inst[lab > 0] = lab[lab > 0] + next_id
                    next_id += n
            plane = inst
        out[idx] = plane.astype(out.dtype, copy=False)
    return out
