"""Continue fine-tuning the current model with corrected labels: the "annotate next" loop's step.

The loop: segment -> correct the most uncertain regions (``napari_madgnet.suggest``) -> continue
fine-tuning from the model in use -> segment again. ``iter_continue_finetune`` is the step that
trains: it starts from the given model's weights (a copy; the caller's model is not touched),
trains on the annotated ``regions`` only (a corrected region of an otherwise unreviewed
prediction must not teach the rest of the prediction back to the network), and, when the run
folder of the model's previous round holds a training state whose weights are exactly this
model's, keeps that run's Adam moments ("restored"); otherwise the optimiser starts fresh and the
result says why (``TrainResult.continued``). A continued round keeps its last model (validation
is off unless the config asks for it), so the next round can restore its optimiser state again.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_madgnet.errors import UserError
from napari_madgnet.jobs import CancelToken, Progress, run_to_end
from napari_madgnet.training import checkpoint as ckpt
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.data import DataError, Item, check_labels, split_items
from napari_madgnet.training.engine import TrainData, TrainResult, check_writable, iter_train
from napari_madgnet.training.finetune import (
    data_from_arrays,
    data_progress,
    list_result,
    plan_output,
)
from napari_madgnet.training.targets import labels_to_masks


@dataclass(frozen=True)
class Region:
    """An annotated part of an image: the plane ``index`` along the stack axes (``()`` for 2-D)
    and the box ``(y0, x0, y1, x1)`` in pixels, end exclusive (None: the whole plane).
    ``suggest.Suggestion`` has the same two fields and can be passed where a Region is taken."""

    index: tuple[int, ...] = ()
    box: tuple[int, int, int, int] | None = None


def continue_config(model: nn.Module, steps: int = 60, **overrides: Any) -> TrainConfig:
    """The settings for continuing ``model``: its own recipe (normalisation, patch size, label
    mode, augmentation, loss: from its provenance), for ``steps`` steps with a quarter of the
    recipe's learning rate on a cosine schedule (a model without a recipe, e.g. a released one:
    ``TrainConfig.finetune`` and its rate for starting from a trained MADGNet), no warm-up,
    validation off (the last model is kept), the training state saved once at the end (and on
    Stop). ``overrides`` win. 60 steps is what ``benchmarks/bench_active_learning.py`` measured.
    """
    info = getattr(model, "checkpoint_info", None) or {}
    recipe = (info.get("provenance") or {}).get("recipe")
    if isinstance(recipe, dict):
        base = TrainConfig.from_dict(recipe)
        lr = base.lr / 4
    else:  # a released model: the fine-tuning preset's rate for starting from a trained MADGNet
        base = TrainConfig.finetune(from_model="released")
        lr = base.lr
    changes: dict[str, Any] = dict(
        from_model=None,
        lr=lr,
        scheduler="cosine",
        warmup_steps=0,
        val_fraction=0.0,
        early_stopping=None,
        out_dir=None,
        checkpoint_every=int(steps),  # the state is saved at the end (and on Stop) for the next round
    )
    changes.update(overrides)
    return base.replace(**changes).with_length(steps=int(steps))


def region_items(
    image: Any,
    labels: Any,
    regions: Sequence[Region | Any],
    cfg: TrainConfig,
    *,
    axes: str | None = None,
    channel: int | None = None,
    name: str = "image",
) -> tuple[list[Item], int]:
    """Training items cut from the annotated ``regions`` of an image and its labels.

    The image is normalised with one range fitted on the whole image (as ``segment`` does and
    ``items_from_arrays`` does for whole planes), then each region is cut out. A region may hold
    only background (a corrected false positive). Returns the items and the class count.
    Raises ``DataError`` for a region outside the image or smaller than the patch size.
    """
    from napari_madgnet.layout import axes_for_labels, resolve_layout
    from napari_madgnet.preprocess import apply_range, fit_range

    lab = check_labels(labels)
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    axes = axes or axes_for_labels(tuple(image.shape), lab.shape)
    layout = resolve_layout(tuple(image.shape), axes, channel)
    if layout.output_shape != tuple(lab.shape):
        raise DataError(
            f"Labels shape {tuple(lab.shape)} does not match the image's {layout.output_shape}; "
            "the labels must cover the image pixel for pixel."
        )
    k = 1 if cfg.label_mode in ("binary", "scribble") else int(cfg.num_classes or lab.max())
    lo, hi = fit_range(layout.selection(image), cfg.normalization)
    h, w = layout.plane_shape
    planes: dict[tuple[int, ...], np.ndarray] = {}
    items = []
    for n, region in enumerate(regions):
        index = tuple(int(i) for i in region.index)
        y0, x0, y1, x1 = region.box if region.box is not None else (0, 0, h, w)
        inside = len(index) == len(layout.stack_shape) and all(
            0 <= i < n for i, n in zip(index, layout.stack_shape, strict=True)
        )
        if not inside or not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise DataError(
                f"Region {n + 1} (plane {index}, box {region.box}) is outside the image "
                f"(planes {layout.stack_shape}, {h} x {w} px)."
            )
        if min(y1 - y0, x1 - x0) < cfg.patch_size:
            raise DataError(
                f"Region {n + 1} is {y1 - y0} x {x1 - x0} px, smaller than the patch size {cfg.patch_size}; "
                "correct larger regions or train with a smaller patch size."
            )
        if index not in planes:
            planes[index] = np.moveaxis(apply_range(layout.read_plane(image, index), lo, hi), -1, 0)
        target, valid = labels_to_masks(lab[index][y0:y1, x0:x1], cfg.label_mode, k)
        crop = np.ascontiguousarray(planes[index][:, y0:y1, x0:x1])
        items.append(
            Item(crop, target, valid, name=f"{name}{list(index) if index else ''}[{y0}:{y1},{x0}:{x1}]")
        )
    if not items:
        raise DataError("No annotated region given; correct at least one region first.")
    return items, k


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[key].shape == b[key].shape and torch.equal(a[key].cpu(), b[key].cpu()) for key in a
    )


def matching_optimizer_state(
    model: nn.Module, previous_run: str | os.PathLike[str] | None
) -> tuple[dict[str, Any] | None, str]:
    """The Adam state of ``previous_run`` (a run folder or its ``last_state.pt``) when that
    state's weights are exactly ``model``'s, with a sentence saying what was found."""
    if previous_run is None:
        return None, "no earlier run given: the optimiser starts fresh"
    path = Path(previous_run)
    path = path / ckpt.LAST_STATE if path.is_dir() else path
    if not path.is_file():
        return None, (
            f"{path} does not exist (the earlier run kept no training state; keep-run 'resume' keeps it): "
            "the optimiser starts fresh"
        )
    state = ckpt.load_state(path)
    if not _same_weights(state["model"], model.state_dict()):
        return None, (
            f"the state in {path} belongs to other weights (step {state['step']}; the run kept an earlier, "
            "better validated model): the optimiser starts fresh"
        )
    return state["optimizer"], f"optimiser state of {path} (step {state['step']}) restored"


def iter_continue_finetune(
    model: nn.Module,
    image: Any,
    labels: Any,
    *,
    regions: Sequence[Region | Any] | None = None,
    config: TrainConfig | None = None,
    previous_run: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    register: bool = True,
    work_dir: str | os.PathLike[str] | None = None,
    axes: str | None = None,
    channel: int | None = None,
    cancel: CancelToken | None = None,
    image_name: str = "image",
) -> Generator[Progress, None, TrainResult]:
    """Continue training ``model`` on ``regions`` of ``labels``; yields Progress, returns the result.

    ``model``: the model in use (a MADGNet, e.g. the last ``TrainResult.model`` or a loaded one);
    it is copied, not changed. ``regions``: the annotated parts (``Region`` or
    ``suggest.Suggestion``; None: every plane of ``labels`` with foreground, as ``finetune``).
    ``config``: default ``continue_config(model)``. ``previous_run``: the run folder of the
    round that produced ``model`` (``TrainResult.out_dir``), whose optimiser state is restored
    when its weights are ``model``'s (``matching_optimizer_state``). Output, registration and
    stopping as ``finetune.iter_finetune`` (``out`` or ``folder``/``name``; the run folder
    ``work_dir`` holds this round's state for the next one). ``result.continued`` says whether
    the optimiser state was restored. Raises ``DataError`` / ``UserError`` before training for
    bad regions or a model that is not a MADGNet.
    """
    if not hasattr(model, "forward_stages"):
        raise UserError(f"{type(model).__name__} is not a MADGNet; only MADGNet models can be fine-tuned.")
    if getattr(model, "bn_folded", False):
        raise UserError(
            "This is the model's fast inference copy (BatchNorm folded), which cannot be trained; "
            "pass the model it was made from (or load the model file again)."
        )
    cfg = config or continue_config(model)
    cfg.validate()
    plan = plan_output(out, name, folder=folder, work_dir=work_dir)
    check_writable(plan.model_path.parent)
    if regions is None:
        data = data_from_arrays(image, labels, cfg, axes=axes, channel=channel, name=image_name)
    else:
        items, k = region_items(image, labels, regions, cfg, axes=axes, channel=channel, name=image_name)
        split = split_items(items, cfg.val_fraction, cfg.seed, cfg.patch_size)
        desc = f"{image_name}: {len(items)} annotated region(s), {cfg.label_mode} labels"
        data = TrainData(split.train, split.val, k, items[0].image.shape[0], desc, note=split.note)
    if data.num_classes != getattr(model, "num_classes", data.num_classes):
        raise UserError(
            f"The labels have {data.num_classes} class(es) but the model predicts {model.num_classes}; "
            "start a new fine-tuning run (Fine-tune from this model) to change the classes."
        )
    yield from data_progress(data)
    optimizer_state, how = matching_optimizer_state(model, previous_run)
    restored = optimizer_state is not None
    yield Progress(0.0, f"Continuing from the current model: {how}", {"optimizer_state": restored})
    with torch.random.fork_rng(devices=[]):  # deepcopy draws nothing, but keep napari's RNG alone
        start = copy.deepcopy(model)
    result = yield from iter_train(
        cfg,
        data,
        out_dir=plan.run_dir,
        model=start.train(),
        cancel=cancel,
        model_path=plan.model_path,
        optimizer_state=optimizer_state,
    )
    result.continued = {
        "previous_run": str(previous_run) if previous_run is not None else None,
        "optimizer_state": "restored" if restored else "fresh",
        "detail": how,
    }
    list_result(result, plan, register)
    return result


def continue_finetune(
    model: nn.Module, image: Any, labels: Any, *, callback: Any = None, **kwargs: Any
) -> TrainResult:
    """Run ``iter_continue_finetune`` to the end, passing each progress report to ``callback``."""
    return run_to_end(iter_continue_finetune(model, image, labels, **kwargs), callback)
