"""Instances from the heads: watershed on the predicted distance map vs connected components.

The demo's model segments both halves of the nuclei sample once through the engine with
``instances="watershed"`` (so the distance and boundary maps are cached); every other setting is
a re-run of the post-processing only (``SegmentationResult.repostprocess``, no network). Objects
are scored with ``qc.object_scores`` against the instance labels: matched one-to-one at IoU >= 0.5
(Hungarian assignment maximising the summed IoU, unique at this threshold), object F1 and panoptic
quality (PQ = SQ x RQ).

Rows: connected components (the instances before the heads were used), and the watershed of
``inference.instances`` with the relief made of the predicted distance only (``head_weight`` 1),
of the mask's own distance transform only (0: no heads; the classical method), and of their mean
(0.5, the default). For each, ``peak_height`` is chosen on the TOP half (the training half: no
peeking at the test half) from a small grid; the table reports the unseen BOTTOM half at that
setting. The package defaults are the choices of this script.

    python -m napari_madgnet.demo --out out/demo     # once: the model
    python benchmarks/bench_instances.py [--model out/demo/nuclei_model.pt] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_common import environment, halves, load_demo_model, write_json

PEAK_HEIGHTS = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15)
HEAD_WEIGHTS = {"predicted distance only": 1.0, "mask's own distance only": 0.0, "mean of both": 0.5}
KEYS = ("f1", "pq", "precision", "recall", "sq", "tp", "fp", "fn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the demo's nuclei_model.pt (default out/demo/nuclei_model.pt)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from napari_madgnet.inference import InferenceConfig, PostprocessConfig, segment
    from napari_madgnet.qc import object_scores

    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    print(f"CPU: {env['cpu']} ({args.threads} torch threads)")
    model = load_demo_model(args.model)
    top_image, top_truth, image, truth = halves()
    config = InferenceConfig(postprocess=PostprocessConfig(instances="watershed"))
    t0 = time.perf_counter()
    top = segment(top_image, model, config)
    bottom = segment(image, model, config)
    network_s = time.perf_counter() - t0

    def score(result, reference: np.ndarray, **settings) -> dict:
        labels = result.repostprocess(PostprocessConfig(**settings)).mask
        s = object_scores(labels, reference, match_iou=0.5)
        return {k: s[k] for k in KEYS}

    tuning: dict[str, dict[str, dict]] = {}
    chosen: dict[str, float] = {}
    for name, weight in HEAD_WEIGHTS.items():
        grid = {
            h: score(top, top_truth, instances="watershed", head_weight=weight, peak_height=h)
            for h in PEAK_HEIGHTS
        }
        tuning[name] = {str(h): v for h, v in grid.items()}
        chosen[name] = max(PEAK_HEIGHTS, key=lambda h, g=grid: (g[h]["f1"], g[h]["pq"]))

    default = PostprocessConfig(instances="watershed")
    t1 = time.perf_counter()
    bottom.repostprocess(default)
    post_s = time.perf_counter() - t1
    rows = {"connected components": score(bottom, truth, instances="components")}
    for name, weight in HEAD_WEIGHTS.items():
        h = chosen[name]
        rows[f"watershed, {name} (peak {h:g})"] = score(
            bottom, truth, instances="watershed", head_weight=weight, peak_height=h
        )
    rows[f"default: {default.head_weight:g} heads, peak {default.peak_height:g}"] = score(
        bottom, truth, **{**default.to_dict()}
    )
    rows["default without the boundary barrier"] = score(
        bottom, truth, **{**default.to_dict(), "boundary_barrier": 0.0}
    )
    # ablation: the 1 px smoothing of the relief before its maxima are found (training half)
    import napari_madgnet.inference.instances as instances

    smoothing = {}
    for sigma in (0.0, instances.SMOOTHING):
        kept, instances.SMOOTHING = instances.SMOOTHING, sigma
        try:
            smoothing[str(sigma)] = score(
                top, top_truth, instances="watershed", head_weight=1.0, peak_height=0.1
            )
        finally:
            instances.SMOOTHING = kept
    n_ref = int(len(np.unique(truth)) - 1)
    print(f"bottom half (unseen), {n_ref} reference nuclei; matching: one-to-one at IoU >= 0.5 (Hungarian)")
    print(f"{'instances':<52}{'F1':>7}{'PQ':>7}{'prec':>7}{'rec':>7}{'SQ':>7}{'TP':>5}{'FP':>5}{'FN':>5}")
    for name, r in rows.items():
        print(
            f"{name:<52}{r['f1']:>7.3f}{r['pq']:>7.3f}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['sq']:>7.3f}"
            f"{r['tp']:>5}{r['fp']:>5}{r['fn']:>5}"
        )
    print(
        "smoothing ablation (top half, predicted distance only, peak 0.1): F1 "
        + ", ".join(f"{v['f1']:.3f} at sigma {k} px" for k, v in smoothing.items())
    )
    print(f"network: {network_s:.1f} s for both halves; one re-post-processing: {post_s * 1000:.0f} ms")
    payload = {
        "benchmark": "instances",
        "data": "nuclei sample: peak_height chosen on the top half (training), scored on the bottom half",
        "matching": "one-to-one at IoU >= 0.5, Hungarian (qc.object_scores; unique at this threshold)",
        "model": str(args.model or "out/demo/nuclei_model.pt"),
        "environment": env,
        "reference_objects_bottom": n_ref,
        "chosen_peak_height": chosen,
        "bottom_half": rows,
        "top_half_tuning": tuning,
        "smoothing_ablation_top_half": smoothing,
        "network_seconds": network_s,
        "postprocess_seconds": post_s,
    }
    print(f"wrote {write_json('instances', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
