"""Quality control: compare a mask with a reference (or two models' masks), overall, per slice, per object.

``compare_masks(pred, ref)`` returns a ``ComparisonReport`` with

- ``overall``: Dice, IoU, precision, recall (foreground = label > 0), HD95, ASSD and NSD in the
  spacing's unit (``napari_madgnet.surface_metrics``: MONAI's definitions and empty-mask values),
  sizes, and the object counts of the matching below;
- ``per_slice``: one row per Y-X plane of a stack (index columns named after the leading axes,
  e.g. ``z``) in which either mask has foreground, with the same metrics in 2-D;
- ``per_object``: reference objects matched one-to-one to predicted objects by IoU. Candidate
  pairs have IoU >= ``match_iou`` (default 0.5); among them the assignment maximising the summed
  IoU is found with the Hungarian method (``scipy.optimize.linear_sum_assignment``, run on each
  connected group of overlapping objects so large label images stay cheap). At ``match_iou`` >
  0.5 each object has at most one candidate, so the matching is the usual unique one. Rows:
  ``matched`` pairs (IoU, Dice, HD95, ASSD, NSD of the two objects), ``missed`` reference objects
  (false negatives) and ``false positive`` predicted objects, each with its best IoU against
  any object of the other image;
- ``error_map``: uint8 label image, 0 = agree, 1 = false positive (pred > 0, ref = 0),
  2 = false negative (ref > 0, pred = 0);
- ``overall`` also holds ``object_f1`` and ``panoptic_quality`` of that matching
  (``object_scores`` computes them, with precision, recall, SQ and RQ, without the surface
  distances);
- ``worst_slice``: index (along the leading axes) of the plane with the most disagreeing pixels
  (false positives + false negatives), ties broken by the lower Dice; with ``worst_by="dice"``
  the plane with the lowest Dice. The default looks where most is wrong: the lowest Dice is
  often a plane at an object's end with a handful of pixels.

Axes, spacing and what an object is follow ``napari_madgnet.labelutils``: a ``"T"`` axis is never
spatial (each time point is compared on its own; overall surface metrics pool the distances of
all time points).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.labelutils import (
    ObjectsMode,
    axis_spacing,
    check_labels,
    instance_labels,
    iter_frames,
    objects_mode,
    resolve_axes,
    unit_tag,
)
from napari_madgnet.surface_metrics import (
    SpacingLike,
    SurfaceDistances,
    assd_from,
    hd95_from,
    nsd_from,
    surface_distances,
)
from napari_madgnet.tables import write_csv

ERROR_AGREE, ERROR_FALSE_POSITIVE, ERROR_FALSE_NEGATIVE = 0, 1, 2


@dataclass
class ComparisonReport:
    """The result of ``compare_masks``; tables are lists of row dicts (see the module docstring).

    Metric keys carry the unit: ``hd95_mm``, ``assd_mm`` (``_px`` without a spacing); ``nsd`` is
    a fraction in [0, 1] at ``tolerance`` (in ``unit``).
    """

    overall: dict[str, Any]
    per_slice: list[dict[str, Any]]
    per_object: list[dict[str, Any]]
    error_map: np.ndarray
    worst_slice: tuple[int, ...] | None
    axes: str
    spacing: tuple[float, ...]
    unit: str
    tolerance: float
    match_iou: float
    names: tuple[str, str] = field(default=("prediction", "reference"))

    def summary(self) -> str:
        """A few lines for a terminal or a status bar."""
        o, u = self.overall, self.unit
        lines = [
            f"{self.names[0]} vs {self.names[1]} (axes {self.axes}, spacing "
            f"{' x '.join(f'{s:g}' for s in self.spacing)} {u}):",
            f"  Dice {o['dice']:.4f}  IoU {o['iou']:.4f}  precision {o['precision']:.4f}  "
            f"recall {o['recall']:.4f}",
            f"  HD95 {_fmt(o[f'hd95_{u}'])} {u}  ASSD {_fmt(o[f'assd_{u}'])} {u}  "
            f"NSD at {self.tolerance:g} {u}: {_fmt(o['nsd'])}",
        ]
        if "reference_objects" in o:
            lines.append(
                f"  objects: reference {o['reference_objects']}, prediction {o['predicted_objects']}, "
                f"matched {o['matched_objects']}, missed {o['missed_objects']}, "
                f"false positives {o['false_positive_objects']} (IoU >= {self.match_iou:g})"
            )
        if self.worst_slice is not None:
            row = next(r for r in self.per_slice if _slice_index(r, self.axes) == self.worst_slice)
            where = ", ".join(f"{a.lower()}={i}" for a, i in zip(self.axes, self.worst_slice, strict=False))
            lines.append(f"  worst slice: {where} (Dice {row['dice']:.4f}, {row['errors']} pixels differ)")
        return "\n".join(lines)

    def to_csv(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write ``summary.csv`` (one row), ``per_slice.csv`` (stacks) and ``per_object.csv``.

        Every file is checked before any is written: an existing one raises ``FileExistsError``
        unless ``overwrite``. Each write is atomic. Returns the written paths.
        """
        out = Path(folder)
        tables: list[tuple[str, list[dict[str, Any]]]] = [("summary.csv", [self.overall])]
        if self.per_slice:
            tables.append(("per_slice.csv", self.per_slice))
        if self.per_object:
            tables.append(("per_object.csv", self.per_object))
        if not overwrite:
            existing = [str(out / n) for n, _ in tables if (out / n).exists()]
            if existing:
                raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite to replace them.")
        return [write_csv(rows, out / name, overwrite=overwrite) for name, rows in tables]


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def _slice_index(row: dict[str, Any], axes: str) -> tuple[int, ...]:
    return tuple(int(row[a.lower()]) for a in axes[:-2] if a.lower() in row)


