"""What a forward pass returns beyond the map: the E-SDM heads, flip TTA and the uncertainty.

MADGNet predicts at four scales a map, a distance map and a boundary map
(``MADGNet.forward_stages``). The plain forward (``model(x)``) returns only the finest map; this
module asks for more when a run needs it and packs everything into one channel stack, so the
one tiler blends the extra outputs exactly like the probabilities (same tiles, same window,
streamed one batch at a time).

``OutputSpec`` says what is wanted; ``forward_outputs`` computes, for a (B, C, h, w) batch, a
(B, K * n, h, w) float32 stack whose channel blocks are named by ``OutputSpec.names``
(``"map"`` first, then ``"distance"``, ``"boundary"``, ``"uncertainty"`` as asked), each block K
channels (one per class). All are in [0, 1]:

- ``map``: sigmoid of the finest map logits (averaged over the flips with TTA);
- ``distance``: sigmoid of the finest stage's distance logits, the quantity the E-SDM loss
  trains against the per-object distance transform scaled to [0, 1] (``training.targets``);
- ``boundary``: sigmoid of the finest boundary logits (trained against the Sobel edge band);
- ``uncertainty``: the disagreement of the members (the four stages' maps, or the flips' finest
  maps with TTA): twice their standard deviation (0 when all agree, 1 when half say 0 and half
  say 1).

The uncertainty a user gets (``InferenceConfig(uncertainty=True)``) is none of these
disagreements but the binary entropy of the final probability (``binary_entropy``; with TTA the
entropy of the flips' mean, which adds their disagreement to the entropy of each): measured on the
nuclei sample's unseen half (``benchmarks/bench_uncertainty.py``, docs/heads.md) it predicts the
pixel errors best (AUROC 0.96, the top 5 % most uncertain pixels hold 61 % of the errors), the
flips' disagreement a little less well (0.95 / 52 % with 4 flips), and the four stages'
disagreement much less well (0.83 / 15 %): the stages disagree along every edge whether it is right
or wrong. ``"tta"`` and ``"stages"`` stay selectable to repeat that measurement.

Test-time augmentation (``tta``): 2 adds the horizontal flip, 4 the vertical and both, 8 the
transposed versions of those (the dihedral group D4); each costs one more forward pass. The
outputs of a flipped input are flipped back before averaging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Supported numbers of TTA passes.
TTA_CHOICES: tuple[int, ...] = (1, 2, 4, 8)
#: Uncertainty measures: the entropy of the final probability (the default, ``True``), the
#: disagreement of the TTA flips, the disagreement of the four decoder stages.
UNCERTAINTY_MEASURES: tuple[str, ...] = ("entropy", "tta", "stages")
#: Disagreements the runner computes per tile (the entropy is computed from the blended map).
DISAGREEMENTS: tuple[str, ...] = ("tta", "stages")

# (transpose first, dims to flip) of each TTA pass, in order; the first n are used.
_TRANSFORMS: tuple[tuple[bool, tuple[int, ...]], ...] = (
    (False, ()),
    (False, (-1,)),
    (False, (-2,)),
    (False, (-2, -1)),
    (True, ()),
    (True, (-1,)),
    (True, (-2,)),
    (True, (-2, -1)),
)


@dataclass(frozen=True)
class OutputSpec:
    """Which outputs a forward pass returns beside the map, and with how many TTA passes.

    ``uncertainty``: None, or the members whose disagreement is returned: ``"stages"`` (the four
    decoder stages' maps, averaged over the flips) or ``"tta"`` (the finest map of each flip;
    needs ``tta`` > 1). Raises ValueError for unknown values.
    """

    distance: bool = False
    boundary: bool = False
    uncertainty: str | None = None
    tta: int = 1

    def __post_init__(self) -> None:
        if self.tta not in TTA_CHOICES:
            raise ValueError(f"tta is the number of flip passes, one of {TTA_CHOICES}; got {self.tta}.")
        if self.uncertainty is not None and self.uncertainty not in DISAGREEMENTS:
            raise ValueError(
                f"uncertainty {self.uncertainty!r}: choose one of {', '.join(DISAGREEMENTS)} or None."
            )
        if self.uncertainty == "tta" and self.tta == 1:
            raise ValueError("uncertainty 'tta' measures the disagreement of flips: set tta to 2, 4 or 8.")

    @property
    def plain(self) -> bool:
        """Only the map, one pass: the runner's fast path (``model(x)``)."""
        return self.names == ("map",) and self.tta == 1

    @property
    def names(self) -> tuple[str, ...]:
        """The channel blocks of the stack, in order."""
        wanted = (("distance", self.distance), ("boundary", self.boundary))
        extra = tuple(n for n, on in wanted if on)
        return ("map", *extra, *(("uncertainty",) if self.uncertainty else ()))

    @property
    def needs_stages(self) -> bool:
        return self.distance or self.boundary or self.uncertainty == "stages"

    def split(self, stack: torch.Tensor, axis: int = 0) -> dict[str, torch.Tensor]:
        """Name -> block of a stack whose ``axis`` holds ``len(names)`` x K channels."""
        n = len(self.names)
        if stack.shape[axis] % n:
            raise ValueError(f"a stack of {stack.shape[axis]} channels cannot hold {n} blocks {self.names}.")
        return dict(zip(self.names, torch.chunk(stack, n, dim=axis), strict=True))


