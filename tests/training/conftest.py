"""Small, fast fixtures for training tests: 2 CPU threads, tiny synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def blobs(shape: tuple[int, int] = (96, 96), n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image of bright discs on noise and their uint16 instance labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i in range(n):
        cy, cx = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        r = rng.integers(4, 9)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
    image = (rng.normal(40, 10, shape) + 150 * (labels > 0)).clip(0, 255).astype(np.uint8)
    return image, labels


@pytest.fixture
def tiny_cfg():
    from napari_madgnet.training import TrainConfig

    return TrainConfig.finetune(
        init="scratch",
        patch_size=64,
        batch_size=2,
        max_steps=2,
        steps_per_epoch=1,
        checkpoint_every=1,
        warmup_steps=0,
    )
