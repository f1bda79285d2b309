"""Fine-tuning on a user's own annotations: the one function the CLI, the widget and the demo call.

All checks (shapes, label dtype, empty labels, patch size, output folder, start model's encoder)
run before the network is built, so a mistake costs seconds, not a training run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from napari_madgnet.jobs import CancelToken, Progress, run_to_end
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.data import check_patch_size, items_from_arrays, items_from_folders, split_items
from napari_madgnet.training.engine import TrainData, TrainResult, _check_writable, iter_train
from napari_madgnet.training.modelio import check_start_model


def data_from_arrays(
    image: Any, labels: Any, cfg: TrainConfig, *, channel_axis: int | None = None, name: str = "image"
) -> TrainData:
    """Check and split an image and its labels (2-D, stack, time series, RGB) into a TrainData."""
    items, k = items_from_arrays(
        image,
        labels,
        label_mode=cfg.label_mode,
        normalization=cfg.normalization,
        num_classes=cfg.num_classes,
        channel_axis=channel_axis,
        name=name,
    )
    check_patch_size(items, cfg.patch_size)
    train_items, val_items = split_items(items, cfg.val_fraction, cfg.seed)
    check_patch_size(train_items, cfg.patch_size)
    channels = items[0].image.shape[0]
    desc = f"{name}: {len(items)} annotated plane(s) of shape {items[0].shape}, {cfg.label_mode} labels"
    return TrainData(train_items, val_items, k, channels, desc)


def data_from_config(cfg: TrainConfig) -> TrainData:
    """The data a recipe names: image/mask folders, or a ``src_train`` dataset and its root."""
    d = cfg.data
    if d.dataset:
        from src_train.datasets import dataset_items

        train_items, val_items, _tests = dataset_items(d.dataset, d.root, cfg)
        return TrainData(train_items, val_items, cfg.num_classes or 1, 3, f"{d.dataset} ({d.root})")
    if not (d.train_images and d.train_masks):
        raise ValueError(
            "The recipe names no data: set data.train_images and data.train_masks (folders of "
            "image/mask pairs matched by name), or data.dataset and data.root (see src_train/)."
        )
    k = cfg.num_classes or 1
    items = items_from_folders(d.train_images, d.train_masks, cfg, k)
    if d.val_images and d.val_masks:
        train_items, val_items = items, items_from_folders(d.val_images, d.val_masks, cfg, k)
    else:
        if len(items) < 2:
            raise ValueError(
                "One image pair cannot be split for validation; add pairs or data.val_* folders."
            )
        train_items, val_items = split_items(items, cfg.val_fraction, cfg.seed)
    first = items[0].load()
    return TrainData(
        train_items, val_items, k, first.image.shape[0], f"{d.train_images} ({len(items)} pairs)"
    )


def default_model_path(name: str = "finetuned") -> Path:
    """Where a model goes when no --out is given: the registry's folder, a dated unique name."""
    from napari_madgnet.paths import models_dir

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return models_dir() / f"{name}-{stamp}.pt"


def iter_finetune(
    image: Any,
    labels: Any,
    *,
    config: TrainConfig | None = None,
    from_model: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    channel_axis: int | None = None,
    cancel: CancelToken | None = None,
    name: str = "image",
) -> Generator[Progress, None, TrainResult]:
    """Fine-tune on one annotated image/stack; yields Progress, returns the TrainResult.

    ``out``: the model file to write (default: a new file in ``paths.models_dir()``, where the
    registry lists it); ``work_dir``: checkpoints and the log (default: ``<out stem>_run/``).
    """
    cfg = config or TrainConfig.finetune(from_model=str(from_model) if from_model else None)
    if from_model is not None:
        cfg = cfg.replace(from_model=str(from_model))
    check_start_model(cfg)
    data = data_from_arrays(image, labels, cfg, channel_axis=channel_axis, name=name)
    model_path = Path(out) if out else default_model_path()
    _check_writable(model_path.parent)
    if model_path.exists():
        raise FileExistsError(f"{model_path} exists; choose another --out or delete it first.")
    run_dir = Path(work_dir) if work_dir else model_path.with_name(model_path.stem + "_run")
    return (yield from iter_train(cfg, data, out_dir=run_dir, cancel=cancel, model_path=model_path))


def finetune(
    image: Any,
    labels: Any,
    *,
    callback: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``iter_finetune`` driven to the end, with an optional progress callback."""
    return run_to_end(iter_finetune(image, labels, **kwargs), callback)


def tiled_logits(model: Any, x: Any, tile: int | None, overlap: float = 0.5) -> Any:
    """Logits (B, K, H, W) of ``x`` from overlapping ``tile`` x ``tile`` windows, averaged.

    A model trained on patches sees global descriptors (the MFMSA channel attention pools the
    whole input) of patch-sized inputs; predicting at that size is what keeps its accuracy. On the
    nuclei sample a 64-px-trained model scores Dice 0.92 tiled at 64 px and 0.35 on the whole
    256 x 512 half. ``tile=None`` (or an input no larger than a tile) is one plain forward.
    """
    import torch

    h, w = x.shape[-2:]
    if not tile or (h <= tile and w <= tile):
        return model(x).float()
    step = max(1, int(tile * (1 - overlap)))

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        out = list(range(0, n - tile + 1, step))
        return out if out[-1] == n - tile else [*out, n - tile]

    acc = cnt = None
    for y in starts(h):
        for x0 in starts(w):
            part = model(x[..., y : y + tile, x0 : x0 + tile]).float()
            if acc is None:
                acc = torch.zeros((*part.shape[:2], h, w), dtype=part.dtype, device=part.device)
                cnt = torch.zeros((1, 1, h, w), dtype=part.dtype, device=part.device)
            acc[..., y : y + tile, x0 : x0 + tile] += part
            cnt[..., y : y + tile, x0 : x0 + tile] += 1
    return acc / cnt
