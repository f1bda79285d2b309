"""``madgnet predict``: segment image files and folders with a registered or given model.

Masks go to ``OUT/<stem>_mask.tif`` (or .png/.zarr); ``--save-probabilities`` adds
``OUT/<stem>_probabilities.tif``, ``--save-uncertainty`` ``OUT/<stem>_uncertainty.tif`` (the
uncertainty map of ``inference.heads``; in a .zarr mask store it is an array beside the mask),
``--measure`` ``OUT/<stem>_measurements.csv`` (per-object size, equivalent diameter, centroid in the
file's physical units and intensities; ``napari_madgnet.measure``, the Measure dock's table).
Medical volumes (DICOM, NIfTI, NRRD, MetaImage; the ``medical`` extra) are segmented plane by plane
along their slice axis and their masks written in the same family with the same geometry (NIfTI for
NIfTI and DICOM, NRRD, MHA); videos (the ``video`` extra) give ``<stem>_mask.tif`` (a page per
frame) and ``<stem>_overlay.mp4``. Inputs are never overwritten and existing outputs are refused
unless ``--overwrite``; ``--skip-existing`` continues an interrupted run (complete output sets are
skipped, incomplete ones redone). One failing file does not stop the others; the exit code is 0 only
when all succeeded (130 when stopped by Ctrl-C/SIGTERM, which finishes nothing half-way). The output
folder holds a JSON log, ``madgnet-predict-<time>.json``, rewritten as files finish: per file its
status, outputs, resolved axes, normalisation range, geometry, device and full provenance. Under
``torchrun`` each process takes its share of the files (RANK/WORLD_SIZE) and its own GPU
(LOCAL_RANK).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
#: Mask formats that carry geometry (the medical module's writers; kept here so --help needs no import).
WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")


def shard_files(files: list[T], rank: int, world_size: int) -> list[T]:
    """Files of process ``rank`` out of ``world_size``: every world_size-th, starting at rank.

    Interleaving (not contiguous blocks) spreads large and small files evenly over processes
    when names sort by acquisition. Every file lands in exactly one shard.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}.")
    return files[rank::world_size]


def distributed_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when not under it."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from exc
    return rank, world, local


