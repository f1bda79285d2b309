"""``madgnet train --config recipe.yaml``: a full training run from a YAML recipe (src_train)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_madgnet.cli._common import EXIT_STOPPED, stop_on_signals, tqdm_callback, user_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train from a YAML recipe (see src_train/configs/)",
        description="Train MADGNet from a recipe: TrainConfig settings and the data folders or dataset. "
        "Under torchrun every process runs this command; rank 0 writes checkpoints and logs. Ctrl-C "
        "(or SIGTERM) stops after the current step, keeps the best model so far and the resumable "
        "state (exit status 130); --resume continues.",
    )
    p.add_argument("--config", required=True, type=Path, help="recipe YAML (TrainConfig fields) (required)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: the recipe's out_dir)")
    p.add_argument(
        "--resume", action="store_true", help="continue from OUT/last_state.pt (default: a new run)"
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps (default: the recipe's)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps, for smoke tests (default: the recipe's)",
    )
    p.add_argument("--model-out", type=Path, default=None, help="final model file (default: OUT/model.pt)")
    p.set_defaults(func=run)


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.jobs import CancelToken
    from napari_madgnet.training import TrainConfig, data_from_config, train
    from napari_madgnet.training.distributed import cleanup, current
    from napari_madgnet.training.finetune import describe_result

    cfg = TrainConfig.from_yaml(args.config)
    if args.device is not None:
        cfg = cfg.replace(device=args.device)
    if args.max_steps is not None:
        cfg = cfg.with_length(steps=args.max_steps)
    out = args.out or (Path(cfg.out_dir) if cfg.out_dir else None)
    if out is None:
        print("No run folder: pass --out DIR or set out_dir in the recipe.", file=sys.stderr)
        return 2
    data = data_from_config(cfg)
    if data.note:
        print(f"note: {data.note}", file=sys.stderr)
    callback, close = tqdm_callback("training")
    token = CancelToken()
    try:
        with stop_on_signals(token, "training"):
            result = train(
                cfg,
                data,
                out_dir=out,
                resume=args.resume,
                callback=callback,
                cancel=token,
                model_path=args.model_out or out / "model.pt",
            )
    finally:
        close()
        cleanup()
    if current().is_main:
        print(describe_result(result))
    return EXIT_STOPPED if result.stopped == "cancelled" else 0