def _apply(x: torch.Tensor, transform: tuple[bool, tuple[int, ...]]) -> torch.Tensor:
    transpose, dims = transform
    if transpose:
        x = x.transpose(-2, -1)
    return x.flip(dims) if dims else x


def _undo(x: torch.Tensor, transform: tuple[bool, tuple[int, ...]]) -> torch.Tensor:
    transpose, dims = transform
    if dims:
        x = x.flip(dims)
    return x.transpose(-2, -1) if transpose else x


def map_logits(output: Any) -> torch.Tensor:
    """The map logits from whatever a network returns (a tensor, or the first of several)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output["map"] if "map" in output else next(iter(output.values()))
    if isinstance(output, (list, tuple)) and output:
        return map_logits(output[0])
    raise TypeError(f"The model returned {type(output).__name__}; expected a tensor of logits (B, K, H, W).")


def disagreement(members: torch.Tensor) -> torch.Tensor:
    """Twice the (population) standard deviation over dim 0 of probabilities in [0, 1]: in [0, 1]."""
    return (2.0 * members.float().std(dim=0, correction=0)).clamp_(0.0, 1.0)


def forward_outputs(net: torch.nn.Module, x: torch.Tensor, spec: OutputSpec) -> torch.Tensor:
    """The (B, K * len(spec.names), h, w) float32 stack of ``spec`` for a (B, C, h, w) batch.

    ``net`` must have ``forward_stages`` (a MADGNet or its inference copy) when the spec needs
    the stages (else ``AttributeError``); otherwise ``net(x)`` returns the map logits. Runs under the caller's
    inference mode and autocast; the result is on ``x``'s device.
    """
    maps, dists, bnds, stage_maps, members = [], [], [], [], []
    for transform in _TRANSFORMS[: spec.tta]:
        xt = _apply(x, transform)
        if spec.needs_stages:
            stages = [
                tuple(torch.sigmoid(_undo(t, transform).float()) for t in stage)
                for stage in net.forward_stages(xt)
            ]
            finest = stages[-1]
            maps.append(finest[0])
            dists.append(finest[1])
            bnds.append(finest[2])
            stage_maps.append(torch.stack([s[0] for s in stages]))
        else:
            maps.append(torch.sigmoid(_undo(map_logits(net(xt)), transform).float()))
        if spec.uncertainty == "tta":
            members.append(maps[-1])
    if spec.uncertainty == "stages":
        members = list(torch.stack(stage_maps).mean(0))  # each stage's map, averaged over the flips
    blocks = {"map": torch.stack(maps).mean(0)}
    if spec.distance:
        blocks["distance"] = torch.stack(dists).mean(0)
    if spec.boundary:
        blocks["boundary"] = torch.stack(bnds).mean(0)
    if spec.uncertainty:
        blocks["uncertainty"] = disagreement(torch.stack(members))
    return torch.cat([blocks[n] for n in spec.names], dim=1)


def distance_head_trained(model: Any) -> tuple[bool, str]:
    """Whether ``model``'s distance and boundary heads were trained, and how that is known.

    A checkpoint trained by this package names its recipe: the heads are trained unless
    ``loss.distance_weight`` is 0 or the labels were scribbles (whose loss skips them). A model
    without a recipe (the authors' released checkpoints, a network built in a script) is taken as
    trained: MADGNet's published training (E-SDM deep supervision) trains all three outputs of
    every stage. A network without ``forward_stages`` has no heads.
    """
    if not hasattr(model, "forward_stages"):
        return False, f"{type(model).__name__} has no distance head (not a MADGNet)"
    info = getattr(model, "checkpoint_info", None) or {}
    recipe = (info.get("provenance") or {}).get("recipe")
    if not isinstance(recipe, dict):
        return True, "no training recipe recorded (released models train the E-SDM heads)"
    weight = float((recipe.get("loss") or {}).get("distance_weight", 1.0))
    if recipe.get("label_mode") == "scribble":
        return False, "trained on scribbles, whose loss does not train the distance head"
    if weight <= 0:
        return False, "trained with loss.distance_weight 0 (the distance head is untrained)"
    return True, f"trained with loss.distance_weight {weight:g}"


def resolve_uncertainty(value: bool | str | None) -> str | None:
    """The measure ``InferenceConfig.uncertainty`` names: None, or one of ``UNCERTAINTY_MEASURES``
    (``True`` is ``"entropy"``, the measure that tracked the errors best)."""
    if value is True:
        return "entropy"
    return value or None


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in bits of probabilities ``p``: float32 in [0, 1], 1 at p = 0.5, 0 at 0 and 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    return (-(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))).astype(np.float32)
