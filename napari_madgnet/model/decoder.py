"""MADGNet's decoder: upsampling stages with MFMSA, and the E-SDM cascaded sub-decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MFMSAttention


def conv_bn_relu_block(in_ch: int, out_ch: int, kernel: int, bias: bool = True) -> nn.Sequential:
    """Conv (with bias, as released) + BN + ReLU; keys ``0.*`` and ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DecoderStage(nn.Module):
    """x2 bilinear upsampling, concat the skip, 3x3 conv, MFMSA attention, 3x3 conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, **attention_kwargs: object) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu_block(in_ch + skip_ch, out_ch, 3)
        self.attention_layer = MFMSAttention(out_ch, **attention_kwargs)  # type: ignore[arg-type]
        self.conv2 = conv_bn_relu_block(out_ch, out_ch, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Upsampling to the skip's size equals the released scale_factor=2 when sizes are exact.
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.conv1(torch.cat([x, skip], dim=1))
        return self.conv2(self.attention_layer(x))


class CascadedSubDecoder(nn.Module):
    """E-SDM head: map, distance and boundary logits, each gating the next, at output size.

    ``distance = conv_d(x) * sigmoid(map)``, ``boundary = conv_b(x) * sigmoid(distance)``; all
    three are upsampled (bilinear, align_corners=True), then ``distance += sigmoid(boundary)`` and
    ``map += sigmoid(distance)``.
    """

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.output_map_conv = nn.Conv2d(in_ch, num_classes, 1)
        self.output_distance_conv = nn.Conv2d(in_ch, num_classes, 1)
        self.output_boundary_conv = nn.Conv2d(in_ch, num_classes, 1)

    def forward(
        self, x: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seg = self.output_map_conv(x)
        distance = self.output_distance_conv(x) * torch.sigmoid(seg)
        boundary = self.output_boundary_conv(x) * torch.sigmoid(distance)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

        boundary = up(boundary)
        distance = up(distance) + torch.sigmoid(boundary)
        seg = up(seg) + torch.sigmoid(distance)
        return seg, distance, boundary
