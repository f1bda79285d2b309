"""Sliding-window tiles and their smooth blending.

Tiles overlap; each tile's probabilities are multiplied by a separable cosine window that is
largest at the tile centre and small (never zero) at its edges, summed into an accumulator and
divided by the summed weights. The result is a weighted average in which tile borders, where
a network sees the least context, count least: no seams. Only one batch of tiles is in memory at
a time, so memory grows with the output, not with the number of tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

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
