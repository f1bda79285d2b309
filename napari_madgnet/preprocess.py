"""Intensity normalisation: raw pixels of any dtype to float32 in [0, 1].

The released MADGNet was trained on 8-bit images divided by 255 with no mean/std normalisation
("scale255"). Microscopy, CT and 16-bit or float data need a robust range instead ("percentile",
or a CT window in Hounsfield units). Fitting (finding the range) is separate from applying it so
that tiles and slices of one image are scaled identically, and so training and inference share
exactly the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: CT windows as (centre, width) in Hounsfield units, the usual radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct-soft-tissue": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
    "ct-mediastinum": (50.0, 350.0),
}
METHODS: tuple[str, ...] = ("auto", "scale255", "percentile", "minmax", "none", *CT_WINDOWS)

#: Fitting a range reads at most about this many pixels, so huge lazy stacks stay cheap.
_FIT_SAMPLE = 4_000_000


@dataclass(frozen=True)
class Normalization:
    """How to map raw intensities to [0, 1].

    ``method``: ``auto`` (8-bit and bool: scale255; everything else: percentile), ``scale255``
    (the release's protocol), ``percentile`` (robust: ``low``..``high`` percentiles of the finite
    pixels), ``minmax``, ``none`` (data already in [0, 1]), or a CT window from ``CT_WINDOWS``
    (or ``window=(centre, width)`` with method ``ct``).
    """

    method: str = "auto"
    low: float = 1.0
    high: float = 99.8
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS and self.method != "ct":
            raise ValueError(f"Unknown normalisation {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.method == "ct" and self.window is None:
            raise ValueError("Normalisation 'ct' needs window=(centre, width) in Hounsfield units.")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"Percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}.")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "low": self.low, "high": self.high, "window": self.window}

    @classmethod
    def from_value(cls, value: Normalization | str | dict[str, Any] | None) -> Normalization:
        """Accept the forms users and checkpoints write: an instance, a name, or a dict."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(method=value)
        data = dict(value)
        if data.get("window") is not None:
            data["window"] = tuple(data["window"])
        return cls(**{k: data[k] for k in ("method", "low", "high", "window") if k in data})


def resolve_method(norm: Normalization, dtype: np.dtype) -> str:
    """The concrete method ``auto`` stands for with data of this dtype."""
    if norm.method != "auto":
        return norm.method
    return "scale255" if np.dtype(dtype) in (np.dtype(np.uint8), np.dtype(bool)) else "percentile"


def _sample(image: Any) -> np.ndarray:
    """A strided subsample of at most about ``_FIT_SAMPLE`` pixels, read lazily where possible."""
    size = math.prod(image.shape)
    if size <= _FIT_SAMPLE:
        return np.asarray(image)
    step = max(1, math.ceil((size / _FIT_SAMPLE) ** (1.0 / image.ndim)))
    return np.asarray(image[tuple(slice(None, None, step) for _ in image.shape)])


def fit_range(image: Any, norm: Normalization | str | None = None) -> tuple[float, float]:
    """The (low, high) raw intensities that ``apply_range`` maps to 0 and 1.

    Raises ValueError for empty or all-NaN input, naming the problem.
    """
    norm = Normalization.from_value(norm)
    if math.prod(image.shape) == 0:
        raise ValueError(f"The image is empty (shape {tuple(image.shape)}); nothing to normalise.")
    method = resolve_method(norm, image.dtype)
    if method == "scale255":
        return 0.0, 255.0 if image.dtype != bool else 1.0
    if method == "none":
        return 0.0, 1.0
    if method == "ct" or method in CT_WINDOWS:
        centre, width = norm.window if method == "ct" else CT_WINDOWS[method]
        return centre - width / 2.0, centre + width / 2.0
    sample = _sample(image)
    if sample.dtype == bool:
        return 0.0, 1.0
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if finite.size == 0:
        raise ValueError("The image has no finite values (all NaN or Inf); check the data or its reader.")
    finite = finite.astype(np.float64, copy=False)
    if method == "minmax":
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = (float(v) for v in np.percentile(finite, [norm.low, norm.high]))
        if hi <= lo:  # very sparse images: fall back to the full range
            lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0  # a constant image maps to 0 instead of dividing by zero
    return lo, hi


def apply_range(block: Any, lo: float, hi: float) -> np.ndarray:
    """Scale ``block`` so ``lo`` -> 0 and ``hi`` -> 1, clip to [0, 1], and zero NaN/Inf."""
    arr = np.asarray(block)
    out = arr.astype(np.float32, copy=True) if arr.dtype != np.float32 else arr.copy()
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def normalize(image: Any, norm: Normalization | str | None = None) -> np.ndarray:
    """Fit and apply in one call, for arrays that fit in memory."""
    lo, hi = fit_range(image, norm)
    return apply_range(image, lo, hi)
