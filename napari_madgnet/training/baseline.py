"""The floor a trained model must beat: an Otsu threshold scored on the same validation part.

A validation Dice of 0.85 sounds good until a plain intensity threshold scores 0.88 on the same
pixels. ``otsu_baseline`` computes that threshold's Dice the way the engine scores the model
(each validation item, its annotated pixels, ``metrics.dice``, averaged over items), and
``baseline_warning`` says plainly when the model is not better. The threshold is Otsu's
(scikit-image) on each validation item's grey values (the mean over channels); whether objects
are the bright or the dark side is decided once on the training items, so the baseline never sees
the validation labels it is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_madgnet.metrics import dice
from napari_madgnet.training.data import AnyItem


def _grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W): the mean over channels."""
    return np.asarray(image, dtype=np.float32).mean(axis=0)


def _otsu(grey: np.ndarray) -> float | None:
    from skimage.filters import threshold_otsu

    if grey.size == 0 or float(grey.min()) == float(grey.max()):
        return None  # a flat image has no threshold
    return float(threshold_otsu(grey))


def _item_dice(grey: np.ndarray, target: np.ndarray, valid: np.ndarray, bright: bool) -> float | None:
    t = _otsu(grey)
    if t is None:
        return None
    pred = grey > t if bright else grey <= t
    annotated = valid > 0
    return dice(pred[annotated], target[annotated])


def objects_are_bright(train: Sequence[AnyItem]) -> bool:
    """True when objects are brighter than the background on the training items (annotated
    pixels only); True when that cannot be told."""
    inside: list[float] = []
    outside: list[float] = []
    for it in train:
        item = it.load()
        grey, target, valid = _grey(item.image), item.target[0] > 0, item.valid[0] > 0
        if (target & valid).any():
            inside.append(float(grey[target & valid].mean()))
        if (~target & valid).any():
            outside.append(float(grey[~target & valid].mean()))
    if not inside or not outside:
        return True
    return float(np.mean(inside)) >= float(np.mean(outside))


def otsu_baseline(train: Sequence[AnyItem], val: Sequence[AnyItem]) -> float | None:
    """Mean Dice of an Otsu threshold over the validation items (annotated pixels), as the
    engine's validation scores the model; None when nothing validates, the labels have several
    classes (one threshold cannot separate them), or no item has a threshold."""
    if not val:
        return None
    first = val[0].load()
    if first.target.shape[0] != 1:
        return None
    bright = objects_are_bright(train)
    scores = []
    for it in val:
        item = it.load()
        score = _item_dice(_grey(item.image), item.target[0], item.valid[0], bright)
        if score is not None:
            scores.append(score)
    return float(np.mean(scores)) if scores else None


def baseline_warning(model_dice: float | None, baseline_dice: float | None) -> str | None:
    """A plain sentence when the model's validation Dice is not above the threshold's; else None."""
    if (
        model_dice is None
        or baseline_dice is None
        or not np.isfinite(model_dice)
        or model_dice > baseline_dice
    ):
        return None
    return (
        f"This model is not better than a simple threshold: its validation Dice is {model_dice:.3f}, "
        f"an Otsu threshold scores {baseline_dice:.3f} on the same pixels. Train longer or annotate more."
    )


__all__ = ["baseline_warning", "objects_are_bright", "otsu_baseline"]
