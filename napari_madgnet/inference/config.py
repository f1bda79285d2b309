"""The settings of one segmentation run, shared by the widget, the CLI and scripts.

One dataclass (with a nested post-processing one) so that a run can be repeated exactly from its
provenance or a YAML file: ``to_dict()`` gives plain JSON/YAML types, ``from_dict()`` reads them
back and rejects unknown keys (a typo should fail loudly, not be ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_madgnet.device import BACKENDS, PRECISIONS
from napari_madgnet.errors import ConfigError
from napari_madgnet.inference.heads import TTA_CHOICES, UNCERTAINTY_MEASURES
from napari_madgnet.inference.instances import INSTANCE_METHODS
from napari_madgnet.layout import check_axes
from napari_madgnet.preprocess import RANGE_PER, Normalization
from napari_madgnet.settings import (
    DEVICE_NAME,
    build,
    check_fields,
    config_error,
    in_file,
    load_yaml_mapping,
    setting,
    to_plain,
)

GEOMETRIES: tuple[str, ...] = ("auto", "resize", "tiles")

#: The released models were trained on images resized to 352 x 352.
DEFAULT_INPUT_SIZE = 352

#: A model trained on patches (its checkpoint names a ``tile_size``, no ``input_size``) is tiled
#: at this many times its patch size by default: the largest tile whose Dice on the nuclei
#: sample's held-out half stayed within 0.005 of the patch-size tile's (benchmarks/bench_tiles.py,
#: docs/inference.md). Fewer, larger tiles: far fewer forward passes for the same pixels.
PATCH_TILE_FACTOR = 1


def default_tile_size(preprocessing: dict[str, Any] | None, input_size: int) -> int:
    """The tile size when the config names none: ``PATCH_TILE_FACTOR`` x the patch size for a
    patch-trained model, else the checkpoint's ``tile_size`` or ``input_size``."""
    prep = preprocessing or {}
    patch = prep.get("tile_size")
    if patch and not prep.get("input_size"):
        return int(patch) * PATCH_TILE_FACTOR
    return int(patch or input_size)


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

    threshold: float = setting(0.5, ge=0, le=1)
    fill_holes: bool = False
    min_size: int = setting(0, ge=0)
    largest: bool = False
    instances: bool | str = setting(False, choices=INSTANCE_METHODS)
    peak_height: float = setting(0.05, ge=0, le=1, why="in distance-map units")
    boundary_barrier: float = setting(0.5, ge=0)
    head_weight: float = setting(0.5, ge=0, le=1, why="a share of the relief")

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PostprocessConfig:
        return build(cls, dict(data or {}))


@dataclass
class InferenceConfig:
    """How to run the network over an image.

    Layout: ``axes`` names the array's dimensions with T, Z, C, Y, X (e.g. "YX", "YXC", "TZYX";
    ``None`` guesses, see ``layout.guess_axes``); ``channel`` picks one channel of a multichannel
    image (``None``: grey or RGB(A) as is). ``normalization``: a ``preprocess`` method name or dict
    (or a ``Normalization``, stored as its dict); ``None`` uses what the checkpoint was trained with,
    else "auto". ``range_per``: fit the intensity range once over the whole image or stack
    ("image") or on each plane ("plane"); ``None`` does what the checkpoint was trained with, else
    "image".

    Geometry: ``resize`` (the release's protocol: the whole plane resized to ``input_size``),
    ``tiles`` (sliding ``tile_size`` windows with ``overlap`` at ``scale`` x native resolution), or
    ``auto`` (resize when the plane's longer side is at most ``auto_tile_factor`` x the model's
    input size, tiles otherwise). ``input_size``/``tile_size`` ``None``: from the checkpoint, else 352.

    Execution: ``device`` ("auto", "cpu", "cuda:1", "mps"), ``batch_size`` tiles or planes per
    forward pass (``None``: 8 on a GPU, 1 on the CPU, where one at a time with packed weights is
    the fastest at every size measured). ``precision``: "auto" (bf16 autocast on CPUs with native
    bf16, AVX512-BF16 or AMX, and on CUDA GPUs with bf16, fp16 on older GPUs; fp32 on other CPUs
    and MPS; see ``device.resolve_precision``), "fp32" or "bf16". ``mixed_precision=False`` turns
    "auto" into fp32. ``backend``: "torch", or "onnxruntime" (the model's ONNX export run by ONNX
    Runtime on the CPU, fp32, map only; the ``export`` extra). ``output_zarr``: write
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
    channel: int | None = setting(None, ge=0)
    normalization: str | dict[str, Any] | None = None
    range_per: str | None = setting(None, choices=RANGE_PER)
    geometry: str = setting("auto", choices=GEOMETRIES)
    input_size: int | None = setting(None, ge=32, why="the network downsamples 32x")
    tile_size: int | None = setting(None, ge=32, why="the network downsamples 32x")
    overlap: float = setting(0.25, ge=0, lt=1, why="a fraction of the tile")
    scale: float = setting(1.0, gt=0)
    auto_tile_factor: float = setting(1.5, gt=0)
    batch_size: int | None = setting(None, ge=1)
    device: str = setting("auto", pattern=DEVICE_NAME, examples="auto, cpu, cuda, cuda:1, mps")
    mixed_precision: bool = True
    precision: str = setting("auto", choices=PRECISIONS)
    backend: str = setting("torch", choices=BACKENDS)
    output_zarr: str | None = None
    tta: int = 1
    uncertainty: bool | str = setting(False, choices=UNCERTAINTY_MEASURES)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        """Check every setting's type and range (``ConfigError`` naming it, dotted for
        ``postprocess.threshold``), the axes and the normalisation name."""
        if isinstance(self.normalization, Normalization):  # kept as plain data, for YAML and provenance
            self.normalization = self.normalization.to_dict()
        check_fields(self)
        if self.axes is not None:
            self.axes = check_axes(self.axes)
        if int(self.tta) not in TTA_CHOICES:
            raise config_error("tta", f"is the number of flip passes, one of {TTA_CHOICES}; got {self.tta}.")
        self.tta = int(self.tta)
        if self.uncertainty == "tta" and self.tta == 1:
            raise config_error(
                "uncertainty", "'tta' is the disagreement of flips: set tta to 2, 4 or 8 as well."
            )
        if self.normalization is not None:
            try:
                Normalization.from_value(self.normalization)
            except (TypeError, ValueError) as exc:
                raise config_error("normalization", f"is not usable: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InferenceConfig:
        """Rebuild from ``to_dict`` output or a YAML mapping; unknown keys are an error."""
        return build(cls, dict(data or {}))

    @classmethod
    def from_yaml(cls, path: str | Path) -> InferenceConfig:
        """Read settings from a YAML file; errors name the file and the key."""
        data = load_yaml_mapping(path, "InferenceConfig")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise in_file(path, exc) from None
