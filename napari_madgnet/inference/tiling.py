"""The one tiler: sliding-window tiles and their smooth blending (deployment and validation).

Tiles overlap; each tile's probabilities are multiplied by a separable cosine window that is
largest at the tile centre and small (never zero) at its edges, summed into an accumulator and
divided by the summed weights. The result is a weighted average in which tile borders, where
a network sees the least context, count least: no seams. Only one batch of tiles is in memory at
a time, so memory grows with the output, not with the number of tiles.

``iter_sliding_window`` is used by the inference engine and by the training loop's validation, so
the model chosen as "best" is scored by exactly the predictor users run. Contract of ``forward``
(as ``runner.Runner`` implements it): a (B, C, h, w) float32 CPU tensor in [0, 1] in, (B, K, h, w)
float32 CPU sigmoid probabilities out. The method is the usual one of MONAI's
``SlidingWindowInferer`` with a cosine ("gaussian"-like) importance map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from functools import lru_cache

import numpy as np
import torch

from napari_madgnet.jobs import CancelToken, check_cancelled

#: Weight at the very edge of a tile, relative to 1 at its centre; > 0 so image borders covered
#: only by a tile edge still get a defined value.
EDGE_WEIGHT = 1e-3


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap.

    The last tile is shifted to end exactly at the border (no padding needed when
    ``length >= tile``); a single tile at 0 when ``length <= tile``.
    """
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / stride) + 1
    if n == 1:
        return [0]
    # spread the tiles evenly so all overlaps are about equal
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@lru_cache(maxsize=8)
def weight_window(tile: int) -> np.ndarray:
    """A (tile, tile) float32 separable cosine (Hann) window with a floor of ``EDGE_WEIGHT``."""
    pos = (np.arange(tile, dtype=np.float64) + 0.5) / tile
    w1 = np.maximum(0.5 - 0.5 * np.cos(2.0 * np.pi * pos), EDGE_WEIGHT)
    window = np.outer(w1, w1).astype(np.float32)
    window.setflags(write=False)
    return window


def tile_grid(shape: tuple[int, int], tile: int, overlap: float) -> list[tuple[int, int]]:
    """Top-left corners of all tiles of a (H, W) plane."""
    ys = tile_starts(shape[0], tile, overlap)
    xs = tile_starts(shape[1], tile, overlap)
    return [(y, x) for y in ys for x in xs]


def batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


Forward = Callable[[torch.Tensor], torch.Tensor]


def _pad_to(plane: np.ndarray, tile: int) -> np.ndarray:
    """Pad a (H, W, C) plane smaller than a tile up to the tile (reflect; edge for 1-px sides)."""
    pad_y, pad_x = max(0, tile - plane.shape[0]), max(0, tile - plane.shape[1])
    if not (pad_y or pad_x):
        return plane
    mode = "reflect" if min(plane.shape[:2]) > 1 else "edge"
    return np.pad(plane, ((0, pad_y), (0, pad_x), (0, 0)), mode=mode)


def effective_tile(shape: tuple[int, int], tile: int) -> int:
    """The tile used on a plane: ``tile``, or less on a plane smaller than it (rounded up to 32,
    the network's stride, so a small plane is one forward pass of about its own size)."""
    return min(int(tile), 32 * math.ceil(max(shape) / 32))


def iter_sliding_window(
    plane: np.ndarray,
    forward: Forward,
    tile: int,
    overlap: float,
    batch_size: int = 1,
    cancel: CancelToken | None = None,
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """Probabilities of a (H, W, C) float32 plane from blended ``tile`` x ``tile`` windows.

    Yields ``(tiles done, tiles in all)`` after each batch of tiles and returns a (K, H, W)
    float32 CPU tensor. ``cancel`` is checked before each batch (raises ``jobs.Cancelled``).
    """
    h, w = plane.shape[:2]
    t = effective_tile((h, w), tile)
    padded = _pad_to(plane, t)
    corners = tile_grid(padded.shape[:2], t, overlap)
    window = torch.from_numpy(weight_window(t).copy())
    acc: torch.Tensor | None = None
    wsum = torch.zeros(padded.shape[:2], dtype=torch.float32)
    done = 0
    for group in batches(corners, max(1, int(batch_size))):
        check_cancelled(cancel)
        x = np.stack([padded[y : y + t, x0 : x0 + t] for y, x0 in group]).transpose(0, 3, 1, 2)
        probs = forward(torch.from_numpy(np.ascontiguousarray(x)))
        if acc is None:
            acc = torch.zeros((probs.shape[1], *padded.shape[:2]), dtype=torch.float32)
        for (y, x0), p in zip(group, probs, strict=True):
            acc[:, y : y + t, x0 : x0 + t] += p * window
            wsum[y : y + t, x0 : x0 + t] += window
        done += len(group)
        yield done, len(corners)
    assert acc is not None  # a plane has at least one tile
    acc /= wsum
    return acc[:, :h, :w]
