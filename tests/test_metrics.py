"""The release's metrics must match values computed by the released code, defects included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.metrics import (
    PAPER_METRICS,
    dice,
    mean_metrics,
    paper_metrics,
    standard_metrics,
)

FIX = Path(__file__).parent / "fixtures" / "official"
REF = json.loads((FIX / "metrics_reference.json").read_text())
CASES = np.load(FIX / "metrics_cases.npz")


@pytest.mark.parametrize("case", REF["cases"], ids=[c["name"] for c in REF["cases"]])
def test_paper_metrics_match_release(case: dict) -> None:
    got = paper_metrics(CASES[f"{case['name']}/pred"], CASES[f"{case['name']}/gt"])
    assert tuple(got) == PAPER_METRICS
    for name in REF["metrics"]:
        assert got[name] == pytest.approx(case[name], abs=1e-6), name


def test_paper_defects_are_kept_and_standard_fixes_them() -> None:
    gt = CASES["perfect/gt"]
    paper = paper_metrics(gt.astype(np.float32), gt)
    assert paper["S-Measure"] < 0.9 and paper["E-Measure"] > 1.0
    std = standard_metrics(gt.astype(np.float32), gt)
    for key in ("dice", "iou", "precision", "recall", "weighted_f", "e_measure"):
        assert std[key] == pytest.approx(1.0)
    assert std["s_measure"] == pytest.approx(1.0, abs=1e-6)
    empty = np.zeros((40, 50))
    assert paper_metrics(empty, empty)["E-Measure"] == 0.0
    assert standard_metrics(empty, empty)["e_measure"] == 1.0


def test_dice_and_mean() -> None:
    a = np.zeros((3, 8, 8), np.uint8)
    a[:, 2:6, 2:6] = 1
    b = np.roll(a, 1, axis=2)
    assert dice(a, a) == 1.0 and dice(a * 0, a * 0) == 1.0
    assert dice(a, b) == pytest.approx(2 * 36 / 96)
    assert mean_metrics([{"x": 1.0}, {"x": 0.0}]) == {"x": 0.5}
    with pytest.raises(ValueError, match="2-D"):
        paper_metrics(a, a)
