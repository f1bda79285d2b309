"""``madgnet compare A B``: compare mask A with reference B (or two models' masks) headless.

Prints a summary (Dice, IoU, HD95, ASSD, NSD, objects, worst slice); with ``-o OUT_DIR`` also
writes ``summary.csv``, ``per_slice.csv``, ``per_object.csv`` and ``error_map.tif`` (0 = agree,
1 = false positive, 2 = false negative). The same comparison as ``napari_madgnet.qc``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_madgnet.cli._common import user_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare a mask with a reference mask (QC)",
        description="Compare mask A (e.g. a prediction) with reference B (an annotation, or another "
        "model's mask) of the same image: Dice, IoU, precision, recall, HD95, ASSD and NSD overall, "
        "per slice of a stack and per object (reference objects matched to A's by IoU), and the "
        "worst slice. Label values > 0 are foreground; objects are connected components of binary "
        "masks and label values of instance masks. Distances are in the unit of --spacing (pixels "
        "without it). Masks saved as RGB images use their first channel.",
    )
    p.add_argument("a", metavar="A", type=Path, help="mask to check (e.g. a prediction)")
    p.add_argument("b", metavar="B", type=Path, help="reference mask (e.g. the annotation)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="OUT_DIR",
        help="folder for the CSVs and error_map.tif (default: print only)",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="pixel size per axis, e.g. --spacing 2.5 0.7 0.7 for Z Y X, one value if isotropic "
        "(default: 1, distances in pixels)",
    )
    p.add_argument(
        "--unit", default=None, help="unit of --spacing for the report (default: mm with --spacing, else px)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="MM",
        help="NSD tolerance in the spacing's unit (default: the largest spacing, i.e. one voxel)",
    )
    p.add_argument(
        "--axes",
        default=None,
        help="axes of the masks, e.g. ZYX, TYX, TZYX (default: YX, ZYX, TZYX by dimension)",
    )
    p.add_argument(
        "--match-iou", type=float, default=0.5, help="minimum IoU of matched objects (default: 0.5)"
    )
    p.add_argument(
        "--objects",
        choices=("auto", "labels", "components"),
        default="auto",
        help="objects are connected components or label values (default: auto, components of binary "
        "masks and label values of instance masks)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing files in --out (default: refuse)"
    )
    p.set_defaults(func=run)


def _read_mask(path: Path) -> np.ndarray:
    from napari_madgnet.errors import UserError
    from napari_madgnet.io import read_mask

    arr = read_mask(path)  # palette indices; grey saved as RGB accepted, colour-coded refused
    if arr.dtype.kind == "f":
        # Masks saved as float (0.0/1.0, or label values) are labels; probabilities are not.
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min(initial=0) >= 0):
            raise UserError(f"{path}: holds fractional values, not labels; threshold it into a mask first.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "biu":
        raise UserError(f"{path}: holds {arr.dtype} values, not labels; pass a mask or label image.")
    return arr


def _write_error_map(path: Path, error_map: np.ndarray, *, overwrite: bool) -> Path:
    """A grey-level TIFF: a stack of 3 or 4 planes must not be stored as RGB (tifffile's guess)."""
    import tifffile

    from napari_madgnet.io import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, error_map, photometric="minisblack", compression="zlib")
    return path


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.errors import UserError
    from napari_madgnet.qc import compare_masks

    a, b = _read_mask(args.a), _read_mask(args.b)
    if a.shape != b.shape:
        raise UserError(
            f"{args.a} has shape {a.shape} but {args.b} has shape {b.shape}; "
            "compare two masks of the same image."
        )
    error_map_path = None
    if args.out is not None:
        error_map_path = args.out / "error_map.tif"
        if error_map_path.exists() and not args.overwrite:
            raise FileExistsError(f"{error_map_path} exists; pass --overwrite to replace it.")
    unit = args.unit or ("mm" if args.spacing else None)
    report = compare_masks(
        a,
        b,
        spacing=args.spacing,
        axes=args.axes,
        unit=unit,
        tolerance=args.tolerance,
        objects=args.objects,
        match_iou=args.match_iou,
        names=(str(args.a), str(args.b)),
    )
    print(report.summary())
    if args.out is not None:
        written = report.to_csv(args.out, overwrite=args.overwrite)
        written.append(_write_error_map(error_map_path, report.error_map, overwrite=args.overwrite))
        print("wrote " + ", ".join(str(w) for w in written))
    return 0
