"""The main job, end to end: fine-tune on the bundled nuclei sample and segment what it did not see.

    python -m napari_madgnet.demo --out DIR

Trains on the top half of the 512 x 512 nuclei image (its labels > 0 as the mask), segments the
bottom half with the new model, prints the Dice against the bottom half's labels beside the Otsu
floor (about 0.88) and the nuclei found as objects (object F1 and panoptic quality at IoU 0.5,
watershed on the distance head vs connected components; see docs/heads.md), and writes the
model, the mask and an overlay PNG to DIR. No ImageNet weights are needed: the network trains
from scratch, with the same ``finetune`` function and config the ``madgnet finetune --preset
first-model`` command uses (``training.presets.first_model_config``). A second run reuses the
model the first one made (when it was trained with the same settings) and prints the Dice again;
``--retrain`` trains a new one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_madgnet.training.config import TrainConfig


def demo_config(**overrides: object) -> TrainConfig:
    """The first-model preset (``training.presets.first_model_config``: measured to learn the
    nuclei sample on 2 CPU cores in minutes); ``max_steps``/``steps_per_epoch`` set its length."""
    from napari_madgnet.training.presets import (
        FIRST_MODEL_STEPS,
        FIRST_MODEL_VALIDATE_EVERY,
        first_model_config,
    )

    steps = int(overrides.pop("max_steps", None) or FIRST_MODEL_STEPS)  # type: ignore[call-overload]
    every = int(overrides.pop("steps_per_epoch", None) or FIRST_MODEL_VALIDATE_EVERY)  # type: ignore[call-overload]
    return first_model_config(steps=steps, validate_every=every, **overrides)


#: Settings that do not change what a run learns (where it runs), ignored when deciding to reuse.
_NOT_THE_RECIPE = ("device", "num_workers", "out_dir")


def reusable_model(model_path: Path, cfg: TrainConfig) -> bool:
    """True when ``model_path`` is a model the demo trained earlier with the same recipe."""
    from napari_madgnet.model import read_checkpoint_info

    if not model_path.is_file():
        return False
    try:
        recipe = dict(read_checkpoint_info(model_path).get("provenance", {}).get("recipe") or {})
    except Exception:  # an unreadable file is not reused; training writes a new one
        return False
    wanted = cfg.to_dict()
    for key in _NOT_THE_RECIPE:
        recipe.pop(key, None)
        wanted.pop(key, None)
    return recipe == wanted


def otsu_dice(train_image: np.ndarray, test_image: np.ndarray, test_labels: np.ndarray) -> float:
    """The floor to beat: an Otsu threshold fitted on the training half, scored on the test half."""
    from skimage.filters import threshold_otsu

    from napari_madgnet.metrics import dice

    return dice(test_image > threshold_otsu(train_image), test_labels > 0)


def write_overlay(path: Path, image: np.ndarray, mask: np.ndarray, truth: np.ndarray) -> None:
    """Image in grey, prediction outline green, missed truth red; matplotlib Agg, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_madgnet.io import atomic_path

    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    ax.imshow(image, cmap="gray")
    ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.6)
    ax.contour((truth > 0) & ~mask, levels=[0.5], colors="red", linewidths=0.6)
    ax.set_axis_off()
    ax.set_title("prediction (green), missed annotation (red)")
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def run(
    out: Path, config: TrainConfig | None = None, *, quiet: bool = False, retrain: bool = False
) -> dict[str, float]:
    """Fine-tune (or reuse the model of an earlier run with the same settings, unless
    ``retrain``), segment, score and write; returns the numbers it printed."""
    import shutil

    import torch

    from napari_madgnet.model import load_model
    from napari_madgnet.sample_data import load_nuclei
    from napari_madgnet.training import finetune

    cfg = config or demo_config()
    image, labels = load_nuclei()
    half = image.shape[0] // 2
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "nuclei_model.pt"
    t0 = time.perf_counter()
    c0 = time.process_time()
    if not retrain and reusable_model(model_path, cfg):
        print(f"Reusing the model trained by an earlier run: {model_path} (--retrain to train a new one).")
        model = load_model(model_path)
        val_dice = float(model.checkpoint_info.get("provenance", {}).get("validation", {}).get("dice", "nan"))
        return _score(out, model, cfg, image, labels, half, model_path, t0, c0, val_dice, trained=False)
    if model_path.exists():
        model_path.unlink()  # the demo's own output from an earlier run
    shutil.rmtree(out / "run", ignore_errors=True)  # and its run folder
    from napari_madgnet.cli._common import tqdm_callback

    progress, close_bar = tqdm_callback("fine-tuning", disable=quiet)  # counts steps, as `madgnet finetune`
    with torch.inference_mode(False):
        result = finetune(
            image[:half],
            labels[:half],
            config=cfg,
            out=model_path,
            work_dir=out / "run",
            callback=progress,
            register=False,  # the demo's model stays in its output folder
            image_name="nuclei top half",
        )
    close_bar()
    val_dice = float(result.best.get("dice", float("nan")))
    return _score(out, result.model, cfg, image, labels, half, model_path, t0, c0, val_dice, trained=True)


