"""The settings of one segmentation run, shared by the widget, the CLI and scripts.

One dataclass (with a nested post-processing one) so that a run can be repeated exactly from its
provenance or a YAML file: ``to_dict()`` gives plain JSON/YAML types, ``from_dict()`` reads them
back and rejects unknown keys (a typo should fail loudly, not be ignored).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from napari_madgnet.inference.heads import TTA_CHOICES, UNCERTAINTY_MEASURES
from napari_madgnet.inference.instances import INSTANCE_METHODS
from napari_madgnet.layout import check_axes
from napari_madgnet.preprocess import Normalization

GEOMETRIES: tuple[str, ...] = ("auto", "resize", "tiles")

#: The released models were trained on images resized to 352 x 352.
DEFAULT_INPUT_SIZE = 352


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"Unknown {cls.__name__} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )


@dataclass
class PostprocessConfig:
    """From probabilities to a label image; cheap, so it can be re-run without the network.

    ``threshold``: probability above which a pixel belongs to a class. ``fill_holes``: fill
    enclosed background. ``min_size``: remove objects (and, with ``fill_holes``, holes) smaller
    than this many pixels. ``largest``: keep only the largest object of each class per plane.
    ``instances``: number objects 1..N (unique over the whole stack) instead of class ids:
    ``"components"`` (connected components: touching objects merge), ``"watershed"`` (split along
    the valleys of MADGNet's predicted distance map averaged with the mask's own distance
    transform, see ``inference.instances``; the engine then keeps the distance and boundary
    maps) or ``True`` (the default method: watershed when the distance map is there, i.e. for
    models trained with the distance head, else components);
    ``False``: class ids. The watershed's settings (``inference.instances``): ``peak_height``
    (marker height in distance units, [0, 1]), ``boundary_barrier`` (weight of the boundary map
    in the relief) and ``head_weight`` (share of the predicted distance in the relief, the rest
    being the mask's own distance transform; 0 needs no distance head).
    """

    threshold: float = 0.5
    fill_holes: bool = False
    min_size: int = 0
    largest: bool = False
    instances: bool | str = False
    peak_height: float = 0.05
    boundary_barrier: float = 0.5
    head_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}.")
        if int(self.min_size) < 0:
            raise ValueError(f"min_size must be >= 0 pixels, got {self.min_size}.")
        if not (isinstance(self.instances, bool) or self.instances in INSTANCE_METHODS):
            raise ValueError(
                f"instances must be true, false, or one of {', '.join(INSTANCE_METHODS)}; "
                f"got {self.instances!r}."
            )
        if not 0.0 <= float(self.peak_height) <= 1.0:
            raise ValueError(f"peak_height is in distance-map units, [0, 1]; got {self.peak_height}.")
        if float(self.boundary_barrier) < 0.0:
            raise ValueError(f"boundary_barrier must be >= 0, got {self.boundary_barrier}.")
        if not 0.0 <= float(self.head_weight) <= 1.0:
            raise ValueError(f"head_weight is a share in [0, 1], got {self.head_weight}.")
        self.head_weight = float(self.head_weight)
        self.threshold = float(self.threshold)
        self.min_size = int(self.min_size)
        self.peak_height = float(self.peak_height)
        self.boundary_barrier = float(self.boundary_barrier)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PostprocessConfig:
        data = dict(data or {})
        _check_keys(cls, data)
        return cls(**data)


@dataclass
class InferenceConfig:
    """How to run the network over an image.

    Layout: ``axes`` names the array's dimensions with T, Z, C, Y, X (e.g. "YX", "YXC", "TZYX";
    ``None`` guesses, see ``layout.guess_axes``); ``channel`` picks one channel of a multichannel
    image (``None``: grey or RGB(A) as is). ``normalization``: a ``preprocess`` method name or dict;
    ``None`` uses what the checkpoint was trained with, else "auto".

    Geometry: ``resize`` (the release's protocol: the whole plane resized to ``input_size``),
    ``tiles`` (sliding ``tile_size`` windows with ``overlap`` at ``scale`` x native resolution), or
    ``auto`` (resize when the plane's longer side is at most ``auto_tile_factor`` x the model's
    input size, tiles otherwise). ``input_size``/``tile_size`` ``None``: from the checkpoint, else 352.

    Execution: ``device`` ("auto", "cpu", "cuda:1", "mps"), ``batch_size`` tiles or planes per
    forward pass (``None``: 8 on a GPU, 1 on the CPU, where one at a time with packed weights is
    the fastest at every size measured), ``mixed_precision`` (CUDA only). ``output_zarr``: write
    probabilities and labels to this zarr store instead of memory, for stacks larger than RAM.

    Extra outputs (``inference.heads``): ``tta`` flip passes (1 = off; 2, 4 or 8 forward passes,
    averaged), ``uncertainty``: a per-pixel uncertainty map in [0, 1] beside the probabilities:
    ``True`` (= ``"entropy"``: the binary entropy of the final, TTA-averaged probability, the
    measure that tracked the errors best), ``"tta"`` (disagreement of the flips), ``"stages"``
    (disagreement of the four decoder stages; measured weak, kept to repeat the measurement; see
    ``inference.heads``) or ``False``. Watershed instances (``postprocess``) make the engine keep
    the distance and boundary maps too.
    """

    axes: str | None = None
    channel: int | None = None
    normalization: str | dict[str, Any] | None = None
    geometry: str = "auto"
    input_size: int | None = None
    tile_size: int | None = None
    overlap: float = 0.25
    scale: float = 1.0
    auto_tile_factor: float = 1.5
    batch_size: int | None = None
    device: str = "auto"
    mixed_precision: bool = True
    output_zarr: str | None = None
    tta: int = 1
    uncertainty: bool | str = False
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig.from_dict(self.postprocess)
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"Unknown geometry {self.geometry!r}; choose one of {', '.join(GEOMETRIES)}.")
        if self.axes is not None:
            self.axes = check_axes(self.axes)
        for name in ("input_size", "tile_size"):
            value = getattr(self, name)
            if value is not None and int(value) < 32:
                raise ValueError(
                    f"{name} must be at least 32 pixels (the network downsamples 32x), got {value}."
                )
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ValueError(f"overlap is a fraction of the tile in [0, 1), got {self.overlap}.")
        if not float(self.scale) > 0.0:
            raise ValueError(f"scale must be > 0, got {self.scale}.")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.channel is not None and int(self.channel) < 0:
            raise ValueError(f"channel is a 0-based index, got {self.channel}.")
        if int(self.tta) not in TTA_CHOICES:
            raise ValueError(f"tta is the number of flip passes, one of {TTA_CHOICES}; got {self.tta}.")
        self.tta = int(self.tta)
        if not (isinstance(self.uncertainty, bool) or self.uncertainty in UNCERTAINTY_MEASURES):
            raise ValueError(
                f"uncertainty must be true, false or one of {', '.join(UNCERTAINTY_MEASURES)}; "
                f"got {self.uncertainty!r}."
            )
        if self.uncertainty == "tta" and self.tta == 1:
            raise ValueError("uncertainty 'tta' is the disagreement of flips: set tta to 2, 4 or 8.")
        if self.normalization is not None:
            Normalization.from_value(self.normalization)  # validates the name early

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["postprocess"] = self.postprocess.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InferenceConfig:
        data = dict(data or {})
        _check_keys(cls, data)
        if "postprocess" in data:
            data["postprocess"] = PostprocessConfig.from_dict(data["postprocess"])
        return cls(**data)
