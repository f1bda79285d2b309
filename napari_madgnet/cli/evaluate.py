"""``madgnet evaluate --model M --data DIR``: metrics per image (CSV), a summary (JSON), figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_madgnet.cli._common import user_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on image/mask pairs",
        description="Evaluate a model on DIR/images + DIR/masks (matched by name): the release's six "
        "metrics (paper_*) and the standard ones per image, their means, a Dice histogram, overlays "
        "of the worst and best cases and, with --train-log, the loss curves. The surface metrics "
        "HD95, ASSD (in the unit of --spacing, or pixels: columns hd95_px, assd_px) and NSD are "
        "reported per image; their means skip the images where they are undefined (an empty "
        "prediction or mask) and count them. Objects matched by IoU go to per_object.csv.",
    )
    p.add_argument("--model", required=True, help="registered model name or checkpoint file (required)")
    p.add_argument("--data", required=True, type=Path, help="folder with images/ and masks/ (required)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("evaluation"),
        help="folder for CSV, JSON and PNGs (default: ./evaluation)",
    )
    p.add_argument(
        "--train-log",
        type=Path,
        default=None,
        help="train_log.jsonl of the run, for loss curves (default: none)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    p.set_defaults(func=run)
    # Surface metrics (HD95, ASSD, NSD) and their units.
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="pixel size (Y X, or one value) of the images for HD95/ASSD/NSD (default: pixels)",
    )
    p.add_argument("--unit", default=None, help="unit of --spacing (default: mm)")
    p.add_argument(
        "--nsd-tolerance",
        type=float,
        default=None,
        metavar="MM",
        help="NSD tolerance in the unit of --spacing, or pixels (default: one pixel)",
    )


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.cli._common import tqdm_callback
    from napari_madgnet.inference.evaluate import evaluate_folder, find_pairs, read_train_log
    from napari_madgnet.registry import load_registered_model
    from napari_madgnet.training.engine import check_writable

    find_pairs(args.data)  # bad folders and logs fail before the model is loaded
    if args.train_log is not None:
        read_train_log(args.train_log)
    made = not Path(args.out).exists()
    check_writable(args.out)
    print(f"Writing the evaluation to {args.out}/", file=sys.stderr)
    callback, close = tqdm_callback("evaluating", unit="image")
    try:
        model = load_registered_model(args.model)
        summary = evaluate_folder(
            model,
            args.data,
            args.out,
            device=args.device,
            train_log=args.train_log,
            callback=callback,
            spacing=args.spacing,
            unit=args.unit,
            nsd_tolerance=args.nsd_tolerance,
        )
    except BaseException:
        if made and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()  # a refused or failed run leaves no empty folder of its own behind
        raise
    finally:
        close()
    print(json.dumps(summary, indent=2))
    return 0
