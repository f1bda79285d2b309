"""ResNeSt-50 (Zhang et al. 2020): split-attention bottlenecks, radix 2, deep stem, avg-down."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .common import Encoder, deep_stem


class _StatsFallbackBatchNorm(nn.BatchNorm2d):
    """BatchNorm that, in training mode, falls back to its running statistics when it sees a
    single value per channel (batch 1 after global pooling), where batch statistics do not exist.

    The release fails there ("Expected more than 1 value per channel"); normalising with the
    running statistics (and not updating them) lets batch-1 training run. Evaluation mode and
    every batch of two or more behave exactly like ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


class SplitAttentionConv(nn.Module):
    """3x3 convolution into ``radix`` groups, recombined by a softmax attention over the groups.

    Keys: ``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2`` (cardinality 1 only, as in ResNeSt-50).
    """

    def __init__(self, channels: int, stride: int = 1, radix: int = 2, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels * radix // reduction, 32)
        self.radix = radix
        self.channels = channels
        self.conv = nn.Conv2d(
            channels, channels * radix, 3, stride=stride, padding=1, groups=radix, bias=False
        )
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = _StatsFallbackBatchNorm(hidden)
        self.fc2 = nn.Conv2d(hidden, channels * radix, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn0(self.conv(x)), inplace=True)
        b = y.shape[0]
        # The radix groups as channel slices, summed with adds: a sum over a (B, radix, C, H, W)
        # view is a strided reduction, 15 % of a bf16 forward on the CPU; the adds are not.
        groups = y.split(self.channels, dim=1)
        context = functools.reduce(torch.add, groups).mean(dim=(2, 3), keepdim=True)
        context = F.relu(self.bn1(self.fc1(context)), inplace=True)
        weights = self.fc2(context).view(b, self.radix, self.channels, 1, 1).softmax(dim=1)
        return functools.reduce(torch.add, (g * weights[:, i] for i, g in enumerate(groups)))


class ResNeStBottleneck(nn.Module):
    """1x1 reduce, split-attention 3x3, (3x3 average pool when strided: "avd"), 1x1 expand."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = SplitAttentionConv(planes)
        # Striding happens in a 3x3 average pool after the attention conv (avd, not avd_first).
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.conv2(out)
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


def _avg_down(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Shortcut projection of ResNet-D: average pool (a 1x1 pool, i.e. nothing, at stride 1),
    1x1 conv, BN. Index 0 holds no weights, so the keys stay ``downsample.1/2``."""
    pool = (
        nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    )
    return nn.Sequential(
        pool,
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class ResNeSt50(Encoder):
    """ResNeSt-50 encoder (radix 2, cardinality 1, width 64, deep stem 32, avg-down, avd)."""

    def __init__(self, depths: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = deep_stem(32)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            stride = 1 if index == 0 else 2
            shortcut = _avg_down(in_ch, planes * 4, stride)
            blocks = [ResNeStBottleneck(in_ch, planes, stride, shortcut)]
            blocks += [ResNeStBottleneck(planes * 4, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
            in_ch = planes * 4
