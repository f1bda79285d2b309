"""Annotate next: where a correction would help most, ranked from a per-pixel uncertainty map.

``suggest_corrections(uncertainty, axes)`` cuts the image into square regions (large 2-D images)
or takes whole planes (stacks) and ranks them by their mean uncertainty, most uncertain first.
The uncertainty is a ``SegmentationResult.uncertainty`` (``inference.heads``: the disagreement
of the decoder stages and of flip TTA, in [0, 1]); classes are pooled by their maximum.

The result is a list of ``Suggestion`` (plane index, box, score, rank); ``shapes_data`` and
``points_data`` turn it into the vertices of rectangles and the centres that a napari Shapes or
Points layer takes (the widgets only show them). Regions already corrected are passed as
``exclude`` so the next round suggests new ones. How much this helps is measured in
``benchmarks/bench_active_learning.py`` (docs/heads.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_madgnet.errors import UserError

#: Ways to cut the image: "regions" (squares in every plane), "slices" (whole planes), "auto"
#: (slices for stacks, regions for single 2-D images).
SUGGEST_MODES: tuple[str, ...] = ("auto", "regions", "slices")


@dataclass(frozen=True)
class Suggestion:
    """One place to correct: ``index`` along the stack axes (``()`` for a 2-D image), the box
    ``(y0, x0, y1, x1)`` in pixels (end exclusive; the whole plane for a slice), its ``score``
    (the mean uncertainty inside, in [0, 1]) and its ``rank`` (0 = most uncertain)."""

    index: tuple[int, ...]
    box: tuple[int, int, int, int]
    score: float
    rank: int = 0

    @property
    def center(self) -> tuple[float, ...]:
        """(*index, y, x) of the box centre, in pixel coordinates."""
        y0, x0, y1, x1 = self.box
        return (*map(float, self.index), (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)

    def overlaps(self, other: Suggestion | tuple[tuple[int, ...], tuple[int, int, int, int]]) -> bool:
        """True when ``other`` (a Suggestion or an ``(index, box)`` pair) shares a pixel with this one."""
        index, box = (other.index, other.box) if isinstance(other, Suggestion) else other
        if tuple(index) != self.index:
            return False
        return box[0] < self.box[2] and self.box[0] < box[2] and box[1] < self.box[3] and self.box[1] < box[3]


def _starts(length: int, size: int) -> list[int]:
    """Non-overlapping windows of ``size`` covering ``length``; the last one shifted to end at the border."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def suggest_corrections(
    uncertainty: Any,
    axes: str | None = None,
    *,
    mode: str = "auto",
    region_size: int = 64,
    count: int = 5,
    exclude: Iterable[Suggestion | tuple[tuple[int, ...], tuple[int, int, int, int]]] = (),
) -> list[Suggestion]:
    """The ``count`` most uncertain regions or slices of an uncertainty map, most uncertain first.

    ``uncertainty``: (K, *spatial) float in [0, 1] as ``SegmentationResult.uncertainty`` (numpy
    or zarr, read plane by plane), or (*spatial) when ``axes`` has as many letters as it has
    dimensions. ``axes``: the spatial axes (``SegmentationResult.axes``, e.g. "YX", "ZYX",
    "TZYX"; None: "YX" with leading stack axes). ``mode``: see ``SUGGEST_MODES``.
    ``region_size``: side of the square regions in pixels (non-overlapping, the last row and
    column shifted to end at the border; smaller planes are one region). ``exclude``: regions
    already corrected: suggestions sharing a pixel with one of them are skipped.
    Raises ``UserError`` for a bad mode, size, count or axes.
    """
    if mode not in SUGGEST_MODES:
        raise UserError(f"mode must be one of {', '.join(SUGGEST_MODES)}, got {mode!r}.")
    if int(region_size) < 1 or int(count) < 1:
        raise UserError(f"region_size and count must be >= 1, got {region_size} and {count}.")
    shape = tuple(uncertainty.shape)
    has_classes = axes is None or len(axes) < len(shape)
    spatial = shape[1:] if has_classes else shape
    if len(spatial) < 2 or (axes is not None and len(axes) != len(spatial)):
        raise UserError(
            f"uncertainty of shape {shape} does not fit axes {axes!r}: pass (classes, ..., Y, X) with the "
            "result's spatial axes (SegmentationResult.axes)."
        )
    stack_shape = spatial[:-2]
    h, w = spatial[-2:]
    if mode == "auto":
        mode = "slices" if int(np.prod(stack_shape, dtype=np.int64)) > 1 else "regions"
    done = list(exclude)
    candidates: list[Suggestion] = []
    for index in np.ndindex(*stack_shape):
        key = (slice(None), *index) if has_classes else index
        plane = np.asarray(uncertainty[key], dtype=np.float64)
        if has_classes:
            plane = plane.max(axis=0)
        if mode == "slices":
            candidates.append(Suggestion(tuple(index), (0, 0, h, w), float(plane.mean())))
            continue
        size = int(region_size)
        # window sums from one summed-area table: every region costs four look-ups
        table = np.zeros((h + 1, w + 1))
        table[1:, 1:] = plane.cumsum(0).cumsum(1)
        for y in _starts(h, size):
            for x in _starts(w, size):
                y1, x1 = min(y + size, h), min(x + size, w)
                total = table[y1, x1] - table[y, x1] - table[y1, x] + table[y, x]
                candidates.append(
                    Suggestion(tuple(index), (y, x, y1, x1), float(total / ((y1 - y) * (x1 - x))))
                )
    candidates.sort(key=lambda s: -s.score)
    chosen: list[Suggestion] = []
    for cand in candidates:
        if any(cand.overlaps(d) for d in done):
            continue
        chosen.append(Suggestion(cand.index, cand.box, cand.score, len(chosen)))
        if len(chosen) == int(count):
            break
    return chosen


