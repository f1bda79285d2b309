"""``madgnet finetune --image I --labels L [--from MODEL] --out M.pt``: adapt MADGNet to your data."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_madgnet.cli._common import user_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune on an annotated image or stack",
        description="Fine-tune MADGNet on one image (2-D, stack, RGB) and its labels (> 0 = object; "
        "in a stack only planes that carry labels are used). Without --out the model goes to the "
        "model folder (MADGNET_MODELS_DIR), where the plugin lists it.",
    )
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--labels", required=True, type=Path)
    p.add_argument("--from", dest="from_model", default=None, help="model file or name to start from")
    p.add_argument("--out", type=Path, default=None, help="model file to write (.pt)")
    p.add_argument("--config", type=Path, default=None, help="YAML recipe (default: the finetune preset)")
    p.add_argument("--label-mode", choices=["binary", "multiclass", "nested", "scribble"], default=None)
    p.add_argument("--backbone", default=None, help="resnest50, res2net50_v1b_26w_4s, resnet50")
    p.add_argument("--init", choices=["imagenet", "scratch"], default=None, help="start without --from")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--patch-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=run)


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.cli._common import tqdm_callback
    from napari_madgnet.io import read_image
    from napari_madgnet.training import TrainConfig, finetune

    preset = TrainConfig.finetune(from_model=args.from_model)
    cfg = TrainConfig.from_yaml(args.config) if args.config else preset
    mapping = {
        "label_mode": args.label_mode,
        "backbone": args.backbone,
        "init": args.init,
        "max_steps": args.steps,
        "epochs": args.epochs,
        "lr": args.lr,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "seed": args.seed,
    }
    changes = {k: v for k, v in mapping.items() if v is not None}
    cfg = cfg.replace(**changes) if changes else cfg
    cfg.validate()
    image = read_image(args.image)
    labels = read_image(args.labels)
    callback, close = tqdm_callback("fine-tuning")
    try:
        result = finetune(
            image,
            labels,
            config=cfg,
            from_model=args.from_model,
            out=args.out,
            callback=callback,
            name=args.image.name,
        )
    finally:
        close()
    best = result.best.get("dice")
    print(f"Saved {result.model_path}" + (f" (validation Dice {best:.4f})" if best is not None else ""))
    return 0