def add_parser(subparsers: Any) -> None:
    # Every option states its default once, in its own words (no ArgumentDefaultsHelpFormatter: it
    # would add "(default: None)" where None means "from the model" or "guessed").
    p = subparsers.add_parser(
        "predict",
        help="segment image files or folders",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files or folders (tif, png, jpg, bmp, npy, zarr; with [medical]: DICOM files and "
        "folders, nii/nii.gz, nrrd/nhdr, mha/mhd; with [video]: mp4, avi, mov, mkv)",
    )
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="registered model name (madgnet models list) or checkpoint path (required)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (required)")
    p.add_argument(
        "--format",
        choices=("tif", "png", "zarr", *(s.lstrip(".") for s in WRITE_SUFFIXES)),
        help="mask file format (default: the input's family for medical images, else tif)",
    )
    p.add_argument(
        "--series",
        help="SeriesInstanceUID to read from DICOM folders holding several series (default: the only one)",
    )
    p.add_argument(
        "--save-probabilities", action="store_true", help="also write <stem>_probabilities.tif (default: off)"
    )
    p.add_argument(
        "--save-uncertainty",
        action="store_true",
        help="also write <stem>_uncertainty.tif: per-pixel entropy of the (TTA-averaged) probability, 0-1 "
        "(default: off)",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="also write <stem>_measurements.csv: per object its area or volume, equivalent diameter and "
        "centroid in the file's physical units (pixels without a spacing) and the image's mean/min/max "
        "intensity; objects are connected pieces of a binary mask, label values with --instances; not for "
        "videos (default: off)",
    )
    p.add_argument(
        "--config", type=Path, help="YAML file of InferenceConfig settings; flags override it (default: none)"
    )
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: refuse)"
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="continue an interrupted run: skip inputs whose outputs are all there, redo incomplete ones "
        "(default: off)",
    )
    p.add_argument(
        "--recursive",
        action="store_true",
        help="look into sub-folders, linked ones too; the output folder and earlier outputs are left out "
        "(default: off)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (default: a bar)")
    g = p.add_argument_group("image layout and intensities")
    g.add_argument(
        "--axes",
        help="axes of the images, e.g. YX, YXC, ZYX, TZYX, CYX (default: the file's own, else guessed from "
        "the shape)",
    )
    g.add_argument(
        "--channel",
        type=int,
        help="channel to segment in multichannel images, 0-based (default: grey or RGB as it is)",
    )
    g.add_argument(
        "--normalization",
        help="scale255, percentile, minmax, none, auto or a CT window (default: the model's own)",
    )
    g = p.add_argument_group("geometry and device")
    g.add_argument(
        "--geometry",
        choices=("auto", "resize", "tiles"),
        help="resize: the whole image resized to the model's input; tiles: native-resolution tiles; "
        "auto: resize up to 1.5x the model's input size, tiles above (default: auto)",
    )
    g.add_argument(
        "--tile", type=int, help="tile size in pixels; implies --geometry tiles (default: the model's)"
    )
    g.add_argument("--overlap", type=float, help="tile overlap as a fraction of the tile (default: 0.25)")
    g.add_argument("--scale", type=float, help="resample the image by this factor before tiling (default: 1)")
    g.add_argument("--input-size", type=int, help="model input size for resize (default: the model's)")
    g.add_argument(
        "--batch-size", type=int, help="tiles or planes per forward pass (default: 8 on a GPU, 1 on the CPU)"
    )
    g.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    g.add_argument(
        "--no-amp", action="store_true", help="no mixed precision on CUDA (default: mixed precision)"
    )
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="auto: bf16 on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs, fp32 elsewhere "
        "(default: auto)",
    )
    g.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        help="onnxruntime: the model's ONNX export in ONNX Runtime, CPU and fp32 only (default: torch)",
    )
    g.add_argument(
        "--tta",
        type=int,
        choices=(1, 2, 4, 8),
        help="flip test-time augmentation: forward passes averaged (default: 1, no flips)",
    )
    g = p.add_argument_group("post-processing")
    g.add_argument("--threshold", type=float, help="probability threshold (default: 0.5)")
    g.add_argument(
        "--fill-holes", action="store_true", default=None, help="fill holes in objects (default: off)"
    )
    g.add_argument(
        "--min-size", type=int, help="remove objects smaller than this many pixels (default: 0, keep all)"
    )
    g.add_argument(
        "--largest", action="store_true", default=None, help="keep the largest object only (default: off)"
    )
    g.add_argument(
        "--instances",
        nargs="?",
        const=True,
        choices=("components", "watershed"),
        default=None,
        help="number objects 1..N: connected components, or a watershed on the model's distance map "
        "(alone: watershed for models trained with the distance head, else components; default: one "
        "label, 1)",
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """InferenceConfig from ``--config`` YAML, then the flags given on the command line."""
    from napari_madgnet.inference import InferenceConfig

    data: dict[str, Any] = {}
    if args.config:  # checked on its own first, so its errors name the file and the key
        data = InferenceConfig.from_yaml(args.config).to_dict()
    post = dict(data.pop("postprocess", None) or {})
    flags = {
        "axes": args.axes,
        "channel": args.channel,
        "normalization": args.normalization,
        "geometry": args.geometry,
        "tile_size": args.tile,
        "overlap": args.overlap,
        "scale": args.scale,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "backend": args.backend,
        "tta": args.tta,
    }
    if args.save_uncertainty:
        flags["uncertainty"] = data.get("uncertainty") or True
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.tile is not None and args.geometry is None:
        data["geometry"] = "tiles"
    if args.no_amp:
        data["mixed_precision"] = False
    post_flags = {
        "threshold": args.threshold,
        "fill_holes": args.fill_holes,
        "min_size": args.min_size,
        "largest": args.largest,
        "instances": args.instances,
    }
    post.update({k: v for k, v in post_flags.items() if v is not None})
    data["postprocess"] = post
    return InferenceConfig.from_dict(data)


def default_format(path: Path) -> str:
    """The mask format of an input when --format is not given: its own family, else tif."""
    from napari_madgnet.medical import format_of, mask_suffix

    fmt = format_of(path)
    if fmt is None:
        return "tif"
    return (mask_suffix(fmt, path) or ".nii.gz").lstrip(".")


def plan_outputs(
    files: list[Path],
    out: Path,
    fmt: str | None,
    probabilities: bool,
    uncertainty: bool = False,
    measure: bool = False,
) -> dict[Path, dict[str, Path]]:
    """Output paths per input; refuses name clashes and outputs that would replace an input.

    ``fmt`` None: each input's ``default_format``. Videos get a per-frame mask and an overlay.
    """
    from napari_madgnet.io import image_stem
    from napari_madgnet.video import is_video_path

    plan: dict[Path, dict[str, Path]] = {}
    seen: dict[Path, Path] = {}
    inputs = {f.resolve() for f in files}
    for f in files:
        ext = fmt or default_format(f)
        stem = image_stem(f)
        paths = {"mask": out / f"{stem}_mask.{ext}"}
        if is_video_path(f):
            paths["overlay"] = out / f"{stem}_overlay.mp4"
        elif ext != "zarr":  # a zarr mask store holds the probabilities (and uncertainty) already
            extra_ext = ext if f".{ext}" in WRITE_SUFFIXES else "tif"
            if probabilities:
                paths["probabilities"] = out / f"{stem}_probabilities.{extra_ext}"
            if uncertainty:
                paths["uncertainty"] = out / f"{stem}_uncertainty.{extra_ext}"
        if measure and not is_video_path(f):
            paths["measurements"] = out / f"{stem}_measurements.csv"
        for p in paths.values():
            if p.resolve() in inputs:
                raise ValueError(f"Output {p} would overwrite an input; choose another output folder (-o).")
            if p in seen:
                raise ValueError(
                    f"{seen[p]} and {f} would both write {p}; predict them into separate output folders."
                )
            seen[p] = f
        plan[f] = paths
    return plan


def _device_for_rank(device: str, world: int, local_rank: int) -> str:
    import torch

    if device == "auto" and world > 1 and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def check_output_folder(out: Path, *, keep: bool = False) -> None:
    """Fail before any work when masks cannot be written to ``out`` (a file, read-only, no
    permission); creates nothing that stays unless ``keep`` (torchrun: the ranks share the
    folder, and one must not remove it under another). Raises ``UserError``."""
    import tempfile

    from napari_madgnet.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"The output {out} is a file, not a folder; give a folder for the masks (-o).")
    created = []
    p = out.absolute()
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    if not p.is_dir():
        raise UserError(f"The output folder {out} cannot be made: {p} is a file. Choose another folder (-o).")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UserError(
            f"Cannot write into the output folder {out} ({exc.strerror or exc}); choose another folder (-o)."
        ) from exc
    finally:
        for folder in [] if keep else created:  # made only to try: the run makes it again
            try:
                folder.rmdir()
            except OSError:
                break


