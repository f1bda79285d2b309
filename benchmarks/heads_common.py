"""Shared parts of the E-SDM heads benchmarks (instances, uncertainty, active learning).

All three measure on the bundled nuclei sample (512 x 512, DSB2018, CC0) with the demo's model:
``python -m napari_madgnet.demo --out out/demo`` trains it once (400 steps from scratch on the top
half); the benchmarks load its ``nuclei_model.pt`` and measure on the unseen bottom half.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_MODEL = HERE.parent / "out" / "demo" / "nuclei_model.pt"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int) -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def halves() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top image, top labels, bottom image, bottom labels) of the nuclei sample."""
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    half = image.shape[0] // 2
    return image[:half], labels[:half], image[half:], labels[half:]


def load_demo_model(path: str | os.PathLike[str] | None) -> Any:
    """The demo's trained model, or a SystemExit saying how to make it."""
    from napari_madgnet.model import load_model

    p = Path(path) if path else DEFAULT_MODEL
    if not p.is_file():
        raise SystemExit(f"{p} not found: train it once with  python -m napari_madgnet.demo --out {p.parent}")
    return load_model(p)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """``benchmarks/results/<name>.json`` (replaced: one current result per benchmark)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(path)
    return path


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` as a predictor of ``positive`` (Mann-Whitney U,
    ties counted half); nan when either class is empty."""
    from scipy.stats import rankdata

    s = np.asarray(score, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def coverage(score: np.ndarray, positive: np.ndarray, top: float = 0.05) -> dict[str, float]:
    """Of the ``top`` fraction most uncertain pixels (ties broken by position): the share of all
    errors they hold (``error_coverage``) and the share of them that are errors (``error_rate``)."""
    s = np.asarray(score, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    k = max(1, round(top * s.size))
    chosen = np.argsort(-s, kind="stable")[:k]
    hits = int(y[chosen].sum())
    return {
        "error_coverage": hits / max(1, int(y.sum())),
        "error_rate_in_top": hits / k,
        "error_rate_overall": float(y.mean()),
    }
