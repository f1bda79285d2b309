"""Segmentation metrics: the release's six, defects included, and the standard definitions.

Two families live side by side because they answer different questions:

- ``paper_metrics`` reproduces how the released MADGNet evaluation computes DSC, IoU, weighted
  F-measure, S-measure, E-measure and MAE (prediction binarised at 0.5, ground truth scaled by its
  max and binarised at 0.5, NaN replaced by 1e-6). The paper's tables were made with it, so a
  number comparable to the paper must come from here. Its known defects are kept on purpose: the
  S-measure object term indexes rows with the integer mask (a perfect prediction scores < 1), the
  E-measure divides by H*W - 1 (a perfect prediction scores > 1) and an empty prediction on empty
  ground truth scores E = 0.
- ``standard_metrics`` gives the textbook definitions (Dice, IoU, precision, recall, weighted
  F-measure of Margolin et al., S-measure of Fan et al. 2017, E-measure of Fan et al. 2018 and the
  MAE of the probability map), with an empty prediction on empty ground truth scoring 1.

This is an independent implementation written from the published descriptions; it was checked
against values computed by the released code (tests/fixtures/official/metrics_reference.json).

Ground truth reaches both families, ``madgnet evaluate`` and training through one rule,
``binary_truth`` (see ``truth_kind``): a mask with one foreground value, or label ids, is ``> 0``;
a black-and-white picture with grey edges (a JPEG mask) or a float mask with grey levels is
``> max / 2``, as the release does. The paper metrics then apply
the release's own arithmetic to that binary mask, which leaves it unchanged.

Spacing-aware surface metrics for clinical evaluation, ``hd95``, ``assd`` and ``nsd`` (and
``surface_metrics`` for all three at once), for masks of any dimension, are re-exported here from
``napari_madgnet.surface_metrics``, which documents their definitions and empty-mask values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

# The spacing-aware surface metrics live in their own module; metrics.hd95 etc. are the public names.
from napari_madgnet.surface_metrics import assd as assd
from napari_madgnet.surface_metrics import hd95 as hd95
from napari_madgnet.surface_metrics import nsd as nsd
from napari_madgnet.surface_metrics import surface_metrics as surface_metrics

PAPER_METRICS: tuple[str, ...] = ("DSC", "IoU", "WeightedF-Measure", "S-Measure", "E-Measure", "MAE")
STANDARD_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "recall",
    "weighted_f",
    "s_measure",
    "e_measure",
    "mae",
)
_SMOOTH = 1e-5


# ---------------------------------------------------------------------------------------- ground truth
#: A mask is read as a black-and-white picture when at least this share of its non-zero pixels
#: lie in the top tenth of its range (JPEG-compressed 0/255 masks of the nuclei sample: 0.68-0.77;
#: label ids 1..N: about 0.1, one object in ten).
_PICTURE_TOP_SHARE = 0.25


def truth_kind(gt: np.ndarray) -> str:
    """How ``binary_truth`` reads a ground-truth mask (any shape).

    - ``"two-valued"``: booleans, or at most one value besides 0 (0/1, 0/255): foreground is > 0.
    - ``"picture"``: integers with several non-zero values, a maximum in the upper half of the
      dtype's range (>= 128 in 8 bits, >= 32768 in 16 bits), and at least a quarter of the non-zero
      pixels in the top tenth of that maximum: a black-and-white picture whose edges went grey
      (JPEG, resizing); foreground is > max / 2, the release's rule.
    - ``"ids"``: other integer masks: instance or class ids (a labels layer, an instance mask),
      whose objects spread over the values; foreground is > 0.
    - ``"grey"``: floats with more than two values: foreground is > max / 2.
    """
    g = np.asarray(gt)
    if g.dtype == bool:
        return "two-valued"
    if g.dtype.kind not in "iuf":
        raise ValueError(f"A mask holds numbers, not {g.dtype}.")
    nonzero = g[(g != 0) & ~np.isnan(g)] if g.dtype.kind == "f" else g[g != 0]
    if nonzero.size == 0 or nonzero.min() == nonzero.max():
        return "two-valued"
    if g.dtype.kind == "f":
        return "grey"
    top = int(nonzero.max())
    bright = top > np.iinfo(g.dtype).max // 2
    if bright and np.count_nonzero(nonzero >= 0.9 * top) >= _PICTURE_TOP_SHARE * nonzero.size:
        return "picture"
    return "ids"


def binary_truth(gt: np.ndarray) -> np.ndarray:
    """The one binarisation of ground truth, shared by training, ``evaluate`` and both metric
    families: a bool array of ``gt``'s shape (``truth_kind`` says which rule applies).

    Two-valued masks and label ids: ``gt > 0``. Black-and-white pictures with grey edges and float
    masks with grey levels: ``gt > max(gt) / 2`` (the release's ``gt / max > 0.5``). Use
    ``truth_note`` to tell the user when grey levels were thresholded away.
    """
    g = np.asarray(gt)
    kind = truth_kind(g)
    if kind in ("two-valued", "ids"):
        return g > 0
    top = float(np.nanmax(g))
    return g.astype(np.float64) > top / 2.0


def truth_note(gt: np.ndarray, name: str = "the mask") -> str:
    """A warning when a binary mask holds more than two values and grey levels were thresholded
    (``"picture"``/``"grey"``), else "". Label ids (``"ids"``) are documented as foreground and
    not warned about."""
    g = np.asarray(gt)
    kind = truth_kind(g)
    if kind not in ("picture", "grey"):
        return ""
    top = float(np.nanmax(g))
    n_values = "many" if g.dtype.kind == "f" else str(len(np.unique(g)))
    return (
        f"{name} is a binary mask with {n_values} different values (0..{top:g}: grey edges from JPEG "
        f"compression or resizing?); it was binarised at > {top / 2:g} (half its maximum). Save masks "
        "losslessly (PNG, TIFF) with one value for objects."
    )


# --------------------------------------------------------------------------------------------- helpers
# --------------------------------------------------------------------------------------------- helpers
def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.squeeze(np.asarray(a))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be one 2-D image (got shape {np.shape(a)}); pass slices one by one.")
    return arr


def _gauss_kernel(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """The normalised Gaussian that MATLAB's fspecial('gaussian', size, sigma) returns."""
    r = (size - 1) / 2.0
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    k = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    k[k < np.finfo(k.dtype).eps * k.max()] = 0
    return k / k.sum()


def _weighted_f(pred: np.ndarray, gt: np.ndarray, eps: float) -> float:
    """Weighted F-measure (Margolin et al. 2014, beta^2 = 1) of a [0, 1] map against a binary mask."""
    fg = gt > 0
    e = np.abs(pred.astype(np.float64) - gt.astype(np.float64))
    if not fg.any():
        return math.nan
    dist, idx = ndimage.distance_transform_edt(~fg, return_indices=True)
    et = e.copy()
    bg = ~fg
    et[bg] = e[idx[0][bg], idx[1][bg]]  # background errors take the nearest object pixel's error
    ea = ndimage.convolve(et, _gauss_kernel(), mode="constant", cval=0.0)
    min_e = np.where(fg & (ea < e), ea, e)
    weight = np.where(bg, 2.0 - np.exp(np.log(0.5) / 5.0 * dist), 1.0)
    ew = min_e * weight
    tpw = fg.sum() - ew[fg].sum()
    fpw = ew[bg].sum()
    recall = 1.0 - ew[fg].mean()
    precision = tpw / (eps + tpw + fpw)
    return float(2.0 * recall * precision / (eps + recall + precision))


def _ssim_region(pred: np.ndarray, gt: np.ndarray, ddof: int) -> float:
    """The S-measure's region similarity of one quadrant (NaN for an empty quadrant).

    The release uses population variances (``ddof=0``) beside an N - 1 covariance, so a perfect
    prediction can exceed 1; the standard form uses N - 1 throughout.
    """
    n = pred.size
    with np.errstate(all="ignore"):
        x = np.mean(pred)
        y = np.mean(gt)
        sx = np.var(pred, ddof=ddof) if n > ddof else math.nan
        sy = np.var(gt, ddof=ddof) if n > ddof else math.nan
        sxy = np.sum((pred - x) * (gt - y)) / (n - 1) if n > 1 else math.nan
        alpha = 4 * x * y * sxy
        beta = (x * x + y * y) * (sx + sy)
    if alpha != 0:  # NaN also lands here, as it does in the release
        return float(alpha / (beta + 1e-8))
    return 1.0 if beta == 0 else 0.0


def _region_term(pred: np.ndarray, gt: np.ndarray, *, offset: int, gt32: bool, ddof: int) -> float:
    """Split at the ground truth's centroid and weight the four quadrants' SSIM by their area."""
    cy, cx = ndimage.center_of_mass(gt)
    y = round(float(cy)) + offset
    x = round(float(cx)) + offset
    h, w = gt.shape
    area = h * w
    g = gt.astype(np.float32) if gt32 else gt.astype(np.float64)
    top, bottom, left, right = slice(0, y), slice(y, h), slice(0, x), slice(x, w)
    parts = [(top, left), (top, right), (bottom, left), (bottom, right)]
    weights = [x * y / area, y * (w - x) / area, (h - y) * x / area, (h - y) * (w - x) / area]
    return float(sum(wt * _ssim_region(pred[p], g[p], ddof) for wt, p in zip(weights, parts, strict=True)))


# ------------------------------------------------------------------------------------------ the paper's
def _paper_object_score(values: np.ndarray, mask: np.ndarray) -> float:
    """The release's object similarity: ``values[mask]`` with an *integer* mask selects whole rows.

    Row 0 or row 1 of ``values`` is picked for every pixel of ``mask``; the statistics of that
    multiset are computed in closed form so no H x W x W array is built.
    """
    n1 = int(mask.sum())
    n0 = mask.size - n1
    rows = values[: min(2, values.shape[0])].astype(np.float64)
    counts = [n0, n1][: rows.shape[0]]
    total = sum(c * rows.shape[1] for c in counts)
    if total == 0 or (n1 and rows.shape[0] < 2):
        return math.nan
    mean = sum(c * r.sum() for c, r in zip(counts, rows, strict=True)) / total
    var = sum(c * ((r - mean) ** 2).sum() for c, r in zip(counts, rows, strict=True)) / total
    return float(2 * mean / (mean**2 + 1 + math.sqrt(var) + 1e-8))


def _paper_s_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    y = float(np.mean(gt.astype(np.float32)))
    if y == 0:
        return float(1 - np.mean(pred))
    if y == 1:
        return float(np.mean(pred))
    u = float(np.mean(gt.astype(np.float32)))
    fg = pred * gt
    bg = (1 - pred) * (1 - gt)
    obj = u * _paper_object_score(fg, gt) + (1 - u) * _paper_object_score(bg, 1 - gt)
    return 0.5 * obj + 0.5 * _region_term(pred.astype(np.int64), gt, offset=1, gt32=True, ddof=0)


def _paper_e_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    th = min(2 * float(pred.mean()), 1.0)
    fm = (pred >= th).astype(np.float64)
    g = gt.astype(bool)
    if g.sum() == 0:
        enhanced = 1.0 - fm
    elif (~g).sum() == 0:
        enhanced = fm
    else:
        enhanced = _enhanced_alignment(fm, g.astype(np.float64))
    h, w = g.shape
    return float(enhanced.sum() / (h * w - 1 + 1e-8))


def _enhanced_alignment(fm: np.ndarray, gt: np.ndarray) -> np.ndarray:
    a_fm = fm - fm.mean()
    a_gt = gt - gt.mean()
    align = 2.0 * (a_gt * a_fm) / (a_gt * a_gt + a_fm * a_fm + 1e-8)
    return (align + 1) ** 2 / 4


def paper_binarize(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The release's preprocessing: pred >= 0.5; gt / (max + 1e-8) > 0.5.

    ``gt`` is first made binary by the shared rule (``binary_truth``), so the release's arithmetic
    leaves it as it is and both metric families score the same foreground.
    """
    p = (_as_2d(pred, "pred") >= 0.5).astype(np.int64)
    g = binary_truth(_as_2d(gt, "gt")).astype(np.float32)
    g = g / (g.max() + np.float32(1e-8))
    return p, (g > 0.5).astype(np.int64)


def paper_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The release's six metrics for one image, defects included (for comparison with the paper).

    ``pred``: probabilities or a binary mask (binarised at 0.5); ``gt``: any non-negative mask,
    binarised by ``binary_truth``.
    """
    p, g = paper_binarize(pred, gt)
    inter = float((p * g).sum())
    out = {
        "DSC": (2.0 * inter + _SMOOTH) / (g.sum() + p.sum() + _SMOOTH),
        "IoU": (inter + _SMOOTH) / (float(((p > 0) | (g > 0)).sum()) + _SMOOTH),
        "WeightedF-Measure": _weighted_f(p, g, 1e-6),
        "S-Measure": _paper_s_measure(p, g),
        "E-Measure": _paper_e_measure(p, g),
        "MAE": float(np.mean(np.abs(p - g))),
    }
    return {k: (1e-6 if math.isnan(float(v)) else float(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------------------- the standard
def _object_similarity(values: np.ndarray, mask: np.ndarray) -> float:
    sel = values[mask]
    if sel.size == 0:
        return 0.0
    x = float(sel.mean())
    return 2 * x / (x * x + 1 + float(sel.std()) + 1e-8)


def _standard_s_measure(prob: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al., ICCV 2017) with boolean masking in the object term."""
    g = gt.astype(bool)
    y = g.mean()
    if y == 0:
        return float(1 - prob.mean())
    if y == 1:
        return float(prob.mean())
    obj = y * _object_similarity(prob, g) + (1 - y) * _object_similarity(1 - prob, ~g)
    region = _region_term(prob, g.astype(np.float64), offset=0, gt32=False, ddof=1)
    return float(alpha * obj + (1 - alpha) * region)


def _standard_e_measure(prob: np.ndarray, gt: np.ndarray) -> float:
    """Adaptive enhanced-alignment measure (Fan et al., IJCAI 2018), mean over H*W pixels."""
    th = min(2 * float(prob.mean()), 1.0)
    fm = (prob >= th).astype(np.float64) if prob.any() else np.zeros_like(prob, dtype=np.float64)
    g = gt.astype(bool)
    if not g.any():
        enhanced = 1.0 - fm
    elif g.all():
        enhanced = fm
    else:
        enhanced = _enhanced_alignment(fm, g.astype(np.float64))
    return float(enhanced.mean())


def standard_metrics(prob: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Textbook metrics for one image: overlap on ``prob >= threshold``, MAE on ``prob`` itself.

    An empty prediction of an empty ground truth is a perfect score (Dice = IoU = 1), unlike the
    release's smoothing; ``gt`` is binarised by ``binary_truth``.
    """
    p_float = np.clip(_as_2d(prob, "prob").astype(np.float64), 0.0, 1.0)
    g = binary_truth(_as_2d(gt, "gt"))
    p = p_float >= threshold
    tp = float((p & g).sum())
    fp = float((p & ~g).sum())
    fn = float((~p & g).sum())
    empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if empty else 2 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if empty else tp / (tp + fp + fn),
        "precision": (1.0 if fn == 0 else 0.0) if tp + fp == 0 else tp / (tp + fp),
        "recall": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "weighted_f": (1.0 if not p.any() else 0.0) if not g.any() else _weighted_f(p_float, g, 1e-12),
        "s_measure": _standard_s_measure(p_float, g),
        "e_measure": _standard_e_measure(p_float, g),
        "mae": float(np.abs(p_float - g).mean()),
    }


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two masks (> 0 is foreground); 1.0 when both are empty. Works for any shape."""
    p = np.asarray(pred) > 0
    g = np.asarray(gt) > 0
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * (p & g).sum() / denom)


def mean_metrics(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over images, as the release does (a plain mean of per-image values)."""
    rows = list(rows)
    if not rows:
        return {}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
