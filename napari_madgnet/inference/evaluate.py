"""Evaluating a model on a folder of image/mask pairs: per-image CSV, JSON summary, figures.

Inference plus metrics: each image is predicted by the inference engine exactly as
``madgnet predict`` would, and scored with ``napari_madgnet.metrics``. Every input is checked
before the first prediction (``check_inputs``: each pair's shapes and dtypes, the training log),
so a bad file fails in seconds with its name, not after the evaluation with outputs half written.
Ground truth is binarised by the shared rule (``metrics.binary_truth``) for every metric.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.io import atomic_path, read_image, read_mask
from napari_madgnet.jobs import CancelToken, Progress, check_cancelled
from napari_madgnet.labelutils import unit_tag
from napari_madgnet.metrics import (
    binary_truth,
    mean_metrics,
    paper_metrics,
    standard_metrics,
    truth_kind,
    truth_note,
)
from napari_madgnet.surface_metrics import SpacingLike, as_spacing
from napari_madgnet.tables import write_csv


def predict(model: Any, image: np.ndarray, device: str = "auto") -> np.ndarray:
    """Probabilities (H, W) of class 1 for one 2-D image, by the inference engine's rules
    (the checkpoint's normalisation and geometry), exactly as ``madgnet predict`` would."""
    from napari_madgnet.inference import InferenceConfig, segment

    return np.asarray(segment(image, model, InferenceConfig(device=device)).probabilities[0])


def find_pairs(data: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """``DIR/images`` + ``DIR/masks`` (or ``DIR/image`` + ``DIR/mask``) matched by file name."""
    from napari_madgnet.training.data import pair_files

    root = Path(data)
    for img_name, mask_name in (("images", "masks"), ("image", "mask"), ("imgs", "labels")):
        if (root / img_name).is_dir() and (root / mask_name).is_dir():
            return pair_files(root / img_name, root / mask_name)
    raise FileNotFoundError(
        f"{root}: expected sub-folders images/ and masks/ with files matched by name "
        "(e.g. images/a.png and masks/a.png)."
    )


class EvaluationInputError(UserError):
    """An image, mask or training log that ``evaluate`` cannot use; the message names the file."""


def check_pair(img_path: Path, mask_path: Path, image: np.ndarray, gt: np.ndarray) -> str:
    """Refuse a pair that cannot be scored (naming both files); return a warning or "".

    The image must be 2-D or RGB(A) of a real dtype (``preprocess.check_image_dtype``), the mask
    2-D, numeric, finite and >= 0, and both must cover the same pixels.
    """
    from napari_madgnet.preprocess import check_image_dtype

    try:
        check_image_dtype(image.dtype)
    except UserError as exc:
        raise EvaluationInputError(f"{img_path}: {exc}") from None
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))):
        raise EvaluationInputError(
            f"{img_path}: shape {image.shape}; evaluate scores 2-D grey or RGB(A) images one by one "
            "(split stacks into planes first)."
        )
    if gt.ndim != 2:
        raise EvaluationInputError(f"{mask_path}: a mask is one 2-D image, got shape {gt.shape}.")
    if gt.dtype.kind not in "biuf":
        raise EvaluationInputError(f"{mask_path}: a mask holds numbers, not {gt.dtype}.")
    if gt.dtype.kind == "f" and not np.isfinite(gt).all():
        raise EvaluationInputError(f"{mask_path}: the mask holds NaN or infinite values.")
    if gt.dtype.kind in "if" and gt.size and gt.min() < 0:
        raise EvaluationInputError(f"{mask_path}: the mask holds negative values (0 is background).")
    if gt.shape != image.shape[:2]:
        raise EvaluationInputError(
            f"{mask_path} ({gt.shape[0]} x {gt.shape[1]}) does not cover {img_path} "
            f"({image.shape[0]} x {image.shape[1]}) pixel for pixel: pair each image with its own mask, "
            "at the image's size."
        )
    return truth_note(gt, str(mask_path))


def read_train_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``train_log.jsonl`` (one JSON object per line with ``step`` and ``loss``).

    Raises ``EvaluationInputError`` naming the file and line of the first bad record.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise EvaluationInputError(f"{p}: not a training log (train_log.jsonl is text).") from None
    except FileNotFoundError:
        raise EvaluationInputError(f"{p}: no such training log.") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        ok = isinstance(record, dict) and {"step", "loss"} <= set(record)
        if ok and "val" in record:
            ok = isinstance(record["val"], dict) and "dice" in record["val"]
        if not ok:
            raise EvaluationInputError(
                f"{p}, line {number}: not a training log record (one JSON object per line with 'step' "
                "and 'loss', as train_log.jsonl in a run folder)."
            )
        records.append(record)
    if not records:
        raise EvaluationInputError(f"{p}: the training log holds no records.")
    return records


