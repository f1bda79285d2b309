"""MADGNet for napari-madgnet: the network, its checkpoints and its ImageNet encoder weights.

Public API::

    MADGNet(backbone="resnest50", num_classes=1, ...)      # nn.Module; model(x), forward_stages(x)
    ModelConfig(...)                                       # architecture, stored in checkpoints
    load_model(source, backbone=None, device=None) -> MADGNet
    save_model(model, path, metadata=None) -> Path
    read_checkpoint_info(path) -> dict                     # config/preprocessing/provenance
    fold_batchnorm(model) -> MADGNet                       # faster inference-only copy
    inference_copy(model, compile=False) -> nn.Module      # + packed CPU convolutions, or torch.compile
    CheckpointError, CheckpointMismatchError, UnsafeCheckpointError, NotACheckpointError,
    DivergedWeightsError                                   # NaN/Inf weights (diverged training)
    BACKBONES                                              # the three encoder names

This package uses only torch, numpy and the standard library (no Qt, no napari).
"""

from __future__ import annotations

from .checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    DivergedWeightsError,
    NotACheckpointError,
    UnsafeCheckpointError,
    infer_config,
    load_model,
    read_checkpoint_info,
    save_model,
)
from .config import ModelConfig
from .encoders import ENCODERS
from .network import MADGNet, padded_size
from .optimize import fold_batchnorm, inference_copy

#: The encoders MADGNet was released with (canonical names, as checkpoints store them).
BACKBONES: tuple[str, ...] = tuple(ENCODERS)

__all__ = [
    "BACKBONES",
    "CheckpointError",
    "CheckpointMismatchError",
    "DivergedWeightsError",
    "MADGNet",
    "ModelConfig",
    "NotACheckpointError",
    "UnsafeCheckpointError",
    "fold_batchnorm",
    "infer_config",
    "inference_copy",
    "load_model",
    "padded_size",
    "read_checkpoint_info",
    "save_model",
]
