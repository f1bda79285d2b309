"""ResNet-50 (He et al. 2016, torchvision layout: stride in the 3x3 conv, "v1.5")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import Encoder


class ResNetBottleneck(nn.Module):
    """1x1 reduce, strided 3x3, 1x1 expand, projection shortcut on the first block of a stage."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class ResNet50(Encoder):
    """ResNet-50 encoder with the 7x7 stem."""

    def __init__(self, depths: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            stride = 1 if index == 0 else 2
            shortcut = nn.Sequential(
                nn.Conv2d(in_ch, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
            blocks = [ResNetBottleneck(in_ch, planes, stride, shortcut)]
            blocks += [ResNetBottleneck(planes * 4, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
            in_ch = planes * 4
