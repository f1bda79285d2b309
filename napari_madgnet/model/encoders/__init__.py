"""The three encoders MADGNet was released with, behind one factory.

Every encoder maps a ``(B, 3, H, W)`` image to five feature maps at strides 2, 4, 8, 16 and 32
with :data:`FEATURE_CHANNELS` channels; parameter names match the ImageNet weight files.
"""

from __future__ import annotations

from .common import FEATURE_CHANNELS, Encoder
from .res2net import Res2Net50
from .resnest import ResNeSt50
from .resnet import ResNet50

ENCODERS: dict[str, type[Encoder]] = {
    "resnest50": ResNeSt50,
    "res2net50_v1b_26w_4s": Res2Net50,
    "resnet50": ResNet50,
}

# Accepted spellings for convenience; checkpoints and configs always store the canonical name.
_ALIASES = {"res2net50": "res2net50_v1b_26w_4s", "res2net": "res2net50_v1b_26w_4s"}


def canonical_backbone(name: str) -> str:
    """Canonical encoder name for ``name`` (case-insensitive, aliases); ValueError if unknown."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ENCODERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(ENCODERS)}")
    return key


def build_encoder(name: str, pretrained: bool = False) -> Encoder:
    """Build an encoder by name; ``pretrained`` loads the ImageNet weights (downloaded once)."""
    key = canonical_backbone(name)
    encoder = ENCODERS[key]()
    if pretrained:
        from ..pretrained import load_imagenet_weights

        load_imagenet_weights(encoder, key)
    return encoder


__all__ = ["ENCODERS", "FEATURE_CHANNELS", "Encoder", "build_encoder", "canonical_backbone"]
