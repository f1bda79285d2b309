"""E-SDM deep-supervision loss: structure loss on the map, BCE on the boundary, MSE on distance.

Every term is a masked mean over the valid pixels, so unannotated pixels (scribble mode, padding
outside the image) never pull the network either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from napari_madgnet.training.config import LossConfig


def _masked_mean(value: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (value * valid).sum() / valid.sum().clamp_min(1.0)


def structure_loss(
    logits: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, *, with_iou: bool = True
) -> torch.Tensor:
    """PraNet's structure loss: BCE (a plain mean, as in the release) + boundary-weighted IoU.

    The IoU weight 1 + 5 |avgpool31(mask) - mask| stresses pixels near edges. Scribble labels
    are not whole objects, so their IoU term is switched off (``with_iou=False``).
    """
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    loss = _masked_mean(bce, valid)
    if with_iou:
        weight = 1 + 5 * torch.abs(F.avg_pool2d(mask, 31, stride=1, padding=15) - mask)
        prob = torch.sigmoid(logits)
        w = weight * valid
        inter = (prob * mask * w).sum(dim=(2, 3))
        union = ((prob + mask) * w).sum(dim=(2, 3))
        loss = loss + (1 - (inter + 1) / (union - inter + 1)).mean()
    return loss


def esdm_loss(
    stages: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    batch: dict[str, torch.Tensor],
    cfg: LossConfig,
    *,
    scribble: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over the four stages (coarsest first) of weighted map, distance and boundary losses.

    The release's distance and map outputs already include sigmoid couplings; they are treated as
    logits here. Returns the total and its parts (floats, for the log).
    """
    mask, valid = batch["mask"], batch["valid"]
    parts = {"map": 0.0, "distance": 0.0, "boundary": 0.0}
    total = mask.new_zeros(())
    for weight, (m, d, b) in zip(cfg.stage_weights, stages, strict=True):
        m, d, b = m.float(), d.float(), b.float()
        lm = structure_loss(m, mask, valid, with_iou=not scribble)
        stage = cfg.map_weight * lm
        parts["map"] += float(lm.detach())
        if not scribble:  # distance and boundary of a scribble say nothing about the object
            ld = _masked_mean((torch.sigmoid(d) - batch["distance"]) ** 2, valid)
            lb = _masked_mean(
                F.binary_cross_entropy_with_logits(b, batch["boundary"], reduction="none"), valid
            )
            stage = stage + cfg.distance_weight * ld + cfg.boundary_weight * lb
            parts["distance"] += float(ld.detach())
            parts["boundary"] += float(lb.detach())
        total = total + weight * stage
    return total, parts