def random_regions(
    shape: Sequence[int],
    *,
    region_size: int = 64,
    count: int = 2,
    seed: int = 0,
    exclude: Iterable[Suggestion | tuple[tuple[int, ...], tuple[int, int, int, int]]] = (),
) -> list[Suggestion]:
    """``count`` regions of the same grid as ``suggest_corrections`` drawn at random (score 0):
    the baseline an uncertainty ranking has to beat. ``shape``: the spatial shape (..., H, W)."""
    zeros = np.zeros((1, *shape), np.float32)  # one class
    grid = suggest_corrections(zeros, None, mode="regions", region_size=region_size, count=10**9)
    done = list(exclude)
    free = [s for s in grid if not any(s.overlaps(d) for d in done)]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(free), size=min(int(count), len(free)), replace=False)
    return [Suggestion(free[i].index, free[i].box, 0.0, r) for r, i in enumerate(picked.tolist())]


def shapes_data(suggestions: Sequence[Suggestion]) -> list[np.ndarray]:
    """Rectangles for a napari Shapes layer (``shape_type="rectangle"``): for each suggestion a
    (4, ndim) float array of corners (*index, y, x), pixel edges at -0.5 so the box covers its
    pixels exactly as napari draws them."""
    out = []
    for s in suggestions:
        y0, x0, y1, x1 = (v - 0.5 for v in s.box)
        lead = [float(i) for i in s.index]
        out.append(np.array([[*lead, y0, x0], [*lead, y0, x1], [*lead, y1, x1], [*lead, y1, x0]]))
    return out


def points_data(suggestions: Sequence[Suggestion]) -> np.ndarray:
    """(N, ndim) box centres for a napari Points layer (empty (0, 2) when there are none)."""
    if not suggestions:
        return np.zeros((0, 2))
    return np.array([s.center for s in suggestions], dtype=float)


def features(suggestions: Sequence[Suggestion]) -> dict[str, np.ndarray]:
    """Per-suggestion columns for a layer's ``features`` (rank, score, box) and a table widget."""
    boxes = np.array([s.box for s in suggestions], dtype=int).reshape(-1, 4)
    return {
        "rank": np.array([s.rank + 1 for s in suggestions], dtype=int),
        "score": np.array([s.score for s in suggestions], dtype=float),
        "y0": boxes[:, 0],
        "x0": boxes[:, 1],
        "y1": boxes[:, 2],
        "x1": boxes[:, 3],
    }