def _score(out, model, cfg, image, labels, half, model_path, t0, c0, val_dice, *, trained: bool):
    """Segment the bottom half with ``model``, score it, write mask and overlay, print the numbers."""
    from napari_madgnet.inference import InferenceConfig, PostprocessConfig, segment
    from napari_madgnet.io import write_image
    from napari_madgnet.metrics import dice
    from napari_madgnet.qc import object_scores

    train_s = time.perf_counter() - t0 if trained else 0.0
    objects = InferenceConfig(device=cfg.device, postprocess=PostprocessConfig(instances="watershed"))
    segmented = segment(image[half:], model, objects)
    prob = segmented.probabilities[0]
    mask = prob >= 0.5
    score = dice(mask, labels[half:])
    watershed = object_scores(segmented.mask, labels[half:])
    components = object_scores(
        segmented.repostprocess(PostprocessConfig(instances="components")).mask, labels[half:]
    )
    floor = otsu_dice(image[:half], image[half:], labels[half:])
    write_image(out / "bottom_half_mask.tif", mask.astype(np.uint8), overwrite=True)
    write_overlay(out / "bottom_half_overlay.png", image[half:], mask, labels[half:])
    total_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    steps = int(model.checkpoint_info.get("provenance", {}).get("steps") or 0)
    numbers = {
        "dice": score,
        "otsu_dice": floor,
        "val_dice": val_dice,
        "object_f1_watershed": watershed["f1"],
        "pq_watershed": watershed["pq"],
        "object_f1_components": components["f1"],
        "pq_components": components["pq"],
        "steps": float(steps),
        "train_seconds": train_s,
        "total_seconds": total_s,
        "cpu_seconds": cpu_s,
        "reused": float(not trained),
    }
    how = f"{train_s / 60:.1f} min training" if trained else "model reused, no training"
    print(
        f"Dice on the unseen bottom half: {score:.3f} (Otsu floor {floor:.3f}); "
        f"{steps} steps, {how}, {total_s / 60:.1f} min in all ({cpu_s / 60:.1f} CPU-min).\n"
        f"Nuclei as objects (IoU >= 0.5, Hungarian matching): watershed on the distance head "
        f"F1 {watershed['f1']:.3f}, PQ {watershed['pq']:.3f}; connected components "
        f"F1 {components['f1']:.3f}, PQ {components['pq']:.3f}.\n"
        f"Wrote {model_path}, {out / 'bottom_half_mask.tif'}, {out / 'bottom_half_overlay.png'}."
    )
    return numbers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_madgnet.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="folder for model, mask and overlay"
    )
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the demo's)")
    parser.add_argument("--patch-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train a new model even when an earlier run left one trained with the same settings",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides: dict[str, object] = {"device": args.device}
    for key, value in (
        ("max_steps", args.steps),
        ("patch_size", args.patch_size),
        ("batch_size", args.batch_size),
        ("lr", args.lr),
    ):
        if value is not None:
            overrides[key] = value
    run(args.out, demo_config(**overrides), retrain=args.retrain)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
