"""Intensity normalisation: raw pixels of any dtype to float32 in [0, 1].

The released MADGNet was trained on 8-bit images divided by 255 with no mean/std normalisation
("scale255"). Microscopy, CT and 16-bit or float data need a robust range instead ("percentile",
or a CT window in Hounsfield units). Fitting (finding the range) is separate from applying it so
that tiles and slices of one image are scaled identically, and so training and inference share
exactly the same code (``fit_ranges`` for a whole image or stack, the range plan's ``read`` per plane).

**Images with no signal.** A data-driven range (percentile, minmax) stretches whatever it finds to
[0, 1]: a tile of camera noise (uint16 1000..1002) would look like a full-contrast image and a
nuclei model would label most of it. So a fitted range is only stretched when it is wider than a
minimum, ``max(MIN_LEVELS x the dtype's step, min_snr x the noise level)``:

- the dtype's step is one grey level for integers and the float spacing at the data's magnitude for
  floats (so a constant image of any magnitude, 1e20 in float32 or 1e300 in float64, is caught);
- the noise level is a robust standard deviation: the median absolute response of Immerkaer's 3 x 3
  noise operator (J. Immerkaer, "Fast noise variance estimation", CVIU 64(2), 1996) scaled to a
  Gaussian sigma (median |r| / (0.6745 x 6)); a median, so objects and edges covering less than
  half of the image do not raise it.

Pure noise spans about 5 sigma between the 1st and 99.8th percentile (2.7 to 5.3 measured on
uniform, Gaussian and Poisson noise; about 10 sigma from min to max on 4 M pixels), the bundled
nuclei image 40 sigma, and the scikit-image sample images 77 to 800 sigma; ``min_snr`` = 12 lies
between them. Below the minimum the range is not stretched: it keeps its low end and is widened to
``FLAT_HEADROOM`` x the minimum, so the image maps to a dark, nearly flat field (at most a quarter
of [0, 1]) and the user is told (``IntensityRange.note``). A constant image maps to 0. Data this
faint that does hold objects can be normalised by the user (``normalization="none"``) or fitted
with a lower ``Normalization(min_snr=...)`` (0 turns the check off).

**Stacks.** ``range_per="image"`` (the default) fits one range over the whole image, stack or time
series, from a strided sample of its planes and pixels; ``"plane"`` fits each plane on its own when
it is read (a blank plane is then caught by the rule above, plane by plane).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_madgnet.layout import Layout

#: CT windows as (centre, width) in Hounsfield units, the usual radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct-soft-tissue": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
    "ct-mediastinum": (50.0, 350.0),
}
METHODS: tuple[str, ...] = ("auto", "scale255", "percentile", "minmax", "none", *CT_WINDOWS)
#: Where an intensity range is fitted: once over the whole image/stack, or on each plane.
RANGE_PER: tuple[str, ...] = ("image", "plane")

#: Fitting a range reads at most about this many pixels, so huge lazy stacks stay cheap.
_FIT_SAMPLE = 4_000_000
#: A fitted range narrower than this many steps of the dtype (grey levels) is not stretched ...
MIN_LEVELS = 8
#: ... nor one narrower than this many noise standard deviations (see the module docstring).
MIN_SNR = 12.0
#: Not stretched: the range is widened to this many times the minimum (noise fills <= 1/4).
FLAT_HEADROOM = 4.0


@dataclass(frozen=True)
class Normalization:
    """How to map raw intensities to [0, 1].

    ``method``: ``auto`` (8-bit and bool: scale255; everything else: percentile), ``scale255``
    (the release's protocol), ``percentile`` (robust: ``low``..``high`` percentiles of the finite
    pixels), ``minmax``, ``none`` (data already in [0, 1]), or a CT window from ``CT_WINDOWS``
    (or ``window=(centre, width)`` with method ``ct``). ``min_snr``: a percentile or minmax range
    narrower than this many noise standard deviations is not stretched (module docstring; 0: off).
    """

    method: str = "auto"
    low: float = 1.0
    high: float = 99.8
    window: tuple[float, float] | None = None
    min_snr: float = MIN_SNR

    def __post_init__(self) -> None:
        if self.method not in METHODS and self.method != "ct":
            raise ValueError(f"Unknown normalisation {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.method == "ct" and self.window is None:
            raise ValueError("Normalisation 'ct' needs window=(centre, width) in Hounsfield units.")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"Percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}.")
        if not (isinstance(self.min_snr, int | float) and 0.0 <= self.min_snr < math.inf):
            raise ValueError(f"min_snr must be a number >= 0 (0: no check), got {self.min_snr!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "low": self.low,
            "high": self.high,
            "window": self.window,
            "min_snr": self.min_snr,
        }

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
        unknown = sorted(set(data) - {"method", "low", "high", "window", "min_snr"})
        if unknown:
            raise ValueError(
                f"Unknown normalisation setting(s) {', '.join(map(str, unknown))}; "
                "known: method, low, high, window, min_snr."
            )
        return cls(**data)


def check_image_dtype(dtype: Any) -> np.dtype:
    """The one dtype policy of inference and training: booleans, integers and real floats are
    images; anything else (complex, strings, objects, datetimes) raises ``UserError`` saying how to
    convert it. Complex data is refused rather than silently reduced to its real part."""
    from napari_madgnet.errors import UserError

    dt = np.dtype(dtype)
    if dt.kind in "biuf":
        return dt
    if dt.kind == "c":
        raise UserError(
            f"The image has dtype {dt} (complex numbers); MADGNet takes real intensities. Convert it "
            "first: the magnitude (numpy.abs(image)) for MRI/k-space reconstructions, or image.real."
        )
    raise UserError(f"Cannot use an image of dtype {dt}; convert it to an integer or float type.")


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


def noise_sigma(planes: np.ndarray) -> float | None:
    """Robust noise standard deviation of (..., H, W) planes: Immerkaer's 3 x 3 operator (1996)
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, whose response to white noise of std s has std 6 s
    and which cancels planes and ramps; the median absolute response / (0.6745 x 6). Non-finite
    pixels are left out. None when the planes are smaller than 3 x 3 or hold no finite response."""
    a = np.asarray(planes)
    if a.ndim < 2 or a.shape[-1] < 3 or a.shape[-2] < 3:
        return None
    a = a.astype(np.float64, copy=False)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return None
    a = a - float(np.median(finite))  # keeps 4 x |a| finite for data near the float64 limit
    r = (
        a[..., :-2, :-2] - 2 * a[..., :-2, 1:-1] + a[..., :-2, 2:]
        - 2 * a[..., 1:-1, :-2] + 4 * a[..., 1:-1, 1:-1] - 2 * a[..., 1:-1, 2:]
        + a[..., 2:, :-2] - 2 * a[..., 2:, 1:-1] + a[..., 2:, 2:]
    )  # fmt: skip
    r = np.abs(r[np.isfinite(r)])
    if r.size == 0:
        return None
    return float(np.median(r)) / (0.6745 * 6.0)


@dataclass(frozen=True)
class IntensityRange:
    """Raw intensities ``lo`` .. ``hi`` map to 0 .. 1 (``apply``).

    ``stretched``: False when the fitted range was too narrow to hold a signal and was widened
    instead (module docstring); ``noise``: the estimated noise std in raw units (data-driven methods
    only); ``note``: a sentence for the user when the range was not stretched, else "".
    """

    lo: float
    hi: float
    stretched: bool = True
    noise: float | None = None
    note: str = ""

    def apply(self, block: Any) -> np.ndarray:
        return apply_range(block, self.lo, self.hi)

    def to_dict(self) -> dict[str, Any]:
        return {"range": [self.lo, self.hi], "stretched": self.stretched, "noise": self.noise}


def _default_yx(shape: tuple[int, ...]) -> tuple[int, int]:
    """Y, X axes when the caller does not say: the last two, or the two before a last axis of 3-4
    (channels-last RGB(A))."""
    if len(shape) >= 3 and shape[-1] in (3, 4) and min(shape[-3], shape[-2]) > 4:
        return len(shape) - 3, len(shape) - 2
    return len(shape) - 2, len(shape) - 1


def _step(dtype: np.dtype, magnitude: float) -> float:
    """The smallest change the dtype can hold at this magnitude: 1 for integers, else the spacing."""
    if dtype.kind in "iu":
        return 1.0
    ftype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    with np.errstate(over="ignore"):
        return float(np.spacing(ftype.type(magnitude)))


def fit_intensity(
    image: Any, norm: Normalization | str | None = None, yx: tuple[int, int] | None = None
) -> IntensityRange:
    """The ``IntensityRange`` of ``image`` (any shape with Y, X at axes ``yx``; default: the last
    two, or the two before a channels-last RGB(A) axis) under ``norm``.

    Fixed methods (scale255, none, CT windows) return their range. Percentile and minmax fit it on
    at most about 4 M pixels and apply the minimum-range rule of the module docstring. Raises
    ValueError for empty or all-NaN input, naming the problem.
    """
    norm = Normalization.from_value(norm)
    if math.prod(image.shape) == 0:
        raise ValueError(f"The image is empty (shape {tuple(image.shape)}); nothing to normalise.")
    method = resolve_method(norm, image.dtype)
    if method == "scale255":
        return IntensityRange(0.0, 255.0 if image.dtype != bool else 1.0)
    if method == "none":
        return IntensityRange(0.0, 1.0)
    if method == "ct" or method in CT_WINDOWS:
        centre, width = norm.window if method == "ct" else CT_WINDOWS[method]
        return IntensityRange(centre - width / 2.0, centre + width / 2.0)
    sample = _sample(image)
    if sample.dtype == bool:
        return IntensityRange(0.0, 1.0)
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
    return _limit(lo, hi, sample, np.dtype(image.dtype), norm, yx or _default_yx(tuple(sample.shape)))


#: The noise level is estimated on at most about this many pixels (a median needs few).
_NOISE_SAMPLE = 1_000_000


def _noise_sample(planes: np.ndarray) -> np.ndarray:
    """Up to ``_NOISE_SAMPLE`` pixels of (..., H, W) planes, kept contiguous in Y and X (the noise
    operator needs neighbours): evenly spaced planes, each cropped to its centre if it is large."""
    h, w = planes.shape[-2:]
    stack = planes.reshape(-1, h, w)
    side = math.isqrt(_NOISE_SAMPLE)
    if h * w > _NOISE_SAMPLE:  # one large plane: its centre
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        stack = stack[:, y0 : y0 + side, x0 : x0 + side]
    n = max(1, _NOISE_SAMPLE // (stack.shape[1] * stack.shape[2]))
    if stack.shape[0] > n:
        stack = stack[np.linspace(0, stack.shape[0] - 1, n).round().astype(int)]
    return stack


def _limit(
    lo: float, hi: float, sample: np.ndarray, dtype: np.dtype, norm: Normalization, yx: tuple[int, int]
) -> IntensityRange:
    """The minimum-range rule (module docstring) applied to a fitted ``lo`` .. ``hi``."""
    if hi <= lo:  # constant (over the finite pixels): every value maps to 0, at any magnitude
        width = max(abs(lo), 1.0) * 2.0**-10
        return IntensityRange(
            lo,
            lo + width,
            stretched=False,
            noise=0.0,
            note=f"The image is constant ({lo:.6g} everywhere): there is no contrast to stretch, so it "
            "is mapped to 0 (black).",
        )
    planes = np.moveaxis(sample, yx, (-2, -1))
    noise = noise_sigma(_noise_sample(planes)) or 0.0
    step = _step(dtype, max(abs(lo), abs(hi)))
    minimum = max(MIN_LEVELS * step, norm.min_snr * noise) if norm.min_snr > 0 else 0.0
    span = hi - lo
    if span >= minimum:
        return IntensityRange(lo, hi, noise=noise)
    width = FLAT_HEADROOM * minimum
    if not np.isfinite(np.float32(1.0 / width)):  # denormal data: keep the reciprocal finite
        width = max(abs(lo), 1.0) * 2.0**-10
    levels = f"{span / step:.0f} grey level(s)" if dtype.kind in "iu" else f"{span:.3g}"
    ratio = f", {span / noise:.1f} x its noise level ({noise:.3g})" if noise > 0 else ""
    return IntensityRange(
        lo,
        lo + width,
        stretched=False,
        noise=noise,
        note=f"The intensity range {lo:.6g}..{hi:.6g} spans {levels}{ratio}: too narrow to hold a signal "
        f"(an empty field, a blank slice or camera noise?), so it was not stretched to [0, 1] and the image "
        f"stays dark. If it does hold objects this faint, lower min_snr (now {norm.min_snr:g}) or "
        "normalise the image yourself and use normalization 'none'.",
    )


def fit_range(image: Any, norm: Normalization | str | None = None) -> tuple[float, float]:
    """The (low, high) raw intensities that ``apply_range`` maps to 0 and 1 (``fit_intensity``).

    Raises ValueError for empty or all-NaN input, naming the problem.
    """
    fitted = fit_intensity(image, norm)
    return fitted.lo, fitted.hi


def apply_range(block: Any, lo: float, hi: float) -> np.ndarray:
    """Scale ``block`` so ``lo`` -> 0 and ``hi`` -> 1, clip to [0, 1], and zero NaN/Inf.

    64-bit data is shifted by ``lo`` in float64 first, so values beyond float32's range (1e300)
    are scaled, not turned into infinities.
    """
    arr = np.asarray(block)
    if arr.dtype.itemsize > 4 and arr.dtype.kind in "fiu":
        with np.errstate(over="ignore", invalid="ignore"):
            out = ((arr.astype(np.float64) - lo) * (1.0 / (hi - lo))).astype(np.float32)
    else:
        out = arr.astype(np.float32, copy=True) if arr.dtype != np.float32 else arr.copy()
        out -= np.float32(lo)
        out *= np.float32(1.0 / (hi - lo))
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def normalize(image: Any, norm: Normalization | str | None = None) -> np.ndarray:
    """Fit and apply in one call, for arrays that fit in memory."""
    return fit_intensity(image, norm).apply(image)


# ------------------------------------------------------------------------------------- images, stacks
@dataclass
class RangePlan:
    """How the planes of one image or stack are scaled, shared by inference and training.

    ``per="image"``: one range (``whole``) fitted once on the selected channel(s) of the whole
    image or stack; ``per="plane"``: each plane's own range, fitted when it is read. ``notes``
    collects the sentences of ranges that were not stretched (one per image, or per plane with
    the plane named), for the caller to show.
    """

    layout: Layout
    norm: Normalization
    per: str
    whole: IntensityRange | None = None
    notes: list[str] = field(default_factory=list)
    planes: dict[tuple[int, ...], IntensityRange] = field(default_factory=dict)

    def read(self, image: Any, index: tuple[int, ...]) -> np.ndarray:
        """Plane ``index`` of ``image`` as float32 (H, W, C) in [0, 1]."""
        plane = self.layout.read_plane(image, index)
        fitted = self.whole
        if fitted is None:
            fitted = fit_intensity(plane, self.norm, yx=(0, 1))
            self.planes[index] = fitted
            if fitted.note:
                where = ", ".join(f"{a}={i}" for a, i in zip(self.layout.stack_axes, index, strict=True))
                self.notes.append(f"Plane {where}: {fitted.note}" if where else fitted.note)
        return fitted.apply(plane)

    def to_dict(self) -> dict[str, Any]:
        """For provenance: the range(s) and which were not stretched."""
        out: dict[str, Any] = {"per": self.per}
        if self.whole is not None:
            out.update(self.whole.to_dict())
        else:
            flat = [i for i, r in self.planes.items() if not r.stretched]
            out["planes_fitted"] = len(self.planes)
            out["planes_not_stretched"] = [list(i) for i in flat]
        return out


def fit_ranges(image: Any, layout: Layout, norm: Normalization | str | None, per: str = "image") -> RangePlan:
    """The ``RangePlan`` of ``image`` read through ``layout``; ``per`` is "image" or "plane".

    Raises ValueError for an unknown ``per`` and for images without finite values.
    """
    if per not in RANGE_PER:
        raise ValueError(f"range_per must be one of {', '.join(RANGE_PER)}, got {per!r}.")
    norm = Normalization.from_value(norm)
    method = resolve_method(norm, image.dtype)
    # Fixed ranges do not depend on the pixels, so per-plane fitting would give the same range.
    if per == "image" or method not in ("percentile", "minmax"):
        selection = layout.selection(image)
        sel_axes = layout.axes.replace("C", "") if isinstance(layout.channels, int) else layout.axes
        whole = fit_intensity(selection, norm, yx=(sel_axes.index("Y"), sel_axes.index("X")))
        return RangePlan(layout, norm, per, whole, [whole.note] if whole.note else [])
    return RangePlan(layout, norm, per)
