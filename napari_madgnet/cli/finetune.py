"""``madgnet finetune --image I --labels L [--from MODEL] [--out M.pt | --name NAME]``: adapt MADGNet.

``madgnet finetune --resume RUN_DIR`` continues a run that was killed, failed or stopped, with the
settings, data files and state its run folder holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_madgnet.cli._common import EXIT_STOPPED, stop_on_signals, tqdm_callback, user_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from napari_madgnet.model import BACKBONES
    from napari_madgnet.training.config import INITS, LABEL_MODES, TrainConfig
    from napari_madgnet.training.disk import KEEP_RUN
    from napari_madgnet.training.presets import PRESETS

    preset = TrainConfig.finetune()
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune on an annotated image or stack",
        description="Fine-tune MADGNet on one image (2-D, stack, time series, RGB) and its labels. In a "
        "stack only planes that carry labels are used. The model is saved to the models folder "
        "(MADGNET_MODELS_DIR) under --name, or to --out and listed there by name, so the napari plugin "
        "and `madgnet predict -m NAME` find it. Ctrl-C stops after the current step and keeps the best "
        "model so far (exit status 130); --resume RUN_DIR continues a stopped, killed or failed run.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--image",
        type=Path,
        default=None,
        help="the image file: tif, png, jpg, npy, zarr... (required, except with --resume)",
    )
    g.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="its labels: same pixels, integer values (required, except with --resume)",
    )
    g.add_argument(
        "--label-mode",
        choices=LABEL_MODES,
        default=None,
        help=f"how labels are read: binary (> 0 is object), multiclass (1..K), nested, scribble "
        f"(1 object, 2 background) (default: {preset.label_mode})",
    )
    g.add_argument(
        "--axes",
        default=None,
        help="axes of the image, e.g. YX, YXC, CYX, ZYX (default: the file's, else from the shapes)",
    )
    g.add_argument(
        "--channel",
        type=int,
        default=None,
        help="channel to train on in multichannel images, 0-based (default: grey or RGB as it is)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--from",
        dest="from_model",
        default=None,
        help="registered model name or checkpoint to continue from (default: none, see --init)",
    )
    g.add_argument(
        "--init",
        choices=INITS,
        default=None,
        help="start without --from: ImageNet encoder (downloaded once) or random weights "
        f"(default: {preset.init}, or scratch when the ImageNet weights are neither on this computer nor "
        "downloadable)",
    )
    g.add_argument(
        "--backbone", choices=BACKBONES, default=None, help=f"encoder (default: {preset.backbone})"
    )
    g.add_argument("--out", type=Path, default=None, help="model file to write (default: the models folder)")
    g.add_argument(
        "--name", default=None, help="registry name (default: --out's file name, or finetuned-DATE-TIME)"
    )
    g.add_argument(
        "--no-register",
        action="store_true",
        help="do not list a model saved with --out in the models folder (default: list it)",
    )
    g.add_argument("--config", type=Path, default=None, help="YAML recipe (default: the fine-tuning preset)")
    g.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="settings to start from: finetune (the fine-tuning preset) or first-model (random weights, "
        "64 px patches, 400 steps: a first model on a laptop CPU in minutes) (default: finetune)",
    )
    g = p.add_argument_group("training")
    length = g.add_mutually_exclusive_group()
    length.add_argument(
        "--steps", type=int, default=None, help=f"optimiser steps (default: {preset.planned_steps()})"
    )
    length.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of --validate-every steps each, instead of --steps (default: none)",
    )
    g.add_argument(
        "--validate-every",
        type=int,
        default=None,
        help=f"steps between validations, where the best model is kept (default: {preset.steps_per_epoch})",
    )
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3, 5e-5 with --from)")
    g.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help=f"training patch side in px (default: {preset.patch_size})",
    )
    g.add_argument(
        "--batch-size", type=int, default=None, help=f"patches per step (default: {preset.batch_size})"
    )
    g.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    g.add_argument("--seed", type=int, default=None, help=f"random seed (default: {preset.seed})")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (the run folder a run names: <model>_run) from its last saved "
        "state, with its own settings; --image/--labels only if its files moved (same content), "
        "--device to change the device (default: a new run)",
    )
    g.add_argument(
        "--keep-run",
        choices=KEEP_RUN,
        default=None,
        help="what the run folder keeps after a successful run: none (the log only), resume (also the "
        "training state, about 4x the model's size, to continue the run), all (default: none)",
    )
    g.add_argument(
        "--estimate",
        action="store_true",
        help="only measure how long the run would take (a few training steps and one validation), "
        "print it and exit (default: off, train)",
    )
    p.set_defaults(func=run)


#: Options that belong to a new run; a resumed run takes them from its run folder.
_NEW_RUN_ONLY = (
    "label_mode", "axes", "channel", "from_model", "init", "backbone", "out", "name", "config", "steps",
    "epochs", "validate_every", "lr", "patch_size", "batch_size", "seed", "preset", "keep_run", "estimate",
)  # fmt: skip


@user_errors
def run(args: argparse.Namespace) -> int:
    from napari_madgnet.errors import UserError
    from napari_madgnet.jobs import CancelToken
    from napari_madgnet.training import TrainConfig, finetune
    from napari_madgnet.training.encoder_weights import choose_init
    from napari_madgnet.training.presets import preset_config

    if args.resume is not None:
        return _resume(args)
    if args.image is None or args.labels is None:
        raise UserError("Give the data: --image FILE --labels FILE (or --resume RUN_DIR to continue a run).")
    if args.config:
        cfg = TrainConfig.from_yaml(args.config)
    else:
        cfg = preset_config(
            args.preset or "finetune", **({"from_model": args.from_model} if args.from_model else {})
        )
    mapping = {
        "label_mode": args.label_mode,
        "backbone": args.backbone,
        "init": args.init,
        "lr": args.lr,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "seed": args.seed,
    }
    changes = {k: v for k, v in mapping.items() if v is not None}
    cfg = cfg.replace(**changes) if changes else cfg
    cfg = cfg.with_length(steps=args.steps, epochs=args.epochs, validate_every=args.validate_every)
    if not args.from_model:
        # An ImageNet start the user did not ask for falls back to random weights when the file is
        # neither cached nor downloadable; one asked for (flag or recipe) fails fast instead.
        asked = args.init or (cfg.init if args.config else None)
        init, note = choose_init(asked, cfg.backbone, preset=cfg.init)
        if note:
            print(f"note: {note}", file=sys.stderr)
        cfg = cfg.replace(init=init)
    cfg.validate()
    image, labels, axes = _read_pair(args)
    if args.estimate:
        return _print_estimate(cfg, image, labels, axes, args)
    callback, close = tqdm_callback("fine-tuning")
    callback = _with_split_note(_with_estimate(callback, cfg))
    token = CancelToken()
    try:
        with stop_on_signals(token, "fine-tuning"):
            result = finetune(
                image,
                labels,
                config=cfg,
                from_model=args.from_model,
                out=args.out,
                name=args.name,
                register=not args.no_register,
                axes=axes,
                channel=args.channel,
                cancel=token,
                image_name=args.image.name,
                sources={"image": args.image, "labels": args.labels},
                callback=callback,
                keep_run=args.keep_run or "none",
            )
    finally:
        close()
    return _report(result)


def _resume(args: argparse.Namespace) -> int:
    from napari_madgnet.errors import UserError
    from napari_madgnet.jobs import CancelToken
    from napari_madgnet.training import resume_finetune

    given = [f"--{k.replace('_', '-')}" for k in _NEW_RUN_ONLY if getattr(args, k, None) not in (None, False)]
    if args.no_register:
        given.append("--no-register")
    if given:
        raise UserError(
            f"--resume continues the run with the settings it started with; leave out {', '.join(given)} "
            "(only --image, --labels and --device may be given, for moved files or another device)."
        )
    callback, close = tqdm_callback("fine-tuning")
    callback = _with_split_note(callback)
    token = CancelToken()
    try:
        with stop_on_signals(token, "fine-tuning"):
            result = resume_finetune(
                args.resume, args.image, args.labels, device=args.device, cancel=token, callback=callback
            )
    finally:
        close()
    return _report(result)


def _report(result) -> int:
    """Print how the run ended; exit 130 when stopped, 1 when the model is not where asked."""
    from napari_madgnet.training.finetune import describe_result

    print(describe_result(result))
    if result.stopped == "cancelled" and result.out_dir is not None:
        print(f"Continue it with: madgnet finetune --resume {result.out_dir}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.save_error:
        return 1
    return EXIT_STOPPED if result.stopped == "cancelled" else 0


def _read_pair(args: argparse.Namespace) -> tuple[object, object, str | None]:
    """The image (lazy), its labels as label values and the image's axes, as ``madgnet predict``
    reads them: ``--axes``, else the file's own, else from the shapes of image and labels (said)."""
    from napari_madgnet.io import read_image_file, read_mask
    from napari_madgnet.layout import axes_for_labels, guess_note

    image = read_image_file(args.image, lazy=True)
    labels = read_mask(args.labels)
    if args.axes:
        return image.data, labels, args.axes
    if image.axes is not None and image.axes_source == "file":
        return image.data, labels, image.axes
    axes = axes_for_labels(image.shape, labels.shape)
    print(f"note: {guess_note(args.image.name, image.shape, axes)}", file=sys.stderr)
    return image.data, labels, axes


