"""Random patch transforms: geometry for image and labels together, intensity for the image only.

Every draw comes from the ``numpy.random.Generator`` passed in, which the dataset derives from
(seed, sample index): the same sample is augmented the same way in every run, which is what makes
a resumed run repeat the uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from napari_madgnet.training.config import AugmentConfig


def crop_side(size: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[int, float, float]:
    """Side of the source crop for an output patch of ``size``, the zoom and the rotation angle.

    A rotated patch needs a larger source so that no corner comes from outside it.
    """
    lo, hi = cfg.scale_range
    zoom = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)
    angle = float(rng.uniform(-cfg.rotate_degrees, cfg.rotate_degrees)) if cfg.rotate_degrees else 0.0
    side = size * zoom
    if angle:
        rad = math.radians(abs(angle))
        side = side * (math.cos(rad) + math.sin(rad))
    return math.ceil(side), zoom, angle


def rotate_center_crop(
    arrays: list[np.ndarray], orders: list[int], angle: float, side: int
) -> list[np.ndarray]:
    """Rotate (C, S, S) arrays about the centre and crop the central ``side`` x ``side``."""
    out = []
    for arr, order in zip(arrays, orders, strict=True):
        if angle:
            arr = ndimage.rotate(
                arr, angle, axes=(1, 2), reshape=False, order=order, mode="constant", cval=0.0
            )
        s = arr.shape[1]
        o = (s - side) // 2
        out.append(arr[:, o : o + side, o : o + side])
    return out


def flips(arrays: list[np.ndarray], cfg: AugmentConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Horizontal/vertical flips and 90-degree turns, the same for every array."""
    h = cfg.hflip and rng.random() < 0.5
    v = cfg.vflip and rng.random() < 0.5
    k = int(rng.integers(4)) if cfg.rot90 else 0
    out = []
    for a in arrays:
        if h:
            a = a[:, :, ::-1]
        if v:
            a = a[:, ::-1, :]
        if k:
            a = np.rot90(a, k, axes=(1, 2))
        out.append(np.ascontiguousarray(a))
    return out


def intensity(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, gamma and noise on a [0, 1] image; result clipped to [0, 1]."""
    img = image
    if cfg.contrast:
        c = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
        mean = img.mean()
        img = (img - mean) * c + mean
    if cfg.brightness:
        img = img + rng.uniform(-cfg.brightness, cfg.brightness)
    img = np.clip(img, 0.0, 1.0)
    if cfg.gamma:
        img = img ** math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    if cfg.noise:
        img = img + rng.normal(0.0, cfg.noise, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
