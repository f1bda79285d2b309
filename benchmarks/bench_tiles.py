"""Tile size for models trained on patches: Dice and time at 1x, 2x, 4x, 8x the patch (and whole).

A model fine-tuned on 64 px patches was tiled at 64 px by default, so a 4096 x 4096 image took
~7,200 forward passes. This measures, with the demo's nuclei model (``python -m
napari_madgnet.demo --out out/demo``: 400 steps on 64 px patches of the bundled sample's top
half), ``segment()`` with ``geometry="tiles"`` at each tile size:

- on the held-out bottom half (256 x 512): Dice against its labels, and seconds;
- on a larger real image: the whole 512 x 512 sample tiled 4 x 4 into 2048 x 2048 (native scale,
  so nuclei keep the size the model learnt; its labels tiled alike): seconds and Dice.

"whole" is one tile covering the image (the tiler's tile is capped at the image's size). The
default tile is chosen from this: the largest tile whose held-out Dice is within 0.005 of the
patch-size tile's (``--tolerance``). Writes ``results/tiles-<cpu slug>.json``.

    python benchmarks/bench_tiles.py [--model out/demo/nuclei_model.pt] [--threads 2] [--no-large]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from heads_common import DEFAULT_MODEL, halves, load_demo_model  # noqa: E402
from machine import describe, headline, load_now, result_path, write_result  # noqa: E402

FACTORS = (1, 2, 4, 8)


def tile_sizes(patch: int, shape: tuple[int, int], factors: tuple[int, ...] = FACTORS) -> dict[str, int]:
    """Tile size per label: ``"1x"``...``"8x"`` the patch, and ``"whole"`` (the image's longer side,
    rounded up to 32), without sizes above the whole image's."""
    import math

    whole = 32 * math.ceil(max(shape) / 32)
    sizes = {f"{f}x": f * patch for f in factors if f * patch <= whole}
    sizes["whole"] = whole
    return sizes


def choose_default(dice_by_factor: dict[int, float], tolerance: float = 0.005) -> int:
    """The largest factor whose Dice is within ``tolerance`` of the 1x (patch-size) tile's."""
    base = dice_by_factor[1]
    return max(f for f, d in dice_by_factor.items() if d >= base - tolerance)


def measure(image, labels, model, sizes: dict[str, int], precision: str) -> dict[str, dict]:
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.metrics import dice

    rows = {}
    for label, tile in sizes.items():
        config = InferenceConfig(geometry="tiles", tile_size=tile, device="cpu", precision=precision)
        before = load_now()
        start = time.perf_counter()
        result = segment(image, model, config)
        seconds = time.perf_counter() - start
        rows[label] = {
            "tile": tile,
            "dice": round(float(dice(result.mask > 0, labels > 0)), 4),
            "seconds": round(seconds, 3),
            "load_average_before": before,
        }
        print(f"  {label:>6} tile {tile:>5}: Dice {rows[label]['dice']:.4f}  {seconds:8.2f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model trained on patches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--no-large", action="store_true", help="skip the 2048 x 2048 image")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model = load_demo_model(args.model)
    prep = (getattr(model, "checkpoint_info", None) or {}).get("preprocessing") or {}
    patch = int(prep.get("tile_size") or 0)
    if not patch or prep.get("input_size"):
        raise SystemExit(f"{args.model} was not trained on patches (no preprocessing.tile_size)")
    info = describe("cpu")
    print(headline(info))
    _, _, bottom, bottom_labels = halves()
    print(f"held-out half {bottom.shape}, model trained on {patch} px patches")
    held_out = measure(bottom, bottom_labels, model, tile_sizes(patch, bottom.shape[:2]), args.precision)
    by_factor = {int(k[:-1]): r["dice"] for k, r in held_out.items() if k != "whole"}
    factor = choose_default(by_factor, args.tolerance)
    print(f"default: {factor}x the patch ({factor * patch} px), the largest tile within "
          f"{args.tolerance} Dice of the {patch} px tile")
    large = None
    if not args.no_large:
        from napari_madgnet.sample_data import load_nuclei

        image, labels = load_nuclei()
        big, big_labels = np.tile(image, (4, 4)), np.tile(labels, (4, 4))
        print(f"large image {big.shape} (the sample tiled 4 x 4)")
        large = measure(big, big_labels, model, tile_sizes(patch, big.shape[:2]), args.precision)
    payload = {
        "machine": info,
        "model": str(args.model),
        "patch": patch,
        "precision": args.precision,
        "held_out": held_out,
        "large_2048": large,
        "tolerance": args.tolerance,
        "chosen_factor": factor,
        "chosen_tile": factor * patch,
        "load_average_after": load_now(),
    }
    print(f"written {write_result(args.out / result_path('tiles', info).name, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