# --------------------------------------------------------------------------------------- the pieces
def _overlap_scores(p: np.ndarray, r: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall of two boolean masks (1.0 where both are empty, as metrics.dice)."""
    tp = float(np.count_nonzero(p & r))
    fp = float(np.count_nonzero(p & ~r))
    fn = float(np.count_nonzero(~p & r))
    empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if empty else 2 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if empty else tp / (tp + fp + fn),
        "precision": (1.0 if fn == 0 else 0.0) if tp + fp == 0 else tp / (tp + fp),
        "recall": 1.0 if tp + fn == 0 else tp / (tp + fn),
    }


def _pooled_distances(p: np.ndarray, r: np.ndarray, n_time: int, spacing: np.ndarray) -> SurfaceDistances:
    """Surface distances of each frame (time point) concatenated; one n-D computation without T."""
    parts = [
        surface_distances(fp, fr, spacing)
        for (_, fp), (_, fr) in zip(iter_frames(p, n_time), iter_frames(r, n_time), strict=True)
    ]
    return SurfaceDistances(
        np.concatenate([d.pred_to_truth for d in parts]), np.concatenate([d.truth_to_pred for d in parts])
    )


def _surface_scores(d: SurfaceDistances, tolerance: float, tag: str) -> dict[str, float]:
    return {f"hd95_{tag}": hd95_from(d), f"assd_{tag}": assd_from(d), "nsd": nsd_from(d, tolerance)}


def _match(ious: dict[tuple[int, int], float], threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs among ``ious`` (>= threshold) maximising the summed IoU (Hungarian per group)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cand = [(a, b, v) for (a, b), v in ious.items() if v >= threshold and v > 0]
    if not cand:
        return []
    refs = sorted({a for a, _, _ in cand})
    preds = sorted({b for _, b, _ in cand})
    ri = {a: i for i, a in enumerate(refs)}
    pi = {b: len(refs) + i for i, b in enumerate(preds)}
    n = len(refs) + len(preds)
    graph = coo_matrix(
        ([1] * len(cand), ([ri[a] for a, _, _ in cand], [pi[b] for _, b, _ in cand])), shape=(n, n)
    )
    _, group = connected_components(graph, directed=False)
    pairs: list[tuple[int, int]] = []
    for g in np.unique(group):
        g_refs = [a for a in refs if group[ri[a]] == g]
        g_preds = [b for b in preds if group[pi[b]] == g]
        if len(g_refs) == 1 and len(g_preds) == 1:
            pairs.append((g_refs[0], g_preds[0]))
            continue
        m = np.zeros((len(g_refs), len(g_preds)))
        for i, a in enumerate(g_refs):
            for j, b in enumerate(g_preds):
                v = ious.get((a, b), 0.0)
                m[i, j] = v if v >= threshold else 0.0
        rows, cols = linear_sum_assignment(m, maximize=True)
        pairs.extend((g_refs[i], g_preds[j]) for i, j in zip(rows, cols, strict=True) if m[i, j] > 0)
    return pairs


def _pair_ious(
    pred_lab: np.ndarray, ref_lab: np.ndarray
) -> tuple[np.ndarray, dict[int, int], np.ndarray, dict[int, int], dict[tuple[int, int], float]]:
    """Object ids and sizes of both images and the IoU of every overlapping (reference, predicted) pair."""
    ref_ids, ref_sizes = np.unique(ref_lab[ref_lab > 0], return_counts=True)
    pred_ids, pred_sizes = np.unique(pred_lab[pred_lab > 0], return_counts=True)
    ref_size = dict(zip(ref_ids.tolist(), ref_sizes.tolist(), strict=True))
    pred_size = dict(zip(pred_ids.tolist(), pred_sizes.tolist(), strict=True))
    both = (ref_lab > 0) & (pred_lab > 0)
    overlapping = np.stack([ref_lab[both].astype(np.int64), pred_lab[both].astype(np.int64)])
    pairs, inter = np.unique(overlapping, axis=1, return_counts=True)
    ious: dict[tuple[int, int], float] = {}
    for (a, b), i in zip(pairs.T.tolist(), inter.tolist(), strict=True):
        ious[(a, b)] = i / (ref_size[a] + pred_size[b] - i)
    return ref_ids, ref_size, pred_ids, pred_size, ious


def _object_rows(
    pred_lab: np.ndarray,
    ref_lab: np.ndarray,
    spacing: np.ndarray,
    tolerance: float,
    tag: str,
    match_iou: float,
    spatial: str,
) -> list[dict[str, Any]]:
    """Per-object rows for one frame (n-D spatial arrays of instance labels)."""
    ref_ids, ref_size, pred_ids, pred_size, ious = _pair_ious(pred_lab, ref_lab)
    best_ref: dict[int, float] = {}
    best_pred: dict[int, float] = {}
    for (a, b), v in ious.items():
        best_ref[a] = max(best_ref.get(a, 0.0), v)
        best_pred[b] = max(best_pred.get(b, 0.0), v)
    matched = dict(_match(ious, match_iou))
    ref_boxes = _boxes(ref_lab, ref_ids)
    pred_boxes = _boxes(pred_lab, pred_ids)
    ref_centers = _centers(ref_lab, ref_ids)
    pred_centers = _centers(pred_lab, pred_ids)
    missing = {f"hd95_{tag}": math.nan, f"assd_{tag}": math.inf, "nsd": 0.0}  # MONAI's one-empty values

    def row(a: int, b: int, status: str, center: np.ndarray) -> dict[str, Any]:
        return {
            "reference_label": a,
            "predicted_label": b,
            "status": status,
            "reference_voxels": ref_size.get(a, 0),
            "predicted_voxels": pred_size.get(b, 0),
            **{f"center_{ax.lower()}": float(c) for ax, c in zip(spatial, center, strict=True)},
        }

    rows = []
    for a in ref_ids.tolist():
        if a in matched:
            b = matched[a]
            box = tuple(
                slice(min(s.start, t.start), max(s.stop, t.stop))
                for s, t in zip(ref_boxes[a], pred_boxes[b], strict=True)
            )
            ro, po = ref_lab[box] == a, pred_lab[box] == b
            i = ious[(a, b)]
            d = surface_distances(po, ro, spacing)
            rows.append(
                {
                    **row(a, b, "matched", ref_centers[a]),
                    "iou": i,
                    "best_iou": best_ref.get(a, 0.0),
                    "dice": 2 * i / (1 + i),
                    **_surface_scores(d, tolerance, tag),
                }
            )
        else:
            rows.append(
                {
                    **row(a, 0, "missed", ref_centers[a]),
                    "iou": 0.0,
                    "best_iou": best_ref.get(a, 0.0),
                    "dice": 0.0,
                    **missing,
                }
            )
    taken = set(matched.values())
    for b in pred_ids.tolist():
        if b not in taken:
            rows.append(
                {
                    **row(0, b, "false positive", pred_centers[b]),
                    "iou": 0.0,
                    "best_iou": best_pred.get(b, 0.0),
                    "dice": 0.0,
                    **missing,
                }
            )
    return rows


def _boxes(lab: np.ndarray, ids: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Bounding box of each label (one pass over the array; sparse label values are fine)."""
    from scipy import ndimage

    if ids.size == 0:
        return {}
    # find_objects indexes by label value; remap to 1..n so huge sparse values cost nothing.
    compact = np.searchsorted(ids, lab) + 1
    compact[lab == 0] = 0
    objs = ndimage.find_objects(compact.astype(np.int64))
    return {int(v): objs[i] for i, v in enumerate(ids.tolist())}


def _centers(lab: np.ndarray, ids: np.ndarray) -> dict[int, np.ndarray]:
    """Centroid of each label in pixel coordinates (index space, not physical)."""
    from scipy import ndimage

    if ids.size == 0:
        return {}
    centers = ndimage.center_of_mass(np.ones(lab.shape, np.uint8), lab, ids.tolist())
    return {int(v): np.asarray(c, dtype=np.float64) for v, c in zip(ids.tolist(), centers, strict=True)}


# ------------------------------------------------------------------------------------------ the API
def compare_masks(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing: SpacingLike = None,
    axes: str | None = None,
    unit: str | None = None,
    tolerance: float | None = None,
    per_slice: bool = True,
    per_object: bool = True,
    objects: ObjectsMode = "auto",
    match_iou: float = 0.5,
    worst_by: Literal["errors", "dice"] = "errors",
    names: tuple[str, str] = ("prediction", "reference"),
) -> ComparisonReport:
    """Compare label image ``pred`` with the reference ``ref`` (same shape, 2-D to 4-D).

    ``pred``, ``ref``: integer or boolean label images (instance or class labels; > 0 is
    foreground for Dice/IoU/surface metrics). ``spacing``: pixel size per axis (napari's
    ``layer.scale``; a number for isotropic), None for pixels. ``unit``: the spacing's unit for
    the keys (``"mm"`` -> ``hd95_mm``). ``axes``: e.g. ``"ZYX"`` (default by dimension, see
    ``labelutils``). ``tolerance``: NSD tolerance in ``unit``; default one voxel's extent along its
    coarsest spatial axis (max spacing; 1 pixel without spacing), so that a boundary one voxel
    off in any direction counts as correct. ``objects``: how objects are found for the per-object
    table (``"auto"``: connected components of binary masks, label values otherwise).
    ``match_iou``: minimum IoU of a matched pair, in (0, 1]. ``worst_by``: ``"errors"`` (most
    disagreeing pixels) or ``"dice"`` (lowest Dice) picks ``worst_slice``. ``names``: the two
    images' names for ``summary()``.

    Raises ``UserError`` for different shapes (naming both), bad axes, spacing, tolerance or
    ``match_iou``. Empty masks follow ``surface_metrics`` (nan/inf, documented there).
    """
    p_raw, r_raw = np.asarray(pred), np.asarray(ref)
    if p_raw.shape != r_raw.shape:
        raise UserError(
            f"{names[0]} has shape {p_raw.shape} but {names[1]} has {r_raw.shape}; "
            "compare masks of the same image."
        )
    ax = resolve_axes(p_raw.ndim, axes)
    sp = axis_spacing(spacing, ax)
    tag = unit_tag(unit, spacing)
    if not 0 < match_iou <= 1:
        raise UserError(f"match_iou must be in (0, 1], got {match_iou}.")
    if worst_by not in ("errors", "dice"):
        raise UserError(f"worst_by must be 'errors' or 'dice', got {worst_by!r}.")
    n_time = 1 if ax.startswith("T") else 0
    spatial = ax[n_time:]
    sp_spatial = sp[n_time:]
    tol = float(sp_spatial.max()) if tolerance is None else float(tolerance)
    if not math.isfinite(tol) or tol < 0:
        raise UserError(f"the NSD tolerance must be a finite number >= 0 ({tag}), got {tolerance!r}.")
    p_raw, r_raw = check_labels(p_raw), check_labels(r_raw)
    # "auto" is decided once per image (a binary prediction against instance labels is split into
    # components, the reference is not); components are found frame by frame.
    mode_p, mode_r = objects_mode(p_raw, objects), objects_mode(r_raw, objects)
    p, r = p_raw > 0, r_raw > 0

    error_map = np.zeros(p.shape, np.uint8)
    error_map[p & ~r] = ERROR_FALSE_POSITIVE
    error_map[~p & r] = ERROR_FALSE_NEGATIVE

    voxel = float(np.prod(sp_spatial))
    size_key = "volume" if len(spatial) == 3 else "area"
    size_unit = f"{tag}{len(spatial)}" if tag != "px" else ("vox" if len(spatial) == 3 else "px")
    overall: dict[str, Any] = {
        **_overlap_scores(p, r),
        **_surface_scores(_pooled_distances(p, r, n_time, sp_spatial), tol, tag),
        f"tolerance_{tag}": tol,
        f"reference_{size_key}_{size_unit}": float(np.count_nonzero(r)) * voxel,
        f"predicted_{size_key}_{size_unit}": float(np.count_nonzero(p)) * voxel,
        "false_positive_voxels": int(np.count_nonzero(error_map == ERROR_FALSE_POSITIVE)),
        "false_negative_voxels": int(np.count_nonzero(error_map == ERROR_FALSE_NEGATIVE)),
    }

    slices: list[dict[str, Any]] = []
    n_lead = len(ax) - 2
    if per_slice and n_lead:
        for idx, pp in iter_frames(p, n_lead):
            rr = r[idx]
            if not (pp.any() or rr.any()):
                continue
            d = surface_distances(pp, rr, sp[-2:])
            fp = int(np.count_nonzero(pp & ~rr))
            fn = int(np.count_nonzero(~pp & rr))
            slices.append(
                {
                    **{a.lower(): i for a, i in zip(ax, idx, strict=False)},
                    **_overlap_scores(pp, rr),
                    **_surface_scores(d, tol, tag),
                    "reference_pixels": int(np.count_nonzero(rr)),
                    "predicted_pixels": int(np.count_nonzero(pp)),
                    "false_positive_pixels": fp,
                    "false_negative_pixels": fn,
                    "errors": fp + fn,
                }
            )
    worst = None
    if slices:
        if worst_by == "dice":
            chosen = min(slices, key=lambda s: (s["dice"], -s["errors"]))
        else:
            chosen = min(slices, key=lambda s: (-s["errors"], s["dice"]))
        worst = _slice_index(chosen, ax)

    objs: list[dict[str, Any]] = []
    if per_object:
        for idx, pl in iter_frames(p_raw, n_time):
            rows = _object_rows(
                instance_labels(pl, mode_p),
                instance_labels(r_raw[idx], mode_r),
                sp_spatial,
                tol,
                tag,
                match_iou,
                spatial,
            )
            objs.extend({**({"t": idx[0]} if n_time else {}), **row} for row in rows)
        status = [o["status"] for o in objs]
        overall.update(
            {
                "reference_objects": sum(s != "false positive" for s in status),
                "predicted_objects": sum(s != "missed" for s in status),
                "matched_objects": status.count("matched"),
                "missed_objects": status.count("missed"),
                "false_positive_objects": status.count("false positive"),
                **_detection_quality(
                    status.count("matched"),
                    status.count("false positive"),
                    status.count("missed"),
                    sum(o["iou"] for o in objs if o["status"] == "matched"),
                ),
            }
        )
    return ComparisonReport(
        overall=overall,
        per_slice=slices,
        per_object=objs,
        error_map=error_map,
        worst_slice=worst,
        axes=ax,
        spacing=tuple(float(s) for s in sp),
        unit=tag,
        tolerance=tol,
        match_iou=float(match_iou),
        names=names,
    )


def object_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    match_iou: float = 0.5,
    objects: ObjectsMode = "auto",
    axes: str | None = None,
) -> dict[str, float]:
    """Object-level detection and panoptic quality of ``pred`` against ``ref`` (same shape).

    Objects are matched one-to-one exactly as in ``compare_masks`` (candidate pairs with IoU >=
    ``match_iou``, Hungarian assignment maximising the summed IoU; at 0.5 and above the matching
    is unique). Then, with TP matched pairs, FP unmatched predicted objects and FN unmatched
    reference objects: ``precision`` TP / (TP + FP), ``recall`` TP / (TP + FN), ``f1``
    2 TP / (2 TP + FP + FN); ``sq`` (segmentation quality) the mean IoU of the matched pairs,
    ``rq`` (recognition quality) = ``f1``, and ``pq`` (panoptic quality, Kirillov et al. 2019)
    = sq x rq = sum of matched IoUs / (TP + FP / 2 + FN / 2). Two empty images score 1.
    Objects are found per frame of a time series, as in ``compare_masks`` (``objects``, ``axes``:
    see there); no surface distances are computed, so this is fast on large images.
    Raises ``UserError`` for different shapes or a ``match_iou`` outside (0, 1].
    """
    p_raw, r_raw = check_labels(np.asarray(pred)), check_labels(np.asarray(ref))
    if p_raw.shape != r_raw.shape:
        raise UserError(f"prediction has shape {p_raw.shape} but reference has {r_raw.shape}.")
    if not 0 < match_iou <= 1:
        raise UserError(f"match_iou must be in (0, 1], got {match_iou}.")
    ax = resolve_axes(p_raw.ndim, axes)
    n_time = 1 if ax.startswith("T") else 0
    mode_p, mode_r = objects_mode(p_raw, objects), objects_mode(r_raw, objects)
    tp = fp = fn = 0
    iou_sum = 0.0
    for idx, frame in iter_frames(p_raw, n_time):
        ref_ids, _, pred_ids, _, ious = _pair_ious(
            instance_labels(frame, mode_p), instance_labels(r_raw[idx], mode_r)
        )
        pairs = _match(ious, match_iou)
        tp += len(pairs)
        fp += len(pred_ids) - len(pairs)
        fn += len(ref_ids) - len(pairs)
        iou_sum += sum(ious[p] for p in pairs)
    if tp + fp + fn == 0:
        return dict(tp=0, fp=0, fn=0, precision=1.0, recall=1.0, f1=1.0, sq=1.0, rq=1.0, pq=1.0)
    f1 = 2 * tp / (2 * tp + fp + fn)
    sq = iou_sum / tp if tp else 0.0
    return dict(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        f1=f1,
        sq=sq,
        rq=f1,
        pq=sq * f1,
    )


def _detection_quality(tp: int, fp: int, fn: int, iou_sum: float) -> dict[str, float]:
    """``compare_masks``' overall object F1 and panoptic quality (see ``object_scores``)."""
    if tp + fp + fn == 0:
        return {"object_f1": 1.0, "panoptic_quality": 1.0}
    return {"object_f1": 2 * tp / (2 * tp + fp + fn), "panoptic_quality": iou_sum / (tp + 0.5 * (fp + fn))}
