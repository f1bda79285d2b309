"""Building the network to train and saving the trained one, through ``napari_madgnet.model``.

One place that knows how a training run starts (ImageNet encoder, from scratch, or from a saved
model, possibly with a different number of classes) and how its result is stored (``save_model``,
the project format with provenance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from napari_madgnet.errors import ConfigError
from napari_madgnet.training.config import TrainConfig


def check_start_model(cfg: TrainConfig) -> dict[str, Any] | None:
    """Resolve the ``from_model`` name or path (``registry.resolve_model``), read its metadata and
    check its encoder, before any work. Returns the checkpoint info with ``path``; None when the
    run does not start from a saved model. Raises ``RegistryError`` / ``ConfigError``."""
    if not cfg.from_model:
        return None
    from napari_madgnet.model import ModelConfig, read_checkpoint_info
    from napari_madgnet.registry import resolve_model

    entry = resolve_model(cfg.from_model)
    info = read_checkpoint_info(entry.path)
    found = entry.encoder or info["config"]["backbone"]
    wanted = ModelConfig(backbone=cfg.backbone).backbone
    if found != wanted:
        raise ConfigError(
            f"{entry.name} ({entry.path}) holds a {found} encoder but this run is set to {wanted}; pass "
            f"--backbone {found} (or backbone: {found} in the recipe), or start from a {wanted} model."
        )
    info["path"] = str(entry.path)
    return info


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The network a run starts from: a saved model, the ImageNet encoder, or random weights."""
    from napari_madgnet.model import MADGNet

    if cfg.from_model:
        from napari_madgnet.registry import load_registered_model

        start = load_registered_model(cfg.from_model)
        if start.num_classes == num_classes:
            start.train()
            return start
        # A different number of classes: keep every weight except the output heads' last layers.
        model = MADGNet(cfg.backbone, num_classes=num_classes)
        own = model.state_dict()
        kept = {k: v for k, v in start.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(kept, strict=False)
        model.checkpoint_info = start.checkpoint_info
        return model
    # The ImageNet download raises PretrainedWeightsError, a UserError whose message says what to do.
    return MADGNet(cfg.backbone, num_classes=num_classes, pretrained_backbone=cfg.init == "imagenet")


def unwrap(model: nn.Module) -> nn.Module:
    """The MADGNet inside DDP / the stage wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return model


def save_trained(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Write the trained network in the project format (atomic, with preprocessing and provenance)."""
    from napari_madgnet.model import save_model

    return Path(save_model(unwrap(model), path, metadata))
