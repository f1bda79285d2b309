"""Building the network to train and saving the trained one, through ``napari_madgnet.model``.

One place that knows how a training run starts (ImageNet encoder, from scratch, or from a saved
model, possibly with a different number of classes) and how its result is stored (``save_model``,
the project format with provenance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_madgnet.errors import UserError
from napari_madgnet.training.config import TrainConfig


class ModelSourceError(UserError):
    """The model to start from cannot be used for this run; the message says why and what to do."""


def resolve_model_path(source: str | os.PathLike[str]) -> Path:
    """A file path, or a name in the model folder (``paths.models_dir()``, with or without .pt)."""
    p = Path(source).expanduser()
    if p.is_file():
        return p
    from napari_madgnet.paths import models_dir

    for cand in (models_dir() / str(source), models_dir() / f"{source}.pt"):
        if cand.is_file():
            return cand
    raise ModelSourceError(
        f"Model {source!s} not found: give a checkpoint file or the name of a model in {models_dir()}."
    )


def check_start_model(cfg: TrainConfig) -> dict[str, Any] | None:
    """Read the ``from_model`` checkpoint's metadata and check its encoder, before any work."""
    if not cfg.from_model:
        return None
    from napari_madgnet.model import read_checkpoint_info

    path = resolve_model_path(cfg.from_model)
    try:
        info = read_checkpoint_info(path)
    except Exception as exc:
        raise ModelSourceError(f"{path} cannot be read as a MADGNet checkpoint: {exc}") from exc
    found = info["config"]["backbone"]
    from napari_madgnet.model import ModelConfig

    wanted = ModelConfig(backbone=cfg.backbone).backbone
    if found != wanted:
        raise ModelSourceError(
            f"{path} holds a {found} encoder but this run is set to {wanted}; pass --backbone {found} "
            f"(or backbone: {found} in the recipe), or start from a {wanted} model."
        )
    info["path"] = str(path)
    return info


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The network a run starts from: a saved model, the ImageNet encoder, or random weights."""
    from napari_madgnet.model import MADGNet

    if cfg.from_model:
        from napari_madgnet.model import load_model

        path = resolve_model_path(cfg.from_model)
        start = load_model(path, backbone=cfg.backbone)
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
    try:
        return MADGNet(cfg.backbone, num_classes=num_classes, pretrained_backbone=cfg.init == "imagenet")
    except Exception as exc:  # the download of ImageNet weights failed
        if cfg.init != "imagenet":
            raise
        raise ModelSourceError(
            f"The ImageNet weights of {cfg.backbone} could not be loaded ({exc}). Put the file in the "
            "cache folder (see napari_madgnet.paths.cache_dir), or train from scratch with init: scratch "
            "(CLI: --init scratch)."
        ) from exc


def unwrap(model: nn.Module) -> nn.Module:
    """The MADGNet inside DDP / the stage wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return model


def save_trained(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Write the trained network in the project format (atomic, with preprocessing and provenance)."""
    from napari_madgnet.model import save_model

    return Path(save_model(unwrap(model), path, metadata))


def load_trained(path: str | os.PathLike[str], device: str | torch.device | None = None) -> nn.Module:
    from napari_madgnet.model import load_model

    return load_model(resolve_model_path(path), device=device)
