"""One 2-D plane through the network: resized whole (the release's protocol) or as blended tiles.

The inference engine runs every plane of an image through ``iter_predict_plane`` and the training
loop's validation scores its validation planes with it, so "best model" means best under the
predictor users run. Planes arrive normalised: (H, W, C) float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch
import torch.nn.functional as F

from napari_madgnet.inference.tiling import Forward, iter_sliding_window
from napari_madgnet.jobs import CancelToken, check_cancelled, run_to_end


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to ``size``, antialiased when shrinking (no-op if equal)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def to_tensor(planes: list[np.ndarray]) -> torch.Tensor:
    """(H, W, C) float32 planes of one shape -> a (B, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(planes).transpose(0, 3, 1, 2)))


def resize_in(plane: np.ndarray, size: int) -> torch.Tensor:
    """A (H, W, C) plane as the (1, C, size, size) network input of the resize geometry."""
    return resize(to_tensor([plane]), (size, size))


def resize_out(probabilities: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(K, size, size) probabilities back to the plane's (K, H, W)."""
    return resize(probabilities[None], shape)[0]


def iter_predict_plane(
    plane: np.ndarray,
    forward: Forward,
    *,
    geometry: str,
    input_size: int,
    tile_size: int,
    overlap: float,
    scale: float = 1.0,
    batch_size: int = 1,
    cancel: CancelToken | None = None,
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """(K, H, W) float32 probabilities of a (H, W, C) plane; yields ``(done, total)`` forwards.

    ``geometry``: "resize" (the whole plane at ``input_size`` x ``input_size``, probabilities
    resized back) or "tiles" (``tile_size`` windows with ``overlap``, at ``scale`` x the native
    resolution, blended by ``tiling.iter_sliding_window``). Raises ``jobs.Cancelled``.
    """
    shape = plane.shape[:2]
    if geometry == "resize":
        check_cancelled(cancel)
        probs = forward(resize_in(plane, input_size))[0]
        yield 1, 1
        return resize_out(probs, shape)
    if geometry != "tiles":
        raise ValueError(f"geometry must be 'resize' or 'tiles' here, got {geometry!r}")
    if scale != 1.0:
        scaled = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
        plane = resize(to_tensor([plane]), scaled)[0].permute(1, 2, 0).numpy()
    probs = yield from iter_sliding_window(plane, forward, tile_size, overlap, batch_size, cancel)
    return resize_out(probs, shape) if probs.shape[-2:] != shape else probs


def predict_plane(plane: np.ndarray, forward: Forward, **kwargs: object) -> torch.Tensor:
    """``iter_predict_plane`` run to its end (no progress reports)."""
    return run_to_end(iter_predict_plane(plane, forward, **kwargs))  # type: ignore[arg-type]
