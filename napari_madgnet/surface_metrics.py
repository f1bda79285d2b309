"""Spacing-aware surface metrics: HD95, ASSD and NSD of two masks of any dimension.

Definitions follow MONAI (``monai.metrics``: ``compute_hausdorff_distance(percentile=95)``,
``compute_average_surface_distance(symmetric=True)`` and ``compute_surface_dice`` with its default
``use_subvoxels=False``), so that values agree with MONAI's to float32 precision; the tests use
MONAI as the oracle. MONAI is not needed at run time: this module uses scipy only.

- **Surface** (boundary) of a mask: its foreground voxels that have a background 1-neighbour
  (face neighbour), i.e. ``mask & ~binary_erosion(mask)`` with scipy's default cross-shaped
  structuring element and the outside of the array counted as background (a mask touching the
  array's border has its border voxels on the surface). A one-voxel mask is its own surface.
- **Surface distances**: for each surface voxel of one mask, the Euclidean distance in physical
  units (voxel index times ``spacing`` per axis) to the nearest surface voxel of the other mask.
- **HD95** (Huttenlocher et al. 1993; Taha & Hanbury 2015, BMC Medical Imaging 15:29): the larger
  of the two directed 95th percentiles, ``max(P95(d(pred -> truth)), P95(d(truth -> pred)))``,
  with linear interpolation between order statistics (``numpy.percentile``'s default, as
  ``torch.quantile``).
- **ASSD** (Taha & Hanbury 2015): the mean of all surface distances of both directions pooled,
  ``(sum d(pred -> truth) + sum d(truth -> pred)) / (n_pred + n_truth)``.
- **NSD** (normalised surface Dice; Nikolov et al. 2021, J Med Internet Res 23:e26151): the
  fraction of surface voxels of both masks that lie within ``tolerance`` of the other surface,
  ``(#{d(pred -> truth) <= tau} + #{d(truth -> pred) <= tau}) / (n_pred + n_truth)``. As in
  MONAI's default, each surface voxel counts once (Nikolov et al. weight surface elements by their
  area); distances are compared with the tolerance at single precision, as MONAI does, so that a
  distance that equals the tolerance up to rounding (3 x 0.1 mm against 0.3 mm) counts as within.

Empty masks (MONAI's values, kept so that results stay comparable with MONAI-based pipelines):

=========================  ==========  ==========  =====
case                       HD95        ASSD        NSD
=========================  ==========  ==========  =====
both empty                 nan         nan         nan
exactly one empty          nan         inf         0.0
=========================  ==========  ==========  =====

HD95 is nan (not inf) when one mask is empty because MONAI's percentile of infinite distances is
undefined. Averages over images should therefore not silently skip nan: count the cases where a
structure was missed or hallucinated separately (``madgnet evaluate`` and ``madgnet compare``
report them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_madgnet.errors import UserError

SpacingLike = float | Sequence[float] | np.ndarray | None


@dataclass(frozen=True)
class SurfaceDistances:
    """Surface distances of two masks in both directions (float64, physical units).

    ``pred_to_truth[i]`` is the distance from the i-th surface voxel of ``pred`` (in C order) to the
    nearest surface voxel of ``truth``; ``truth_to_pred`` likewise. When the other mask is empty
    the distances are ``inf``; when both are empty both arrays are empty.
    """

    pred_to_truth: np.ndarray
    truth_to_pred: np.ndarray

    @property
    def both_empty(self) -> bool:
        return self.pred_to_truth.size == 0 and self.truth_to_pred.size == 0


def as_spacing(spacing: SpacingLike, ndim: int) -> np.ndarray:
    """``spacing`` as a float64 array of length ``ndim``: None -> ones, a number -> isotropic.

    Raises ``UserError`` for a wrong length, or a value that is not a positive finite number.
    """
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    arr = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if arr.ndim != 1:
        raise UserError(f"spacing must be a number or one number per axis, got {spacing!r}.")
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.size != ndim:
        raise UserError(
            f"spacing has {arr.size} values {tuple(arr.tolist())} but the masks have {ndim} axes; "
            "give one value per axis (e.g. Z Y X)."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise UserError(f"spacing must be positive finite numbers, got {tuple(arr.tolist())}.")
    return arr


def _binary_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred)
    t = np.asarray(truth)
    if p.shape != t.shape:
        raise UserError(f"the masks differ in shape: {p.shape} (prediction) vs {t.shape} (reference).")
    if p.ndim == 0:
        raise UserError("the masks are scalars; pass arrays with at least one axis.")
    return (p if p.dtype == bool else p > 0), (t if t.dtype == bool else t > 0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel, or None for an empty mask."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface voxels of a boolean mask (see the module docstring): ``mask & ~erosion(mask)``."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros_like(m)
    # Outside the array counts as background (border_value=0), as in MONAI's zero-padded crop.
    return m & ~ndimage.binary_erosion(m, border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: SpacingLike = None) -> SurfaceDistances:
    """Distances between the surfaces of ``pred`` and ``truth`` in both directions.

    ``pred``, ``truth``: arrays of one shape, any number of axes; boolean, or any dtype with
    ``> 0`` as foreground. ``spacing``: voxel size per axis (e.g. mm), a number for isotropic
    voxels, or None for 1 per axis (distances in voxels). Raises ``UserError`` for a shape
    mismatch or a bad spacing.

    Only the bounding box of the union is processed; nearest neighbours come from a k-d tree over
    the surface voxels' physical coordinates (exact Euclidean distances, as MONAI on the CPU).
    """
    p, t = _binary_pair(pred, truth)
    sp = as_spacing(spacing, p.ndim)
    box = _bounding_box(p | t)
    if box is None:
        empty = np.zeros(0, dtype=np.float64)
        return SurfaceDistances(empty, empty.copy())
    edges_p = surface(p[box])
    edges_t = surface(t[box])
    coords_p = np.argwhere(edges_p).astype(np.float64) * sp
    coords_t = np.argwhere(edges_t).astype(np.float64) * sp
    if len(coords_p) == 0 or len(coords_t) == 0:
        # MONAI: every surface voxel of the non-empty mask is infinitely far from the empty one.
        n = max(len(coords_p), len(coords_t))
        inf = np.full(n, np.inf)
        return SurfaceDistances(inf, inf.copy())
    d_pt = cKDTree(coords_t).query(coords_p, k=1)[0]
    d_tp = cKDTree(coords_p).query(coords_t, k=1)[0]
    return SurfaceDistances(np.asarray(d_pt, dtype=np.float64), np.asarray(d_tp, dtype=np.float64))


# ------------------------------------------------------------------------ metrics from the distances
def hd95_from(d: SurfaceDistances, percentile: float = 95.0) -> float:
    """HD95 (or another percentile) from precomputed surface distances; see ``hd95``."""
    if d.both_empty or not (np.all(np.isfinite(d.pred_to_truth)) and np.all(np.isfinite(d.truth_to_pred))):
        return math.nan
    return float(max(np.percentile(d.pred_to_truth, percentile), np.percentile(d.truth_to_pred, percentile)))


def assd_from(d: SurfaceDistances) -> float:
    """ASSD from precomputed surface distances; see ``assd``."""
    n = d.pred_to_truth.size + d.truth_to_pred.size
    if n == 0:
        return math.nan
    return float((d.pred_to_truth.sum() + d.truth_to_pred.sum()) / n)


def nsd_from(d: SurfaceDistances, tolerance: float) -> float:
    """NSD from precomputed surface distances; see ``nsd``."""
    tau = _check_tolerance(tolerance)
    n = d.pred_to_truth.size + d.truth_to_pred.size
    if n == 0:
        return math.nan
    # Single precision, as MONAI compares: 3 * 0.1 (0.30000000000000004) is within 0.3.
    tau32 = np.float32(tau)
    within = np.count_nonzero(d.pred_to_truth.astype(np.float32) <= tau32) + np.count_nonzero(
        d.truth_to_pred.astype(np.float32) <= tau32
    )
    return float(within / n)


def _check_tolerance(tolerance: float) -> float:
    tau = float(tolerance)
    if not math.isfinite(tau) or tau < 0:
        raise UserError(
            f"the NSD tolerance must be a finite number >= 0 (in the spacing's unit), got {tolerance!r}."
        )
    return tau


# ------------------------------------------------------------------------------------ the public API
def hd95(pred: np.ndarray, truth: np.ndarray, spacing: SpacingLike = None) -> float:
    """95th-percentile Hausdorff distance between the surfaces of two masks, in ``spacing``'s unit.

    ``pred``, ``truth``: same-shape arrays of any dimension (boolean, or ``> 0`` = foreground).
    ``spacing``: voxel size per axis (mm, µm...), a number for isotropic voxels, None for voxels.
    Returns ``max(P95(d(pred -> truth)), P95(d(truth -> pred)))`` (Taha & Hanbury 2015; MONAI's
    ``compute_hausdorff_distance(percentile=95)``); nan when either mask is empty (MONAI's value).
    Raises ``UserError`` for a shape mismatch or a bad spacing.
    """
    return hd95_from(surface_distances(pred, truth, spacing))


def assd(pred: np.ndarray, truth: np.ndarray, spacing: SpacingLike = None) -> float:
    """Average symmetric surface distance of two masks, in ``spacing``'s unit.

    The mean of the surface distances of both directions pooled (Taha & Hanbury 2015; MONAI's
    ``compute_average_surface_distance(symmetric=True)``). nan when both masks are empty, inf when
    exactly one is. Arguments and errors as ``hd95``.
    """
    return assd_from(surface_distances(pred, truth, spacing))


def nsd(pred: np.ndarray, truth: np.ndarray, tolerance: float, spacing: SpacingLike = None) -> float:
    """Normalised surface Dice of two masks at ``tolerance`` (same unit as ``spacing``), in [0, 1].

    The fraction of both surfaces' voxels within ``tolerance`` of the other surface (Nikolov et
    al. 2021, counting voxels as MONAI's ``compute_surface_dice`` does by default). nan when both
    masks are empty, 0.0 when exactly one is. Raises ``UserError`` for a negative or non-finite
    tolerance; other arguments and errors as ``hd95``.
    """
    _check_tolerance(tolerance)
    return nsd_from(surface_distances(pred, truth, spacing), tolerance)


def surface_metrics(
    pred: np.ndarray, truth: np.ndarray, tolerance: float, spacing: SpacingLike = None
) -> dict[str, float]:
    """``{"hd95", "assd", "nsd"}`` of two masks from one distance computation (see each function)."""
    _check_tolerance(tolerance)
    d = surface_distances(pred, truth, spacing)
    return {"hd95": hd95_from(d), "assd": assd_from(d), "nsd": nsd_from(d, tolerance)}
