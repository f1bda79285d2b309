"""Does the uncertainty track errors? AUROC and top-5 % coverage on the nuclei sample's unseen half.

For each way of computing the per-pixel uncertainty (``InferenceConfig.uncertainty``) the demo's
model segments the bottom half (which it never saw) through the engine, and the uncertainty map
is scored as a predictor of the pixel errors of the prediction made in that same run (foreground
at 0.5 vs labels > 0; with TTA the prediction is the TTA mean):

- AUROC: probability that an error pixel is more uncertain than a correct one (0.5 = no signal);
- coverage: share of all error pixels among the 5 % most uncertain pixels (5 % = no signal),
  and the error rate among those pixels.

Measures: ``stages`` (disagreement of the four decoder stages), ``tta`` (disagreement of 2, 4, 8
flip passes) and ``entropy`` (binary entropy of the final probability, without and with TTA;
``uncertainty=True``). The first row repeats the prediction's own entropy for every run as
the free baseline ("entropy of this run").

    python -m napari_madgnet.demo --out out/demo     # once: the model
    python benchmarks/bench_uncertainty.py [--model out/demo/nuclei_model.pt] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_common import auroc, coverage, environment, halves, load_demo_model, write_json

#: (name, InferenceConfig overrides)
VARIANTS = [
    ("stages disagreement", {"uncertainty": "stages", "tta": 1}),
    ("tta x2 disagreement", {"uncertainty": "tta", "tta": 2}),
    ("tta x4 disagreement", {"uncertainty": "tta", "tta": 4}),
    ("tta x8 disagreement", {"uncertainty": "tta", "tta": 8}),
    ("entropy (default)", {"uncertainty": True, "tta": 1}),
    ("entropy, tta x4", {"uncertainty": True, "tta": 4}),
]


def measure(model, image: np.ndarray, truth: np.ndarray, overrides: dict) -> dict:
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.inference.heads import binary_entropy

    t0 = time.perf_counter()
    result = segment(image, model, InferenceConfig(**overrides))
    seconds = time.perf_counter() - t0
    prob = np.asarray(result.probabilities)[0]
    unc = np.asarray(result.uncertainty)[0]
    error = (prob >= 0.5) != (truth > 0)
    entropy = binary_entropy(prob)
    return {
        "seconds": seconds,
        "error_pixels": int(error.sum()),
        "dice": float(2 * ((prob >= 0.5) & (truth > 0)).sum() / ((prob >= 0.5).sum() + (truth > 0).sum())),
        "auroc": auroc(unc, error),
        **coverage(unc, error),
        "entropy_auroc": auroc(entropy, error),
        "entropy_coverage": coverage(entropy, error)["error_coverage"],
        "mean_uncertainty": float(unc.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the demo's nuclei_model.pt (default out/demo/nuclei_model.pt)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    print(f"CPU: {env['cpu']} ({args.threads} torch threads)")
    model = load_demo_model(args.model)
    _, _, image, truth = halves()
    rows = {}
    for name, overrides in VARIANTS:
        rows[name] = measure(model, image, truth, overrides)
    error_share = next(iter(rows.values()))["error_rate_overall"]
    print(f"bottom half, 256 x 512 px; {error_share * 100:.1f} % of the pixels are wrong (threshold 0.5)")
    head = (
        f"{'uncertainty':<22}{'passes':>7}{'s':>7}{'Dice':>7}{'AUROC':>7}{'top5% cov':>10}{'err rate':>9}"
        f"{'| entropy of this run: AUROC':>30}{'cov':>7}"
    )
    print(head)
    for (name, overrides), r in zip(VARIANTS, rows.values(), strict=True):
        print(
            f"{name:<22}{overrides['tta']:>7}{r['seconds']:>7.1f}{r['dice']:>7.3f}{r['auroc']:>7.3f}"
            f"{r['error_coverage']:>10.3f}{r['error_rate_in_top']:>9.3f}"
            f"{'| ':>4}{r['entropy_auroc']:>26.3f}{r['entropy_coverage']:>7.3f}"
        )
    payload = {
        "benchmark": "uncertainty",
        "data": "nuclei sample, bottom half (256 x 512), never seen in training",
        "model": str(args.model or "out/demo/nuclei_model.pt"),
        "error": "(probability >= 0.5) != (labels > 0), per pixel, of the same run's prediction",
        "environment": env,
        "variants": {name: {"config": o, **rows[name]} for name, o in VARIANTS},
    }
    print(f"wrote {write_json('uncertainty', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
