"""Segment an image of any layout and dtype with a MADGNet model.

``iter_segment`` is a generator that yields ``jobs.Progress`` and returns a
``SegmentationResult``; napari's ``thread_worker`` drives it in the widget, ``segment`` drives it
in scripts and the CLI. The image is read one plane at a time, normalised with one range fitted
on the whole image or stack, and run either resized to the model's input size (the release's
protocol) or as blended tiles. A cancelled run raises ``jobs.Cancelled``, returns nothing and
leaves no output store behind.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.device import cpu_summary, free_device_memory, resolve_device
from napari_madgnet.errors import UserError
from napari_madgnet.inference.config import (
    DEFAULT_INPUT_SIZE,
    InferenceConfig,
    PostprocessConfig,
    default_tile_size,
)
from napari_madgnet.inference.heads import (
    DISAGREEMENTS,
    OutputSpec,
    binary_entropy,
    distance_head_trained,
    resolve_uncertainty,
)
from napari_madgnet.inference.plane import iter_predict_plane, resize_in, resize_out
from napari_madgnet.inference.postprocess import instance_method, label_dtype, postprocess
from napari_madgnet.inference.provenance import build_provenance
from napari_madgnet.inference.runner import Runner
from napari_madgnet.inference.tiling import batches
from napari_madgnet.jobs import CancelToken, Progress, ProgressCallback, check_cancelled, run_to_end
from napari_madgnet.layout import Layout, resolve_layout
from napari_madgnet.preprocess import (
    Normalization,
    RangePlan,
    check_image_dtype,
    fit_range,
    fit_ranges,
    resolve_method,
)


@dataclass
class SegmentationResult:
    """Probabilities, labels and how they were made.

    ``probabilities``: float32 (K, *spatial) per-class sigmoid probabilities (multi-label).
    ``mask``: labels with the input's spatial shape (class ids, or instance ids when asked).
    ``axes``: the spatial axes of ``mask`` (the input's axes without C).
    ``distance``, ``boundary``: float32 (K, *spatial) E-SDM head maps in [0, 1], kept for
    watershed instances (else None); ``uncertainty``: float32 (K, *spatial) uncertainty in
    [0, 1] when ``config.uncertainty`` asked for it (else None; the entropy of the
    probabilities by default, see ``inference.heads``).
    Any of them may be a zarr array when the run wrote to ``output_zarr``.
    """

    probabilities: Any
    mask: Any
    axes: str
    config: InferenceConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    distance: Any = None
    boundary: Any = None
    uncertainty: Any = None

    @property
    def n_classes(self) -> int:
        return int(self.probabilities.shape[0])

    def repostprocess(self, config: PostprocessConfig) -> SegmentationResult:
        """A new result with labels from other post-processing settings; the network does not run.

        Watershed instances use the cached distance and boundary maps; raises ``UserError`` when
        they were not kept (segment again with ``instances="watershed"``).
        """
        mask = postprocess(self.probabilities, config, distance=self.distance, boundary=self.boundary)
        new_config = replace(self.config, postprocess=config)
        resolved = dict(self.provenance.get("resolved") or {})
        resolved["instances"] = instance_method(
            config.instances, self.distance is not None, config.head_weight
        )
        prov = dict(self.provenance, config=new_config.to_dict(), resolved=resolved)
        return replace(self, mask=mask, config=new_config, provenance=prov)


def _model_preprocessing(model: torch.nn.Module) -> dict[str, Any]:
    info = getattr(model, "checkpoint_info", None) or {}
    return dict(info.get("preprocessing") or {})


def resolve_normalization(
    requested: Any, preprocessing: dict[str, Any], dtype: np.dtype
) -> tuple[Normalization, str]:
    """The normalisation to use and why.

    The user's choice wins; then the checkpoint's. A checkpoint trained with "scale255" (8-bit
    images / 255) given data that is not 8-bit gets "percentile" instead: dividing 16-bit or
    float data by 255 would saturate it, and "full 8-bit range" means "the data's range" there.
    """
    if requested is not None:
        return Normalization.from_value(requested), "config"
    from_ckpt = preprocessing.get("normalization")
    if from_ckpt is None:
        return Normalization("auto"), "default (checkpoint names none)"
    norm = Normalization.from_value(from_ckpt)
    if norm.method == "scale255" and np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(bool)):
        return Normalization("percentile"), f"checkpoint 'scale255' adapted to {np.dtype(dtype)} data"
    return norm, "checkpoint"


def choose_geometry(
    config: InferenceConfig,
    plane_shape: tuple[int, int],
    input_size: int,
    preprocessing: dict[str, Any] | None = None,
) -> str:
    """``auto``: tiles for a model trained on patches, else resize when the plane's longer side is
    at most ``auto_tile_factor`` x input size.

    A patch-trained model (its checkpoint names a ``tile_size`` and no ``input_size``) must see
    patch-sized windows at native scale: the MFMSA channel attention pools the whole input, so a
    whole-image forward changes its statistics (Dice 0.92 tiled vs 0.35 whole on the nuclei sample).
    """
    if config.geometry != "auto":
        return config.geometry
    prep = preprocessing or {}
    if prep.get("tile_size") and not prep.get("input_size"):
        return "tiles"
    return "resize" if max(plane_shape) <= config.auto_tile_factor * input_size else "tiles"


def _as_array(image: Any) -> Any:
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    if math.prod(image.shape) == 0:
        raise ValueError(f"The image is empty (shape {tuple(image.shape)}); there is nothing to segment.")
    check_image_dtype(image.dtype)  # the same policy as training
    return image


#: Array names in an ``output_zarr`` store, by runner block.
_STORE_NAMES = {
    "map": "probabilities",
    "distance": "distance",
    "boundary": "boundary",
    "uncertainty": "uncertainty",
}


def output_spec(config: InferenceConfig, model: torch.nn.Module) -> tuple[OutputSpec, str | None]:
    """The runner outputs ``config`` needs from ``model`` and the instance method it implies.

    Watershed instances (asked, or ``instances=True`` with a model whose distance head was trained,
    ``heads.distance_head_trained``) keep the distance and boundary maps; the "tta" and "stages"
    uncertainties are computed per tile. Raises ``UserError`` for watershed, or the stage
    uncertainty, on a network without decoder stages.
    """
    instances = config.postprocess.instances
    trained, why = distance_head_trained(model)
    uses_head = config.postprocess.head_weight > 0
    heads = (instances == "watershed" and uses_head) or (instances is True and trained)
    if instances == "watershed" and uses_head and not trained:
        raise UserError(
            f"Watershed instances need a trained distance head, and this model has none ({why}); use "
            "head_weight 0 (a watershed on the mask's own distance) or instances 'components'."
        )
    measure = resolve_uncertainty(config.uncertainty)
    if (heads or measure == "stages") and not hasattr(model, "forward_stages"):
        raise UserError(
            f"{type(model).__name__} has no decoder stages (not a MADGNet): no distance map or stage "
            "uncertainty; use instances 'components' and uncertainty true or 'tta'."
        )
    disagreement = measure if measure in DISAGREEMENTS else None
    spec = OutputSpec(distance=heads, boundary=heads, uncertainty=disagreement, tta=config.tta)
    method = instance_method(instances, heads, config.postprocess.head_weight)
    return spec, method


class _Outputs:
    """Preallocated outputs in memory or in a zarr store written beside its final path."""

    def __init__(self, layout: Layout, config: InferenceConfig, overwrite: bool, spec: OutputSpec) -> None:
        self.layout = layout
        self.config = config
        self.spec = spec
        self.probabilities: Any = None
        self.mask: Any = None
        #: the runner's channel blocks by name ("map" is ``probabilities``)
        self.blocks: dict[str, Any] = {}
        #: the entropy is computed after the network, from the blended probabilities
        self.entropy = resolve_uncertainty(config.uncertainty) == "entropy"
        self.names = (*spec.names, "uncertainty") if self.entropy else spec.names
        self.target = Path(config.output_zarr) if config.output_zarr else None
        self.tmp: Path | None = None
        if self.target is not None:
            if self.target.exists() and not overwrite:
                raise FileExistsError(
                    f"{self.target} exists; pass overwrite=True (CLI: --overwrite) to replace it."
                )
            from napari_madgnet.atomic import temp_sibling

            self.tmp = temp_sibling(self.target)  # a name io.remove_stale_temp_files knows

    def allocate(self, channels: int) -> None:
        """Arrays for a runner output of ``channels`` = K x len(spec.names) channels."""
        n_classes = channels // len(self.spec.names)
        out_shape = self.layout.output_shape
        mdtype = label_dtype(n_classes, bool(self.config.postprocess.instances))
        if self.tmp is None:
            self.blocks = {n: np.zeros((n_classes, *out_shape), dtype=np.float32) for n in self.names}
            self.mask = np.zeros(out_shape, dtype=mdtype)
        else:
            import zarr

            group = zarr.open_group(str(self.tmp), mode="w")
            plane = (1,) * (len(out_shape) - 2) + tuple(min(s, 2048) for s in out_shape[-2:])
            create = getattr(group, "create_array", None) or group.create_dataset
            self.blocks = {
                n: create(
                    _STORE_NAMES[n],
                    shape=(n_classes, *out_shape),
                    chunks=(1, *plane),
                    dtype="float32",
                    fill_value=0,
                )
                for n in self.names
            }
            self.mask = create("mask", shape=out_shape, chunks=plane, dtype=mdtype.name, fill_value=0)
            self.group = group
        self.probabilities = self.blocks["map"]

    def write(self, index: tuple[int, ...], stack: torch.Tensor) -> None:
        """Store a (K x len(spec.names), H, W) runner output of the plane at ``index``."""
        if self.probabilities is None:
            self.allocate(stack.shape[0])
        for name, block in self.spec.split(stack).items():
            self.blocks[name][(slice(None), *index)] = block.numpy()

    def extra(self, name: str) -> Any:
        return self.blocks.get(name)

    def fill_entropy(self, planes: list[tuple[int, ...]]) -> None:
        """The entropy of the blended probabilities, plane by plane (zarr stays out of memory)."""
        if not self.entropy:
            return
        for index in planes:
            key = (slice(None), *index)
            self.blocks["uncertainty"][key] = binary_entropy(np.asarray(self.probabilities[key]))

    def commit(self, provenance: dict[str, Any]) -> tuple[Any, Any]:
        if self.tmp is None:
            return self.probabilities, self.mask
        import json

        import zarr

        self.group.attrs["provenance"] = json.loads(json.dumps(provenance, default=str))
        self.group.attrs["axes"] = self.layout.output_axes
        if self.target.exists():
            shutil.rmtree(self.target) if self.target.is_dir() else self.target.unlink()
        self.tmp.rename(self.target)
        self.tmp = None
        group = zarr.open_group(str(self.target), mode="r+")
        self.blocks = {n: group[_STORE_NAMES[n]] for n in self.names}
        return group["probabilities"], group["mask"]

    def discard(self) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


def _load(model: Any) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        return model
    from napari_madgnet.registry import load_registered_model

    return load_registered_model(model)


def iter_segment(
    image: Any,
    model: torch.nn.Module | str | Path,
    config: InferenceConfig | None = None,
    *,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment ``image`` (numpy, dask or zarr; any layout ``config.axes`` describes).

    ``model``: a network mapping (B, C, H, W) in [0, 1] to logits (B, K, H, W), or a registry
    name / checkpoint path. Yields progress; returns the result. Raises ``jobs.Cancelled`` when
    ``cancel`` fires (checked between batches of tiles or planes), ValueError for bad input.
    """
    config = config or InferenceConfig()
    image = _as_array(image)
    layout = resolve_layout(tuple(image.shape), config.axes, config.channel)
    if len(layout.output_axes) < 2 or layout.output_axes[-2:] != "YX":
        raise ValueError(
            f"Axes {layout.axes!r}: Y and X must be the last spatial axes, in that order; "
            "reorder the array (numpy.moveaxis) and its axes string."
        )
    net = _load(model)
    prep = _model_preprocessing(net)
    input_size = int(config.input_size or prep.get("input_size") or DEFAULT_INPUT_SIZE)
    tile_size = int(config.tile_size or default_tile_size(prep, input_size))
    norm, norm_source = resolve_normalization(config.normalization, prep, image.dtype)

    yield Progress(0.0, "Fitting the intensity range")
    range_per = config.range_per or prep.get("range_per") or "image"  # as the model was trained
    ranges = fit_ranges(image, layout, norm, range_per)
    for note in ranges.notes:
        yield Progress(0.0, note, {"warning": True})
    if np.dtype(image.dtype).kind == "f" and resolve_method(norm, image.dtype) not in (
        "percentile",
        "minmax",
    ):
        fit_range(layout.selection(image), "minmax")  # raises a clear error for all-NaN data
    geometry = choose_geometry(config, layout.plane_shape, input_size, prep)
    device = resolve_device(config.device)
    spec, method = output_spec(config, net)
    runner = Runner(
        net,
        device,
        batch_size=config.batch_size,
        mixed_precision=config.mixed_precision,
        precision=config.precision,
        backend=config.backend,
        in_channels=prep.get("channels"),
        outputs=spec,
    )
    outputs = _Outputs(layout, config, overwrite, spec)
    planes = list(layout.plane_indices())
    started = time.perf_counter()
    try:
        with free_device_memory(device):
            if geometry == "resize":
                steps = _run_resize(image, layout, planes, runner, outputs, ranges, input_size, cancel)
            else:
                steps = _run_tiles(
                    image, layout, planes, runner, outputs, ranges, tile_size, config, cancel
                )
            shown = len(ranges.notes)
            for progress in steps:
                for note in [*runner.notes, *ranges.notes[shown:]]:  # per-plane ranges: as they come
                    yield Progress(progress.fraction, note, {"warning": True})
                runner.notes.clear()
                shown = len(ranges.notes)
                yield progress
        check_cancelled(cancel)
        outputs.fill_entropy(planes)
        yield Progress(0.99, "Post-processing")
        postprocess(
            outputs.probabilities,
            config.postprocess,
            out=outputs.mask,
            distance=outputs.extra("distance"),
            boundary=outputs.extra("boundary"),
        )
        check_cancelled(cancel)
        provenance = build_provenance(
            net,
            config.to_dict(),
            normalization={**norm.to_dict(), "source": norm_source, **ranges.to_dict()},
            warnings=list(ranges.notes),
            geometry=geometry,
            input_size=input_size,
            tile_size=tile_size if geometry == "tiles" else None,
            device=str(runner.device),
            requested_device=config.device,
            fell_back_to_cpu=runner.fell_back_to_cpu,
            precision=runner.precision,
            backend=runner.backend,
            cpu=cpu_summary() if runner.device.type == "cpu" else None,
            input={"shape": list(layout.shape), "dtype": str(image.dtype), "axes": layout.axes},
            channels=layout.channels,
            instances=method,
            outputs=list(outputs.names),
            uncertainty=resolve_uncertainty(config.uncertainty),
            seconds=round(time.perf_counter() - started, 3),
        )
        probabilities, mask = outputs.commit(provenance)
    except BaseException:
        outputs.discard()
        raise
    yield Progress(1.0, "Done")
    return SegmentationResult(
        probabilities,
        mask,
        layout.output_axes,
        config,
        provenance,
        distance=outputs.extra("distance"),
        boundary=outputs.extra("boundary"),
        uncertainty=outputs.extra("uncertainty"),
    )


def _read(image: Any, layout: Layout, index: tuple[int, ...], rng: RangePlan) -> np.ndarray:
    return rng.read(image, index)


def _plane_label(layout: Layout, index: tuple[int, ...]) -> str:
    if not index:
        return ""
    return ", ".join(f"{a}={i}" for a, i in zip(layout.stack_axes, index, strict=True))


def _run_resize(image, layout, planes, runner, outputs, rng, size, cancel):
    """Whole planes resized to ``size`` x ``size``, several planes per batch (one forward each)."""
    n = len(planes)
    done = 0
    for group in batches(planes, runner.batch_size):
        check_cancelled(cancel)
        shapes = []
        xs = []
        for index in group:
            plane = _read(image, layout, index, rng)
            shapes.append(plane.shape[:2])
            xs.append(resize_in(plane, size))
        probs = runner(torch.cat(xs))
        for index, shape, p in zip(group, shapes, probs, strict=True):
            outputs.write(index, resize_out(p, shape))
        done += len(group)
        yield Progress(0.98 * done / n, f"Plane {done}/{n}" if n > 1 else "Segmented", {"planes": done})


def _run_tiles(image, layout, planes, runner, outputs, rng, tile, config, cancel):
    """Each plane as overlapping tiles (at ``config.scale``), by the one tiler."""
    n = len(planes)
    for p_i, index in enumerate(planes):
        check_cancelled(cancel)
        plane = _read(image, layout, index, rng)
        where = _plane_label(layout, index)
        steps = iter_predict_plane(
            plane,
            runner,
            geometry="tiles",
            input_size=tile,
            tile_size=tile,
            overlap=config.overlap,
            scale=config.scale,
            batch_size=runner.batch_size,
            cancel=cancel,
        )
        while True:
            try:
                done, total = next(steps)
            except StopIteration as stop:
                prob = stop.value
                break
            yield Progress(
                0.98 * (p_i + done / total) / n,
                f"{where + ': ' if where else ''}tile {done}/{total}",
                {"tiles": done},
            )
        del plane
        outputs.write(index, prob)


def segment(
    image: Any,
    model: torch.nn.Module | str | Path,
    config: InferenceConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
) -> SegmentationResult:
    """Run ``iter_segment`` to the end, passing each progress report to ``progress``."""
    return run_to_end(iter_segment(image, model, config, cancel=cancel, overwrite=overwrite), progress)
