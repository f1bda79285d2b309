"""Fixtures for the medical and video tests: a small saved MADGNet, a stand-in network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def madgnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random MADGNet (ResNet-50 encoder) saved as a checkpoint whose input size is 32 px."""
    from napari_madgnet.model import MADGNet, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-madgnet.pth"
    save_model(
        MADGNet(backbone="resnet50", num_classes=1).eval(),
        path,
        {
            "preprocessing": {"normalization": "scale255", "input_size": 32, "channels": 3},
            "provenance": {"trained_on": "nothing (random weights, tests)"},
        },
    )
    return path


class Threshold(torch.nn.Module):
    """A stand-in network whose mask is "normalised intensity above 0.5" (channel mean), so the
    intensities that reached it can be read off its output. Counts its forward passes."""

    def __init__(self, input_size: int = 32) -> None:
        super().__init__()
        self.checkpoint_info = {"preprocessing": {"input_size": input_size, "channels": 3}}
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return (x.mean(dim=1, keepdim=True) - 0.5) * 1000.0