def _print_estimate(cfg, image, labels, axes, args: argparse.Namespace) -> int:
    """``--estimate``: calibrate on the real data (nothing written) and print the estimate."""
    from napari_madgnet.training.estimate import estimate_run
    from napari_madgnet.training.finetune import data_from_arrays

    data = data_from_arrays(image, labels, cfg, axes=axes, channel=args.channel, name=args.image.name)
    print(f"estimated time: {estimate_run(cfg, data).describe()}")
    return 0


def _with_split_note(callback):
    """The progress callback, plus a printed line saying which annotated planes of a sparse stack
    are held out for validation (``training.data.hold_out_planes``; 0-based plane numbers)."""
    from tqdm import tqdm

    def update(event):
        if "heldout_planes" in event.details:
            tqdm.write(f"validation: {event.message}", file=sys.stderr)
        callback(event)

    return update


def _with_estimate(callback, cfg):
    """The progress callback, plus one printed line with the measured time estimate: after the first
    validation pass, or after a few steps when nothing is validated."""
    from tqdm import tqdm

    from napari_madgnet.training.estimate import RunClock

    clock = RunClock(validate_every=cfg.steps_per_epoch)
    said = False

    def update(event):
        nonlocal said
        estimate = clock.update(event)
        details = event.details
        if estimate is not None and not said and "step" in details:
            ready = "val" in details or int(details["step"]) >= 5 or int(details["step"]) == estimate.steps
            if ready:
                said = True
                tqdm.write(f"estimated time: {estimate.describe()}", file=sys.stderr)
        callback(event)

    return update
