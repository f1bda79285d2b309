"""A few annotated planes must teach the whole stack: Dice on the planes nobody annotated.

A stack is built from real data: the bundled nuclei image (512 x 512, DSB2018, CC0) cut into
``--side`` px tiles, the first ``--planes`` of them (raster order) stacked along Z, with their
instance labels. ``--drift`` multiplies and offsets each plane (gain 0.5 .. 1.5 and offset 0 .. 40
grey levels, rising along Z), as bleaching or a changing exposure would. ``k`` evenly spaced planes
keep their labels (the others are all 0: not annotated) and ``madgnet finetune``'s code
(``training.finetune``) trains on them from scratch; the trained model segments the whole stack
(``inference.segment``) and is scored on the unannotated planes (Dice pooled over their pixels, and
the mean of the per-plane Dice) against two Otsu floors:

- ``otsu_plane``: each unannotated plane thresholded at its own Otsu value (objects bright or dark
  as on the annotated planes), the floor ``training.baseline`` reports at the end of a run;
- ``otsu_fixed``: one Otsu value fitted on the annotated planes' grey values, applied to every
  unannotated plane.

Both see the images as the model sees them (the model's normalisation, ``range_per``). Each trial
also records the validation Dice the run reported and on which planes, to compare with the truth.

    OMP_NUM_THREADS=1 python benchmarks/bench_sparse_planes.py --trials causes       # candidate causes
    OMP_NUM_THREADS=1 python benchmarks/bench_sparse_planes.py --trials final --only k4-flat --seeds 0 1 2

Prints a table and writes ``benchmarks/results/sparse_planes[_<trials>][_<tag>].json``. The
results in docs/training.md ("A few annotated planes of a stack") came from runs split with
``--only``/``--tag`` over a busy shared machine (each JSON records the load average): causes
(patch64-flat, the same settings as final's k4-flat seed 0; issue-like-drift; per-plane-drift),
causes_flat48 (issue-like-flat), k2k8 and k4s12, all with 1 torch thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_common import environment, write_json


@dataclass
class Trial:
    """One fine-tuning run: ``annotated`` planes, ``drift`` or not, and config overrides."""

    name: str
    annotated: int = 4
    drift: bool = False
    steps: int = 400
    validate_every: int = 40
    overrides: dict[str, Any] = field(default_factory=dict)


def build_stack(planes: int, side: int, drift: bool) -> tuple[np.ndarray, np.ndarray]:
    """(Z, side, side) uint16 image and uint16 instance labels cut from the nuclei sample."""
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    n = image.shape[0] // side
    tiles = [(r, c) for r in range(n) for c in range(n)][:planes]
    if len(tiles) < planes:
        raise SystemExit(f"Only {len(tiles)} tiles of {side} px fit in the sample; ask for fewer planes.")
    img = np.stack([image[r * side : (r + 1) * side, c * side : (c + 1) * side] for r, c in tiles])
    lab = np.stack([labels[r * side : (r + 1) * side, c * side : (c + 1) * side] for r, c in tiles])
    img = img.astype(np.float64)
    if drift:
        z = np.linspace(0.0, 1.0, planes)[:, None, None]
        img = img * (0.5 + z) + 40.0 * z
    return np.clip(np.round(img), 0, 65535).astype(np.uint16), lab.astype(np.uint16)


def annotated_planes(planes: int, k: int) -> list[int]:
    """``k`` evenly spaced plane indices (0-based), away from the ends."""
    return [round(v) for v in np.linspace(0, planes - 1, k + 2)[1:-1]]


def _otsu_floors(grey: np.ndarray, truth: np.ndarray, annotated: list[int], others: list[int]) -> dict:
    from skimage.filters import threshold_otsu

    from napari_madgnet.metrics import dice

    inside = np.mean([grey[z][truth[z]].mean() for z in annotated if truth[z].any()])
    outside = np.mean([grey[z][~truth[z]].mean() for z in annotated if (~truth[z]).any()])
    bright = inside >= outside

    def side(g: np.ndarray, t: float) -> np.ndarray:
        return g > t if bright else g <= t

    fixed_t = threshold_otsu(grey[annotated])
    plane = np.stack([side(grey[z], threshold_otsu(grey[z])) for z in others])
    fixed = np.stack([side(grey[z], fixed_t) for z in others])
    t = truth[others]
    return {
        "otsu_plane": dice(plane, t),
        "otsu_fixed": dice(fixed, t),
        "otsu_plane_mean": float(np.mean([dice(p, q) for p, q in zip(plane, t, strict=True)])),
    }


def run_trial(trial: Trial, seed: int, planes: int, side: int, work: Path) -> dict[str, Any]:
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.layout import resolve_layout
    from napari_madgnet.metrics import dice
    from napari_madgnet.preprocess import fit_ranges
    from napari_madgnet.training import finetune
    from napari_madgnet.training.presets import first_model_config

    image, labels = build_stack(planes, side, trial.drift)
    truth = labels > 0
    annotated = annotated_planes(planes, trial.annotated)
    others = [z for z in range(planes) if z not in annotated]
    sparse = np.zeros_like(labels)
    sparse[annotated] = labels[annotated]
    cfg = first_model_config(
        steps=trial.steps, validate_every=trial.validate_every, seed=seed, device="cpu", **trial.overrides
    )
    notes: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    result = finetune(
        image,
        sparse,
        config=cfg,
        out=work / f"{trial.name}-{seed}.pt",
        register=False,
        axes="ZYX",
        callback=lambda p: notes.append(p.details["note"]) if p.details.get("note") else None,
    )
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    seg = segment(image, result.model, InferenceConfig(axes="ZYX", device="cpu"))
    predict_s = time.perf_counter() - t1
    pred = np.asarray(seg.probabilities)[0] >= 0.5
    layout = resolve_layout(image.shape, "ZYX", None)
    ranges = fit_ranges(image, layout, cfg.normalization, cfg.range_per)
    grey = np.stack([ranges.read(image, index)[..., 0] for index in layout.plane_indices()])
    row = {
        "trial": trial.name,
        "seed": seed,
        "annotated": trial.annotated,
        "annotated_planes": annotated,
        "drift": trial.drift,
        "steps": result.steps,
        "overrides": trial.overrides,
        "dice_unannotated": dice(pred[others], truth[others]),
        "dice_unannotated_mean": float(np.mean([dice(pred[z], truth[z]) for z in others])),
        **_otsu_floors(grey, truth, annotated, others),
        "reported_val_dice": result.best.get("dice"),
        "reported_baseline": result.baseline_dice,
        "heldout_planes": getattr(result, "heldout_planes", None),
        "split_note": " ".join(notes),
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,  # CPU seconds of all threads: the cost on a shared machine
        "predict_s": predict_s,
    }
    row["margin"] = row["dice_unannotated"] - max(row["otsu_plane"], row["otsu_fixed"])
    return row


def trial_set(name: str) -> list[Trial]:
    if name == "causes":
        # candidate causes of issue 18 on 4 annotated planes, short runs (150 steps, as the issue's)
        short = {"steps": 150, "validate_every": 10}
        return [
            Trial("issue-like-flat", **short, overrides={"patch_size": 48}),
            Trial("patch64-flat", **short, overrides={"patch_size": 64}),
            Trial("issue-like-drift", drift=True, **short, overrides={"patch_size": 48}),
            Trial("per-plane-drift", drift=True, **short, overrides={"patch_size": 48, "range_per": "plane"}),
        ]
    if name == "final":
        # the first-model preset (64 px patches, batch 4, lr 2e-3) for the 150 steps
        short = {"steps": 150, "validate_every": 10}
        pairs = [(k, d) for k in (2, 4, 8) for d in ("flat", "drift")]
        return [Trial(f"k{k}-{d}", annotated=k, drift=d == "drift", **short) for k, d in pairs]
    if name == "smoke":  # seconds: the test suite runs this
        return [Trial("smoke", annotated=3, steps=2, validate_every=1, overrides={"patch_size": 32})]
    raise SystemExit(f"Unknown trial set {name!r}: causes, final or smoke.")


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", default="final", help="causes, final or smoke")
    p.add_argument("--only", nargs="*", default=None, help="run only the trials with these names")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--planes", type=int, default=31)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the JSON file's name")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    env = environment(threads)
    load = os.getloadavg()
    print(f"CPU: {env['cpu']} ({env['cpu_count']} cores, {threads} torch threads); load {load[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MADGNET_MODELS_DIR", str(Path(tmp) / "models"))
        for trial in trial_set(args.trials):
            if args.only and trial.name not in args.only:
                continue
            for seed in args.seeds:
                row = run_trial(trial, seed, args.planes, args.side, Path(tmp))
                rows.append(row)
                print(_line(row), flush=True)
    print(_table(rows))
    if not args.no_json:
        suffix = ("" if args.trials == "final" else f"_{args.trials}") + (f"_{args.tag}" if args.tag else "")
        payload = {"environment": env, "load_before": load, "load_after": os.getloadavg(), "rows": rows}
        print(f"wrote {write_json('sparse_planes' + suffix, payload)}")
    return 0


_HEAD = "trial               seed  k  steps  Dice(unann.)  Otsu plane  Otsu fixed  margin  val Dice  train s"


def _line(r: dict[str, Any]) -> str:
    val = r["reported_val_dice"]
    return (
        f"{r['trial']:<19} {r['seed']:>4} {r['annotated']:>2} {r['steps']:>6}  {r['dice_unannotated']:>12.3f}"
        f"  {r['otsu_plane']:>10.3f}  {r['otsu_fixed']:>10.3f}  {r['margin']:>+6.3f}"
        f"  {val if val is None else f'{val:.3f}':>8}  {r['train_s']:>7.0f}"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    return "\n".join([_HEAD, *(_line(r) for r in rows)])


if __name__ == "__main__":
    raise SystemExit(main())
