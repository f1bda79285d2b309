"""Res2Net-50 v1b 26w 4s (Gao et al. 2019): hierarchical multi-scale bottlenecks, deep stem."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import Encoder, deep_stem


class Res2NetBottleneck(nn.Module):
    """1x1 reduce into ``scale`` slices; each 3x3 slice conv sees the previous slice's output.

    The first block of a stage ("stage" type) convolves every slice independently with the
    stage's stride and average-pools the last slice instead of passing it through.
    """

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        first: bool = False,
        base_width: int = 26,
        scale: int = 4,
    ) -> None:
        super().__init__()
        width = planes * base_width // 64
        self.width = width
        self.first = first
        self.conv1 = nn.Conv2d(in_ch, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if first else None
        self.conv3 = nn.Conv2d(width * scale, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = torch.split(F.relu(self.bn1(self.conv1(x)), inplace=True), self.width, dim=1)
        outs: list[torch.Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            inp = slices[i] if (i == 0 or self.first) else outs[-1] + slices[i]
            outs.append(F.relu(bn(conv(inp)), inplace=True))
        outs.append(self.pool(slices[-1]) if self.pool is not None else slices[-1])
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class Res2Net50(Encoder):
    """Res2Net-50 v1b encoder, base width 26, scale 4 (deep stem 32, avg-down shortcuts)."""

    def __init__(self, depths: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = deep_stem(32)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            stride = 1 if index == 0 else 2
            pool = (  # a 1x1 pool at stride 1 does nothing; index 0 holds no weights
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                if stride > 1
                else nn.Identity()
            )
            shortcut = nn.Sequential(
                pool,
                nn.Conv2d(in_ch, planes * 4, 1, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
            blocks = [Res2NetBottleneck(in_ch, planes, stride, shortcut, first=True)]
            blocks += [Res2NetBottleneck(planes * 4, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
            in_ch = planes * 4