#: Names ``madgnet predict`` gives its outputs (``<stem>_mask.tif``...) and its logs.
_OUTPUT_NAME = re.compile(r"_(mask|probabilities|overlay)\.[A-Za-z0-9.]+$")
_LOG_GLOB = "madgnet-predict-*.json"


def output_exclusions(out: Path) -> Any:
    """A ``find_images(exclude=...)`` rule: leave out the output folder, and this command's outputs
    in folders that hold one of its logs (an output folder of an earlier run), with the reason."""
    out_real = os.path.realpath(out)
    outputs: dict[str, tuple[set[str], str] | None] = {}

    def listed(folder: Path) -> tuple[set[str], str] | None:
        key = os.path.realpath(folder)
        if key not in outputs:
            logs = sorted(folder.glob(_LOG_GLOB))
            names: set[str] = set()
            for log in logs:
                try:
                    data = json.loads(log.read_text())
                    names.update(Path(o).name for f in data.get("files", []) for o in f.get("outputs", []))
                except (OSError, ValueError, AttributeError, TypeError):
                    continue
            outputs[key] = (names, logs[-1].name) if logs else None
        return outputs[key]

    def exclude(path: Path) -> str | None:
        if os.path.realpath(path) == out_real:
            return "the output folder (-o)"
        found = listed(path.parent)
        if found is not None and (path.name in found[0] or _OUTPUT_NAME.search(path.name)):
            return f"an output of an earlier madgnet predict run (log {found[1]})"
        return None

    return exclude


