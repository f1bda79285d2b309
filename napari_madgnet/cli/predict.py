"""``madgnet predict``: segment image files and folders with a registered or given model.

Masks go to ``OUT/<stem>_mask.tif`` (or .png/.zarr); ``--save-probabilities`` adds
``OUT/<stem>_probabilities.tif``. Medical volumes (DICOM, NIfTI, NRRD, MetaImage; the
``medical`` extra) are segmented plane by plane along their slice axis and their masks written in
the same family with the same geometry (NIfTI for NIfTI and DICOM, NRRD, MHA); videos (the
``video`` extra) give ``<stem>_mask.tif`` (a page per frame) and ``<stem>_overlay.mp4``.
Inputs are never overwritten and existing outputs are refused unless ``--overwrite``. One failing
file does not stop the others; the exit code is 0 only when all succeeded. Under ``torchrun`` each
process takes its share of the files (RANK/WORLD_SIZE) and its own GPU (LOCAL_RANK).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
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
        "--config", type=Path, help="YAML file of InferenceConfig settings; flags override it (default: none)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders (default: off)")
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
        "--instances", action="store_true", default=None, help="number objects 1..N (default: one label, 1)"
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """InferenceConfig from ``--config`` YAML, then the flags given on the command line."""
    from napari_madgnet.inference import InferenceConfig

    data: dict[str, Any] = {}
    if args.config:
        import yaml

        try:
            data = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{args.config}: cannot read the config ({exc}).") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{args.config}: expected a mapping of InferenceConfig settings.")
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
    }
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
    files: list[Path], out: Path, fmt: str | None, probabilities: bool
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
        elif probabilities and ext != "zarr":  # a zarr mask store holds the probabilities already
            prob_ext = ext if f".{ext}" in WRITE_SUFFIXES else "tif"
            paths["probabilities"] = out / f"{stem}_probabilities.{prob_ext}"
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
            if progress.details.get("warning"):
                bar.write(f"warning: {progress.message}")

    if image.format == "video":  # frames streamed in, masks and overlay streamed out
        from napari_madgnet.inference.video import segment_video

        done = segment_video(
            image.data, model, config, mask_path=paths["mask"], overlay_path=paths["overlay"],
            overwrite=overwrite, progress=show,
        )  # fmt: skip
        provenance = {**done["provenance"], "input_axes": axes_info}
        return {"outputs": done["outputs"], "provenance": provenance, **axes_info}
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
        if engine_axes != stored_axes:  # labels back in the stored order, on the image's grid
            back = [result.axes.index(a) for a in stored_axes.replace("C", "")]
            mask, probs = mask.transpose(back), probs.transpose([0, *(1 + b for b in back)])
        # the image's geometry; a plain image (no axes in the file) is placed at unit spacing
        ref = image if image.axes is not None else dataclasses.replace(image, data=mask, axes=result.axes)
        try:
            write_output(paths["mask"], mask, ref, overwrite=overwrite)
            written.append(paths["mask"])
            if "probabilities" in paths:
                probs = probs[0] if probs.shape[0] == 1 else probs
                write_output(paths["probabilities"], probs, ref, kind="image", overwrite=overwrite)
                written.append(paths["probabilities"])
        except BaseException:
            for p in written:  # no half set of outputs
                p.unlink(missing_ok=True)
            raise
    provenance = {**result.provenance, "input_axes": axes_info}
    return {"outputs": [str(p) for p in written], "provenance": provenance, **axes_info}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_madgnet.io import ImageReadError, find_images

    try:
        config = build_config(args)
        rank, world, local_rank = distributed_rank()
        files = find_images(args.inputs, recursive=args.recursive)
        plan = plan_outputs(files, args.output, args.format, args.save_probabilities)
    except (ValueError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mine = shard_files(files, rank, world)
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

        model = fast_model(load_registered_model(args.model))  # made once for all the files
    except Exception as exc:
        print(f"error: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    records: list[dict[str, Any]] = []
    failures = 0
    bar = tqdm(mine, desc=f"{tag}predict", unit="image", disable=args.quiet, file=sys.stderr)
    from napari_madgnet.imagefile import AxesNotes

    notes = AxesNotes()  # one note per guessed layout, not one per file
    for f in bar:
        start = time.perf_counter()
        record: dict[str, Any] = {"input": str(f)}
        try:
            record.update(
                _predict_one(
                    f,
                    plan[f],
                    model,
                    config,
                    args.overwrite,
                    None if args.quiet else bar,
                    series=args.series,
                    notes=notes,
                )
            )
            record["status"] = "ok"
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failures += 1
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            message = f"{tag}FAILED {f}: {exc}"
            (bar.write(message, file=sys.stderr) if not args.quiet else print(message, file=sys.stderr))
        record["seconds"] = round(time.perf_counter() - start, 3)
        records.append(record)
    bar.close()
    ok = len(mine) - failures
    log = _write_log(args.output, records, config, args.model, rank, world)
    print(
        f"{tag}{ok}/{len(mine)} image(s) segmented, {failures} failed; outputs in {args.output}"
        + (f"; log {log}" if log else ""),
    )
    return 0 if failures == 0 else 1


def _write_log(out: Path, records, config, model, rank: int, world: int) -> Path | None:
    """A JSON record of the run (settings, model, per-file status and provenance)."""
    if not records:
        return None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"madgnet-predict-{stamp}{f'-rank{rank}' if world > 1 else ''}.json"
    data = {
        "model": str(model),
        "config": config.to_dict(),
        "rank": rank,
        "world_size": world,
        "files": records,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str))
    except OSError as exc:
        print(f"warning: could not write the run log {path}: {exc}", file=sys.stderr)
        return None
    return path