def check_inputs(
    data: str | os.PathLike[str], train_log: str | os.PathLike[str] | None = None
) -> tuple[list[tuple[Path, Path]], list[dict[str, Any]] | None, list[str]]:
    """Everything ``evaluate_folder`` reads, checked before any prediction: the pairs (each image
    and mask read once: ``check_pair``), and the training log. Returns (pairs, log records or
    None, warnings)."""
    pairs = find_pairs(data)
    records = read_train_log(train_log) if train_log is not None else None
    notes = []
    for img_path, mask_path in pairs:
        note = check_pair(img_path, mask_path, np.asarray(read_image(img_path)), read_mask(mask_path))
        if note:
            notes.append(note)
    return pairs, records, notes


def _reference(gt: np.ndarray) -> np.ndarray:
    """The mask objects are matched against: label ids keep their objects (renumbered 1..N, so
    ids up to 2^63 cost nothing), anything else is the binary truth."""
    if truth_kind(gt) != "ids":
        return binary_truth(gt)
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(gt.astype(np.int64, copy=False))[0]


def evaluate_folder(
    model: Any,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    train_log: str | os.PathLike[str] | None = None,
    cancel: CancelToken | None = None,
    callback: Callable[[Progress], None] | None = None,
    spacing: SpacingLike = None,
    unit: str | None = None,
    nsd_tolerance: float | None = None,
) -> dict[str, Any]:
    """Score every pair, write ``per_image.csv``, ``summary.json`` and PNG figures into ``out``.

    Beside the release's and the standard metrics, each image gets the surface metrics
    ``hd95_<u>``, ``assd_<u>`` and ``nsd`` of the mask ``probability >= 0.5`` against
    ``mask > 0`` (``napari_madgnet.surface_metrics``), and its objects are matched to the mask's
    (``napari_madgnet.qc.compare_masks``: IoU >= 0.5, Hungarian) into ``per_object.csv``
    (column ``image`` first). ``spacing``: the pixel size (Y, X) of every image, with ``unit``
    naming it (default ``"mm"``); without it distances are in pixels (``<u>`` = ``px``).
    ``nsd_tolerance``: NSD's tolerance in that unit (default one pixel, i.e. the larger spacing).
    The summary averages each surface metric over the images where it is finite and counts the
    others (an empty prediction or mask; see ``surface_metrics``), and totals the objects
    (matched, missed, false positive).
    """
    from napari_madgnet.inference import fast_model
    from napari_madgnet.qc import compare_masks

    sp = None if spacing is None else as_spacing(spacing, 2)
    tag = "px" if sp is None else unit_tag(unit or "mm", sp)
    tolerance = (1.0 if sp is None else float(sp.max())) if nsd_tolerance is None else float(nsd_tolerance)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise UserError(f"the NSD tolerance must be a number >= 0 (in {tag}), got {nsd_tolerance!r}.")
    pairs, records, notes = check_inputs(data, train_log)
    for note in notes:
        if callback:
            callback(Progress(0.0, note, {"warning": True}))
    model = fast_model(model)  # the inference copy once, not once per image
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    object_rows: list[dict[str, Any]] = []
    cases: list[tuple[float, str, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, (img_path, mask_path) in enumerate(pairs):
        check_cancelled(cancel)
        image = np.asarray(read_image(img_path))
        gt = read_mask(mask_path)
        check_pair(img_path, mask_path, image, gt)  # the files may have changed since the check
        prob = predict(model, image, device)
        paper = paper_metrics(prob, gt)
        std = standard_metrics(prob, gt)
        qc = compare_masks(
            prob >= 0.5,
            _reference(gt),
            spacing=sp,
            unit=None if sp is None else tag,
            tolerance=tolerance,
            per_slice=False,
        )
        rows.append(
            {
                "image": img_path.name,
                **{f"paper_{k}": v for k, v in paper.items()},
                **std,
                **{k: qc.overall[k] for k in (f"hd95_{tag}", f"assd_{tag}", "nsd")},
            }
        )
        object_rows.extend({"image": img_path.name, **o} for o in qc.per_object)
        cases.append((std["dice"], img_path.name, image, gt, prob))
        if callback:
            done = {"step": i + 1, "total_steps": len(pairs)}
            callback(Progress((i + 1) / len(pairs), f"{img_path.name}: Dice {std['dice']:.3f}", done))
    with atomic_path(out_dir / "per_image.csv", overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if object_rows:
        write_csv(object_rows, out_dir / "per_object.csv", overwrite=True)
    status = [o["status"] for o in object_rows]
    surface_keys = (f"hd95_{tag}", f"assd_{tag}", "nsd")
    means = _means([{k: v for k, v in r.items() if k not in surface_keys} for r in rows])
    summary = {
        "data": str(data),
        "images": len(rows),
        "paper_metrics": {k[6:]: v for k, v in means.items() if k.startswith("paper_")},
        "standard_metrics": {k: v for k, v in means.items() if not k.startswith("paper_")},
        "surface_metrics": _surface_summary(rows, surface_keys, tag, tolerance, sp),
        "objects": {
            "match_iou": 0.5,
            "reference": sum(s != "false positive" for s in status),
            "predicted": sum(s != "missed" for s in status),
            "matched": status.count("matched"),
            "missed": status.count("missed"),
            "false_positive": status.count("false positive"),
        },
        "model": (getattr(model, "checkpoint_info", None) or {}).get("source"),
        "warnings": notes,
    }
    with atomic_path(out_dir / "summary.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    write_figures(out_dir, cases, records)
    return summary


def _surface_summary(
    rows: list[dict[str, Any]], keys: tuple[str, ...], unit: str, tolerance: float, spacing: Any
) -> dict[str, Any]:
    """Mean of each surface metric over the images where it is finite, and how many it is not.

    A plain mean would be nan or inf as soon as one image has an empty prediction or mask; a mean
    that silently skipped them would hide missed structures, hence the count beside it.
    """
    out: dict[str, Any] = {
        "unit": unit,
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "nsd_tolerance": tolerance,
    }
    for key in keys:
        values = np.asarray([r[key] for r in rows], dtype=np.float64)
        finite = np.isfinite(values)
        out[key] = float(values[finite].mean()) if finite.any() else None
        out[f"{key}_undefined_images"] = int((~finite).sum())
    return out


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric column (rows also carry the image name)."""
    return mean_metrics([{k: v for k, v in r.items() if k != "image"} for r in rows])


def write_figures(
    out: Path, cases: list, train_log: str | os.PathLike[str] | list[dict[str, Any]] | None
) -> list[Path]:
    """Dice histogram, worst and best overlays, and loss curves when a training log (a path, or
    its records from ``read_train_log``) is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        with atomic_path(out / name, overwrite=True) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight", dpi=100)
        plt.close(fig)
        written.append(out / name)

    dices = [c[0] for c in cases]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(dices, bins=20, range=(0, 1), color="steelblue")
    ax.set_xlabel("Dice")
    ax.set_ylabel("images")
    ax.set_title(f"Dice over {len(dices)} images (mean {np.mean(dices):.3f})")
    save(fig, "dice_histogram.png")

    order = sorted(range(len(cases)), key=lambda i: cases[i][0])
    for tag, picked in (("worst", order[:4]), ("best", order[::-1][:4])):
        fig, axes = plt.subplots(1, len(picked), figsize=(3.2 * len(picked), 3.4), squeeze=False)
        for ax, i in zip(axes[0], picked, strict=True):
            score, name, image, gt, prob = cases[i]
            ax.imshow(image if image.ndim == 2 else image[..., :3], cmap="gray")
            ax.contour(binary_truth(gt), levels=[0.5], colors="red", linewidths=0.7)
            ax.contour(prob >= 0.5, levels=[0.5], colors="lime", linewidths=0.7)
            ax.set_title(f"{name}\nDice {score:.3f}", fontsize=8)
            ax.set_axis_off()
        fig.suptitle(f"{tag} cases: annotation red, prediction green", fontsize=9)
        save(fig, f"overlay_{tag}.png")

    if train_log is not None:
        records = train_log if isinstance(train_log, list) else read_train_log(train_log)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in records], [r["loss"] for r in records], label="training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        val = [(r["step"], r["val"]["dice"]) for r in records if "val" in r]
        if val:
            ax2 = ax.twinx()
            ax2.plot(*zip(*val, strict=True), "o-", color="darkorange", label="validation Dice")
            ax2.set_ylabel("validation Dice")
        ax.set_title("training")
        save(fig, "loss_curves.png")
    return written