def output_state(paths: dict[str, Path]) -> str:
    """ "complete" (every output of the set exists), "partial" or "none"."""
    there = [p.exists() for p in paths.values()]
    return "complete" if all(there) else "partial" if any(there) else "none"


def file_record(result_provenance: dict[str, Any]) -> dict[str, Any]:
    """What a result was made with, in plain fields for the log (issue 12): resolved axes, input
    shape and dtype, normalisation method and range, geometry, sizes, device."""
    resolved = result_provenance.get("resolved") or {}
    given = resolved.get("input") or {}
    norm = resolved.get("normalization") or {}
    return {
        "axes": given.get("axes"),
        "shape": given.get("shape"),
        "dtype": given.get("dtype"),
        "channels": resolved.get("channels"),
        "normalization": {
            "method": norm.get("method"),
            "range": norm.get("range"),
            "source": norm.get("source"),
        },
        "geometry": resolved.get("geometry"),
        "input_size": resolved.get("input_size"),
        "tile_size": resolved.get("tile_size"),
        "device": resolved.get("device"),
        "precision": resolved.get("precision"),
        "backend": resolved.get("backend"),
        "fell_back_to_cpu": resolved.get("fell_back_to_cpu"),
    }


class RunLog:
    """``OUT/madgnet-predict-<time>[-rankN].json``: the run's settings and a record per file,
    rewritten atomically as files finish (at most about once a second, and at the end), so an
    interrupted run leaves a log of what it did."""

    def __init__(self, out: Path, header: dict[str, Any], rank: int, world: int) -> None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"madgnet-predict-{stamp}{f'-rank{rank}' if world > 1 else ''}"
        self.path: Path | None = None
        for i in range(1, 100):  # two runs started in the same second keep two logs
            candidate = out / (f"{base}.json" if i == 1 else f"{base}-{i}.json")
            try:
                with open(candidate, "x"):
                    pass
            except FileExistsError:
                continue
            except OSError as exc:
                print(f"warning: cannot write the run log in {out}: {exc}", file=sys.stderr)
                break
            self.path = candidate
            break
        self.data: dict[str, Any] = {**header, "status": "running", "files": []}
        self._last = 0.0
        self._cost = 0.0
        self.flush(force=True)

    def add(self, record: dict[str, Any]) -> None:
        self.data["files"].append(record)
        self.flush()

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.data.update(status=status, summary=summary, ended=_dt.datetime.now().astimezone().isoformat())
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._last < max(1.0, 10 * self._cost):
            return  # a long run's log is rewritten often, not after every one of 10,000 files
        from napari_madgnet.io import atomic_path

        try:
            with atomic_path(self.path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(self.data, indent=1, default=str))
        except OSError as exc:
            print(f"warning: could not write the run log {self.path}: {exc}", file=sys.stderr)
            self.path = None
        self._last = time.monotonic()
        self._cost = self._last - now


