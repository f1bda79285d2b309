"""The hyper-parameters that fix MADGNet's architecture, stored in every project checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .dct import FREQUENCY_COUNTS, FREQUENCY_SELECTIONS
from .encoders import canonical_backbone


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a MADGNet; the defaults are the released ``IS2D_main.py`` build.

    ``in_channels`` is what the encoder sees (3, the only value): the network accepts 1 or 3
    input channels and repeats a single channel to 3 inside, as the release does.
    """

    backbone: str = "resnest50"
    num_classes: int = 1
    scale_branches: int = 3
    frequency_branches: int = 16
    frequency_selection: str = "top"
    min_channel: int = 32
    min_resolution: int = 8
    in_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone", canonical_backbone(self.backbone))
        if int(self.num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if int(self.scale_branches) < 1:
            raise ValueError(f"scale_branches must be >= 1, got {self.scale_branches}")
        if self.frequency_branches != 0 and self.frequency_branches not in FREQUENCY_COUNTS:
            raise ValueError(
                f"frequency_branches must be 0 or in {FREQUENCY_COUNTS}: {self.frequency_branches}"
            )
        if self.frequency_selection not in FREQUENCY_SELECTIONS:
            raise ValueError(
                f"frequency_selection must be one of {FREQUENCY_SELECTIONS}: {self.frequency_selection!r}"
            )
        if self.in_channels != 3:
            raise ValueError("in_channels must be 3 (grey input is repeated to 3 channels inside)")
        if int(self.min_channel) < 1 or int(self.min_resolution) < 1:
            raise ValueError("min_channel and min_resolution must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form, safe for ``torch.load(weights_only=True)``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are rejected, missing ones default."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        return cls(**data)
