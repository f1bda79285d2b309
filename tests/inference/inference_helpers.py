"""Helpers shared by the inference tests (imported as a plain module, not a fixture file)."""

from __future__ import annotations

import numpy as np
import torch


class CountingModel(torch.nn.Module):
    """Wraps a model, counting forward calls and the batch sizes it saw."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []
        self.checkpoint_info = getattr(inner, "checkpoint_info", {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.inner(x)


def rng_image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    """A smooth random image (blobs), so the network sees structure rather than white noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), sigma=3)
    img = (img - img.min()) / (np.ptp(img) + 1e-9)
    if np.dtype(dtype) == bool:
        return img > 0.5
    if np.issubdtype(dtype, np.integer):
        return (img * min(np.iinfo(dtype).max, 60000)).astype(dtype)
    return img.astype(dtype)
