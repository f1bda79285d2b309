"""Deep-supervision targets of E-SDM: the mask, its boundary and its inner distance map.

How the release built them is not published. This follows the same authors' earlier IS2D
projects, documented in the reference notes as a default: boundary = Sobel magnitude of the mask
>= 0.5 (about 2 px wide, one pixel each side of the edge); distance = Euclidean distance transform
inside the object, min-max scaled to [0, 1] per image and channel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def boundary_target(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(K, H, W) binary masks -> (K, H, W) float32 boundary bands.

    ``mode="nearest"`` keeps the image border from counting as an edge.
    """
    out = np.zeros(mask.shape, np.float32)
    for k, m in enumerate(np.asarray(mask, np.float32)):
        gy = ndimage.sobel(m, axis=0, mode="nearest")
        gx = ndimage.sobel(m, axis=1, mode="nearest")
        out[k] = np.hypot(gx, gy) >= threshold
    return out


def distance_target(mask: np.ndarray) -> np.ndarray:
    """(K, H, W) binary masks -> (K, H, W) float32 inner distances scaled to [0, 1] per channel."""
    out = np.zeros(mask.shape, np.float32)
    for k, m in enumerate(np.asarray(mask) > 0.5):
        if not m.any():
            continue
        d = ndimage.distance_transform_edt(m)
        lo, hi = float(d.min()), float(d.max())
        if hi > lo:
            out[k] = (d - lo) / (hi - lo)
    return out


def labels_to_masks(labels: np.ndarray, mode: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels (H, W) -> target masks (K, H, W) and the valid-pixel mask (K, H, W).

    - ``binary``: labels > 0 (instance ids all count as foreground).
    - ``multiclass``: channel k is ``labels == k + 1``.
    - ``nested``: channel k is ``labels >= k + 1``, for structures inside structures (optic disc
      and cup: paint the disc as 1 and the cup over it as 2; the disc channel then covers the cup).
    - ``scribble``: 1 = object, 2 = background, 0 = not annotated (ignored by the loss).
    """
    lab = np.asarray(labels)
    shape = (num_classes, *lab.shape)
    if mode == "binary":
        return (lab > 0)[None].astype(np.float32), np.ones((1, *lab.shape), np.float32)
    if mode == "scribble":
        return (lab == 1)[None].astype(np.float32), (lab > 0)[None].astype(np.float32)
    ks = np.arange(1, num_classes + 1).reshape(-1, 1, 1)
    target = (lab[None] == ks) if mode == "multiclass" else (lab[None] >= ks)
    return target.astype(np.float32), np.ones(shape, np.float32)
