"""The MADGNet network (Nam et al., CVPR 2024) with input padding for any image size."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiFrequencyChannelAttention, branch_pools
from .config import ModelConfig
from .decoder import CascadedSubDecoder, DecoderStage, conv_bn_relu_block
from .encoders import build_encoder

DECODER_CHANNELS = (256, 128, 64, 32)
SKIP_CHANNELS = 64
# Downsampling factor of each decoder stage's map relative to the (padded) input, coarsest first.
STAGE_STRIDES = (16, 8, 4, 2)

StageOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def padded_size(height: int, width: int, config: ModelConfig) -> tuple[int, int]:
    """Smallest size >= (height, width) at which every stage's shapes line up.

    The encoder needs multiples of 32. In addition, wherever an attention branch s pools a
    stage map (stride f; decided from the height, as in the release), that map's sides must be
    divisible by 2^s, i.e. the padded sides by f * 2^s. With the default build this only adds
    anything for heights >= 512: they are padded to a multiple of 64 (e.g. 544 -> 576), the case
    where the release fails.
    """
    multiple = 32
    while True:
        padded_h = math.ceil(height / multiple) * multiple
        required = 32
        for stride in STAGE_STRIDES:
            pools = branch_pools(padded_h // stride, config.scale_branches, config.min_resolution)
            for s, pooled in enumerate(pools):
                if pooled:
                    required = max(required, stride * 2**s)
        if required <= multiple:
            return padded_h, math.ceil(width / multiple) * multiple
        multiple = required


class MADGNet(nn.Module):
    """MADGNet: an encoder, four MFMSA decoder stages and four E-SDM sub-decoders.

    Build::

        MADGNet(backbone="resnest50", num_classes=1, *, scale_branches=3, frequency_branches=16,
                frequency_selection="top", min_channel=32, min_resolution=8,
                pretrained_backbone=False)

    The defaults are the released ``IS2D_main.py`` build; ``backbone`` is one of
    ``"resnest50"``, ``"res2net50_v1b_26w_4s"``, ``"resnet50"``. State-dict keys are the
    official ones (``feature_encoding.*``, ``skip_connection1..4.*``, ``decoder_stage1..4.*``,
    ``sub_decoder_stage1..4.*``) minus the fixed DCT filters, which are rebuilt.
    ``pretrained_backbone=True`` loads ImageNet encoder weights (downloaded once into the cache,
    see :mod:`napari_madgnet.model.pretrained`).

    Input: float ``(B, 1 or 3, H, W)`` scaled to [0, 1] (the release normalises no further); one
    channel is repeated to three. Any H, W >= 1 works (32 and up is meaningful): the image is
    padded at the bottom and right, by reflection (replication where the padding is as large as
    the image), to :func:`padded_size`, and every output is cropped back to H x W. Sizes the
    release handles (multiples of 32, except heights >= 512 that are not multiples of 64, and
    widths that are not when the height is >= 512) are not padded and give the release's values.

    ``model(x)`` returns the finest stage's map logits ``(B, num_classes, H, W)`` (prediction:
    ``sigmoid(logits) >= 0.5``); ``model.forward_stages(x)`` returns all four stages'
    ``(map, distance, boundary)`` logits, coarsest first, each at H x W, for deep supervision.
    Train and eval modes differ only through BatchNorm. Batch size 1 in training mode works
    (the release fails for ResNeSt): the split-attention BatchNorm that then sees a single value
    per channel uses its running statistics (``resnest._StatsFallbackBatchNorm``); only a single
    image of at most 32 x 32 is refused with a ValueError (1x1 deepest map).

    ``model.config`` (:class:`ModelConfig`) rebuilds the architecture; ``model.checkpoint_info``
    holds the metadata of the checkpoint it was loaded from (``None`` for a fresh model).
    """

    def __init__(
        self,
        backbone: str = "resnest50",
        num_classes: int = 1,
        *,
        scale_branches: int = 3,
        frequency_branches: int = 16,
        frequency_selection: str = "top",
        min_channel: int = 32,
        min_resolution: int = 8,
        pretrained_backbone: bool = False,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(
                backbone=backbone,
                num_classes=num_classes,
                scale_branches=scale_branches,
                frequency_branches=frequency_branches,
                frequency_selection=frequency_selection,
                min_channel=min_channel,
                min_resolution=min_resolution,
            )
        self.config = config
        self.checkpoint_info: dict[str, Any] | None = None

        self.feature_encoding = build_encoder(config.backbone, pretrained=pretrained_backbone)
        # Skips, coarsest first: layer3, layer2, layer1, stem.
        skip_in = list(reversed(self.feature_encoding.feature_channels[:4]))
        for i, ch in enumerate(skip_in, start=1):
            setattr(self, f"skip_connection{i}", conv_bn_relu_block(ch, SKIP_CHANNELS, 1))

        attention = dict(
            scale_branches=config.scale_branches,
            frequency_branches=config.frequency_branches,
            frequency_selection=config.frequency_selection,
            min_channel=config.min_channel,
            min_resolution=config.min_resolution,
        )
        in_ch = self.feature_encoding.feature_channels[4]
        for i, out_ch in enumerate(DECODER_CHANNELS, start=1):
            stage = DecoderStage(in_ch, SKIP_CHANNELS, out_ch, **attention)
            setattr(self, f"decoder_stage{i}", stage)
            setattr(self, f"sub_decoder_stage{i}", CascadedSubDecoder(out_ch, config.num_classes))
            in_ch = out_ch

    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any]) -> MADGNet:
        """Build an untrained network from a :class:`ModelConfig` or its dict form."""
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        return cls(config=config)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def set_reference_mode(self, enabled: bool) -> None:
        """Compute as the released code does (benchmarks only): the channel attention loops over
        its DCT filters and uses the adaptive pooling kernel, the stem uses the max-pool kernel.
        Results agree either way within float rounding."""
        for m in self.modules():
            if isinstance(m, MultiFrequencyChannelAttention):
                m.vectorised = not enabled
        self.feature_encoding.fast_pool = not enabled

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 1 or 3, H, W) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point tensor scaled to [0, 1], got {x.dtype}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        ph, pw = padded_size(h, w, self.config)
        if self.training and x.shape[0] == 1 and ph * pw == 32 * 32:
            raise ValueError(
                "training on one 32x32 image is impossible: the deepest feature map is 1x1, "
                "where BatchNorm has no batch statistics; use batch size >= 2 or larger images"
            )
        if (ph, pw) != (h, w):
            mode = "reflect" if (ph - h < h and pw - w < w) else "replicate"
            x = F.pad(x, (0, pw - w, 0, ph - h), mode=mode)
        return x

    def _decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem, f1, f2, f3, f4 = self.feature_encoding(x)
        out = f4
        stages = []
        for i, skip in enumerate((f3, f2, f1, stem), start=1):
            skip = getattr(self, f"skip_connection{i}")(skip)
            out = getattr(self, f"decoder_stage{i}")(out, skip)
            stages.append(out)
        return stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Finest-stage map logits ``(B, num_classes, H, W)`` for a ``(B, 1|3, H, W)`` input."""
        h, w = x.shape[-2:]
        padded = self._prepare(x)
        finest = self._decode(padded)[-1]
        seg, _, _ = self.sub_decoder_stage4(finest, padded.shape[-2:])
        return seg[..., :h, :w]

    def forward_stages(self, x: torch.Tensor) -> list[StageOutput]:
        """The four stages' ``(map, distance, boundary)`` logits, coarsest first, at input size."""
        h, w = x.shape[-2:]
        padded = self._prepare(x)
        results = []
        for i, feat in enumerate(self._decode(padded), start=1):
            head = getattr(self, f"sub_decoder_stage{i}")
            seg, dist, bnd = head(feat, padded.shape[-2:])
            results.append((seg[..., :h, :w], dist[..., :h, :w], bnd[..., :h, :w]))
        return results