def _predict_one(image_path, paths, model, config, overwrite, bar, series=None, notes=None) -> dict[str, Any]:
    import dataclasses

    import numpy as np

    from napari_madgnet.imagefile import AxesNotes, planes_last
    from napari_madgnet.inference import segment
    from napari_madgnet.io import read_image_file, write_output

    for p in paths.values():
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass --overwrite to replace it.")
    image = read_image_file(image_path, lazy=True, series=series)
    # axes: given, from the file, or guessed (then said once per layout); kept in log and provenance
    axes_info, note = (notes or AxesNotes()).check(image, config.axes)
    if note:
        (bar.write if bar is not None else print)(f"note: {note}", file=sys.stderr)

    def show(progress):
        if bar is not None:
            bar.set_postfix_str(f"{image_path.name}: {progress.message}"[:60], refresh=False)
        if progress.details.get("warning"):  # shown with --quiet too (it only hides the bar), naming the file
            (bar.write if bar is not None else print)(
                f"warning: {image_path.name}: {progress.message}", file=sys.stderr
            )

    if image.format == "video":  # frames streamed in, masks and overlay streamed out
        from napari_madgnet.inference.video import segment_video

        done = segment_video(
            image.data, model, config, mask_path=paths["mask"], overlay_path=paths["overlay"],
            overwrite=overwrite, progress=show,
        )  # fmt: skip
        provenance = {**done["provenance"], "input_axes": axes_info}
        return {
            "outputs": done["outputs"],
            **file_record(done["provenance"]),
            "provenance": provenance,
            **axes_info,
        }
    stored_axes = config.axes or image.axes  # the file's axes unless --axes: volumes are ZYX
    data, engine_axes = image.data, stored_axes
    if stored_axes is not None:
        perm, engine_axes = planes_last(stored_axes)  # --axes YZX: segment other planes
        if engine_axes != stored_axes:
            data = np.transpose(np.asarray(data), perm)
    config = dataclasses.replace(config, axes=engine_axes)
    if "probabilities" not in paths and paths["mask"].suffix == ".zarr" and engine_axes == stored_axes:
        config = dataclasses.replace(config, output_zarr=str(paths["mask"]))
    result = segment(data, model, config, progress=show, overwrite=overwrite)
    written = []
    if config.output_zarr:
        written.append(paths["mask"])
    else:
        mask, probs = np.asarray(result.mask), np.asarray(result.probabilities)
        unc = None if result.uncertainty is None else np.asarray(result.uncertainty)
        if engine_axes != stored_axes:  # labels back in the stored order, on the image's grid
            back = [result.axes.index(a) for a in stored_axes.replace("C", "")]
            mask, probs = mask.transpose(back), probs.transpose([0, *(1 + b for b in back)])
            unc = None if unc is None else unc.transpose([0, *(1 + b for b in back)])
        # the image's geometry; a plain image (no axes in the file) is placed at unit spacing
        ref = image if image.axes is not None else dataclasses.replace(image, data=mask, axes=result.axes)
        try:
            write_output(paths["mask"], mask, ref, overwrite=overwrite)
            written.append(paths["mask"])
            if "probabilities" in paths:
                probs = probs[0] if probs.shape[0] == 1 else probs
                write_output(paths["probabilities"], probs, ref, kind="image", overwrite=overwrite)
                written.append(paths["probabilities"])
            if "uncertainty" in paths:
                unc = unc[0] if unc.shape[0] == 1 else unc
                write_output(paths["uncertainty"], unc, ref, kind="image", overwrite=overwrite)
                written.append(paths["uncertainty"])
        except BaseException:
            for p in written:  # no half set of outputs
                p.unlink(missing_ok=True)
            raise
    if "measurements" in paths:
        from napari_madgnet.cli._measurements import write_measurements

        labels = np.asarray(result.mask) if config.output_zarr else mask
        try:
            write_measurements(
                paths["measurements"], labels, image, stored_axes or result.axes, overwrite=overwrite
            )
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        written.append(paths["measurements"])
    provenance = {**result.provenance, "input_axes": axes_info}
    return {
        "outputs": [str(p) for p in written],
        **file_record(result.provenance),
        "provenance": provenance,
        **axes_info,
    }


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_madgnet.cli._common import EXIT_STOPPED, stop_on_signals
    from napari_madgnet.errors import is_user_error
    from napari_madgnet.io import ImageReadError, find_images, remove_stale_temp_files
    from napari_madgnet.jobs import CancelToken

    left_out: list[tuple[Path, str]] = []
    try:
        config = build_config(args)
        rank, world, local_rank = distributed_rank()
        check_output_folder(args.output, keep=world > 1)  # before the model loads or anything runs
        files = find_images(
            args.inputs, recursive=args.recursive, exclude=output_exclusions(args.output), skipped=left_out
        )
        plan = plan_outputs(
            files, args.output, args.format, args.save_probabilities, args.save_uncertainty, args.measure
        )
        mine = shard_files(files, rank, world)
        if not (args.overwrite or args.skip_existing):
            _refuse_existing(mine, plan)
    except Exception as exc:
        if not (is_user_error(exc) or isinstance(exc, ValueError | ImageReadError)):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import dataclasses

    config = dataclasses.replace(config, device=_device_for_rank(config.device, world, local_rank))
    try:
        from napari_madgnet.device import resolve_device

        resolve_device(config.device)  # a missing GPU is one clear error, not one per file
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from napari_madgnet.inference import fast_model
        from napari_madgnet.registry import load_registered_model

        model = load_registered_model(args.model)
        if config.backend == "torch":
            model = fast_model(model)  # made once for all the files (ONNX Runtime exports the plain model)
    except Exception as exc:
        print(f"error: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    args.output.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(args.output)  # what a killed run's interrupted writes left
    for path, reason in left_out[:10]:
        print(f"{tag}note: left out {path}: {reason}", file=sys.stderr)
    if len(left_out) > 10:
        print(f"{tag}note: ... and {len(left_out) - 10} more left out (listed in the log)", file=sys.stderr)
    log = RunLog(
        args.output,
        {
            "model": str(args.model),
            "config": config.to_dict(),
            "rank": rank,
            "world_size": world,
            "started": _dt.datetime.now().astimezone().isoformat(),
            "skip_existing": args.skip_existing,
            "left_out": [{"path": str(p), "reason": r} for p, r in left_out],
        },
        rank,
        world,
    )
    from napari_madgnet.imagefile import AxesNotes

    notes = AxesNotes()  # one note per guessed layout, not one per file
    counts = {"segmented": 0, "skipped": 0, "failed": 0, "not_done": 0}
    token = CancelToken()
    interrupted = False
    bar = tqdm(mine, desc=f"{tag}predict", unit="image", disable=args.quiet, file=sys.stderr)
    stop_note = (
        "stopping after the current image (nothing is left half-written; rerun with --skip-existing "
        "to continue). Press Ctrl-C again to stop at once."
    )
    with stop_on_signals(token, "prediction", note=stop_note):
        for index, f in enumerate(bar):
            if token.cancelled:
                interrupted = True
                counts["not_done"] = len(mine) - index
                break
            start = time.perf_counter()
            record: dict[str, Any] = {"input": str(f)}
            overwrite = args.overwrite
            state = output_state(plan[f])
            if args.skip_existing and state == "complete":
                counts["skipped"] += 1
                record.update(
                    status="skipped",
                    reason="its outputs exist (--skip-existing)",
                    outputs=[str(p) for p in plan[f].values()],
                )
                log.add(record)
                continue
            if args.skip_existing and state == "partial":
                overwrite = True  # an incomplete set from an interrupted run is made again whole
                record["redone"] = "its outputs were incomplete"
            try:
                record.update(
                    _predict_one(
                        f,
                        plan[f],
                        model,
                        config,
                        overwrite,
                        None if args.quiet else bar,
                        series=args.series,
                        notes=notes,
                    )
                )
                record["status"] = "ok"
                counts["segmented"] += 1
            except KeyboardInterrupt:  # a second Ctrl-C: stop at once
                interrupted = True
                counts["not_done"] = len(mine) - index
                record.update(
                    status="interrupted", error="stopped before this image was finished; nothing written"
                )
                log.add(record)
                break
            except Exception as exc:
                counts["failed"] += 1
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                message = f"{tag}FAILED {f}: {exc}"
                (bar.write(message, file=sys.stderr) if not args.quiet else print(message, file=sys.stderr))
            record["seconds"] = round(time.perf_counter() - start, 3)
            log.add(record)
    bar.close()
    log.finish("interrupted" if interrupted else "finished", counts)
    parts = [f"{counts['segmented']}/{len(mine)} image(s) segmented"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped (outputs exist)")
    parts.append(f"{counts['failed']} failed")
    if interrupted:
        parts.append(f"{counts['not_done']} not done (stopped; rerun with --skip-existing to continue)")
    print(
        f"{tag}{', '.join(parts)}; outputs in {args.output}" + (f"; log {log.path}" if log.path else ""),
    )
    if interrupted:
        return EXIT_STOPPED
    return 0 if counts["failed"] == 0 else 1


def _refuse_existing(files: list[Path], plan: dict[Path, dict[str, Path]]) -> None:
    """Without --overwrite or --skip-existing, outputs that exist stop the run before it starts."""
    from napari_madgnet.errors import UserError

    there = [p for f in files for p in plan[f].values() if p.exists()]
    if there:
        raise UserError(
            f"{len(there)} output(s) exist already ({there[0]}{', ...' if len(there) > 1 else ''}); pass "
            "--skip-existing to continue an interrupted run (complete outputs are kept), or --overwrite "
            "to replace them."
        )
