"""Annotate next: does correcting the most uncertain regions help more than correcting random ones?

The loop of the Fine-tune dock, simulated on the nuclei sample with the demo's model (trained on
the top half): segment the bottom half (unseen) with the uncertainty on, pick 2 regions of
64 x 64 px, "correct" them (their ground-truth labels are copied into the labels layer), continue
fine-tuning from the current model on the top half plus all regions corrected so far
(``training.continue_finetune``: the run folder's optimiser state is restored when it belongs to
this model), and segment again. Three rounds, for each strategy:

- ``uncertain``: the 2 regions with the highest mean uncertainty (``suggest.suggest_corrections``);
- ``random``: 2 regions of the same grid drawn at random (``suggest.random_regions``; one run per
  seed in ``--random-seeds``);
- ``none``: no correction, the same continued training on the top half alone (what continuing
  alone does).

Dice on the bottom half is reported after each round, over the whole half and over the pixels no
strategy corrected (the union of every strategy's regions is left out, so all strategies are
scored on the same pixels and none on pixels it was given). Each round is ``--steps`` optimiser
steps (default 60, short rounds; ``training.continue_config``: a quarter of the demo's
learning rate, cosine, validation off).

    python -m napari_madgnet.demo --out out/demo     # once: the model (and its run folder)
    python benchmarks/bench_active_learning.py [--model out/demo/nuclei_model.pt] [--steps 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_common import DEFAULT_MODEL, environment, load_demo_model, write_json

REGION = 64
PER_ROUND = 2
ROUNDS = 3


def run_strategy(name, seed, model, previous_run, image, labels, half, steps, work, device) -> dict:
    """One strategy's three rounds; returns Dice per round and the regions it corrected."""
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.metrics import dice
    from napari_madgnet.suggest import random_regions, suggest_corrections
    from napari_madgnet.training import Region, continue_config, continue_finetune

    truth = labels[half:]
    shown = np.zeros_like(labels)
    shown[:half] = labels[:half]  # the original annotation: the top half
    regions = [Region((), (0, 0, half, image.shape[1]))]
    corrected: list = []  # boxes in bottom-half coordinates
    config = InferenceConfig(uncertainty=True, device=device)
    result = segment(image[half:], model, config)
    rounds = [{"round": 0, "dice": dice(np.asarray(result.probabilities)[0] >= 0.5, truth > 0)}]
    probs = [np.asarray(result.probabilities)[0]]
    for r in range(1, ROUNDS + 1):
        t0 = time.perf_counter()
        if name == "uncertain":
            picks = suggest_corrections(
                result.uncertainty, result.axes, region_size=REGION, count=PER_ROUND, exclude=corrected
            )
        elif name == "random":
            picks = random_regions(
                truth.shape, region_size=REGION, count=PER_ROUND, seed=seed * 100 + r, exclude=corrected
            )
        else:
            picks = []
        for p in picks:
            y0, x0, y1, x1 = p.box
            shown[half + y0 : half + y1, x0:x1] = labels[half + y0 : half + y1, x0:x1]
            regions.append(Region((), (half + y0, x0, half + y1, x1)))
        corrected.extend(picks)
        out = work / f"{name}{seed}_round{r}"
        trained = continue_finetune(
            model,
            image,
            shown,
            regions=regions,
            config=continue_config(model, steps=steps, device=device),
            previous_run=previous_run,
            out=out / "model.pt",
            register=False,
            image_name="nuclei",
        )
        model, previous_run = trained.model, trained.out_dir
        result = segment(image[half:], model, config)
        prob = np.asarray(result.probabilities)[0]
        probs.append(prob)
        rounds.append(
            {
                "round": r,
                "dice": dice(prob >= 0.5, truth > 0),
                "regions": [list(p.box) for p in picks],
                "region_scores": [p.score for p in picks],
                "optimizer_state": trained.continued["optimizer_state"],
                "seconds": time.perf_counter() - t0,
            }
        )
        label = name if name != "random" else f"random (seed {seed})"
        print(
            f"  {label} round {r}: Dice {rounds[-1]['dice']:.4f}, "
            f"optimiser {trained.continued['optimizer_state']}, regions {rounds[-1]['regions']}, "
            f"{rounds[-1]['seconds']:.0f} s",
            flush=True,
        )
    return {"rounds": rounds, "corrected": [list(p.box) for p in corrected], "probabilities": probs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the demo's nuclei_model.pt (default out/demo/nuclei_model.pt)")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per round")
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-control", action="store_true", help="skip the 'none' strategy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy machine)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    import torch

    from napari_madgnet.metrics import dice
    from napari_madgnet.sample_data import load_nuclei

    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    print(f"CPU: {env['cpu']} ({args.threads} torch threads)")
    model = load_demo_model(args.model)
    demo_run = Path(args.model or DEFAULT_MODEL).parent / "run"  # the demo's run folder: its last state
    image, labels = load_nuclei()
    half = image.shape[0] // 2
    plan = [("uncertain", 0)] + [("random", s) for s in args.random_seeds]
    if not args.no_control:
        plan.append(("none", 0))
    runs = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="madgnet-al-") as tmp:
        for name, seed in plan:
            key = name if name != "random" else f"random (seed {seed})"
            runs[key] = run_strategy(
                name, seed, model, demo_run, image, labels, half, args.steps, Path(tmp), args.device
            )
    total_s = time.perf_counter() - t0

    truth = labels[half:] > 0
    untouched = np.ones(truth.shape, bool)
    for run in runs.values():
        for y0, x0, y1, x1 in run["corrected"]:
            untouched[y0:y1, x0:x1] = False
    for run in runs.values():
        for row, prob in zip(run["rounds"], run.pop("probabilities"), strict=True):
            row["dice_uncorrected_pixels"] = dice((prob >= 0.5)[untouched], truth[untouched])

    print(
        f"\nDice on the unseen bottom half after each round ({PER_ROUND} regions of {REGION} px per round, "
        f"{args.steps} steps per round); 'outside' = the {int(untouched.mean() * 100)} % of pixels no "
        "strategy corrected"
    )
    print(f"{'strategy':<20}" + "".join(f"{f'round {r}':>18}" for r in range(ROUNDS + 1)))
    for key, run in runs.items():
        cells = "".join(
            f"{row['dice']:>9.4f}/{row['dice_uncorrected_pixels']:<8.4f}" for row in run["rounds"]
        )
        print(f"{key:<20}{cells}")
    print("(each cell: whole half / outside)")
    print(f"total {total_s / 60:.1f} min")
    payload = {
        "benchmark": "active_learning",
        "data": "nuclei sample: top half annotated; regions corrected on the bottom half (ground truth)",
        "model": str(args.model or "out/demo/nuclei_model.pt"),
        "steps_per_round": args.steps,
        "regions_per_round": PER_ROUND,
        "region_size": REGION,
        "rounds": ROUNDS,
        "uncorrected_fraction": float(untouched.mean()),
        "environment": env,
        "total_seconds": total_s,
        "strategies": runs,
    }
    print(f"wrote {write_json('active_learning', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
