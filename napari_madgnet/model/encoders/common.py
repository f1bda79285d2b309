"""Pieces shared by the three encoders: the feature interface and the deep stem."""

from __future__ import annotations

import torch
from torch import nn

# Channels of the five feature maps every encoder returns (stride 2, 4, 8, 16, 32).
FEATURE_CHANNELS: tuple[int, int, int, int, int] = (64, 256, 512, 1024, 2048)


def deep_stem(width: int = 32) -> nn.Sequential:
    """Three 3x3 convolutions replacing the 7x7 stem (ResNet-D); indices match the weights."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, stride=1, padding=1, bias=False),
    )


class Encoder(nn.Module):
    """Base for the encoders: a stem (``conv1``, ``bn1``), max-pool and four residual stages.

    Subclasses fill ``conv1``, ``bn1`` and ``layer1``..``layer4``; attribute names follow the
    ImageNet weight files so that those load without renaming.
    """

    feature_channels = FEATURE_CHANNELS

    conv1: nn.Module
    bn1: nn.BatchNorm2d
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the five feature maps, finest first: stem (before max-pool), layer1..layer4."""
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]
