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


# -------------------------------------------------------------------- one binarisation (issue 12.3)
def _jpeg_square() -> tuple[np.ndarray, np.ndarray]:
    import imageio.v3 as iio

    truth = np.zeros((64, 80), bool)
    truth[10:40, 15:50] = True
    truth[45:60, 60:75] = True
    jpeg = iio.imread(iio.imwrite("<bytes>", truth.astype(np.uint8) * 255, extension=".jpg", quality=75))
    return truth, np.asarray(jpeg)


def test_both_metric_families_read_a_jpeg_mask_alike() -> None:
    from napari_madgnet.metrics import binary_truth, truth_kind, truth_note

    truth, jpeg = _jpeg_square()
    assert len(np.unique(jpeg)) > 2 and truth_kind(jpeg) == "picture"
    np.testing.assert_array_equal(binary_truth(jpeg), truth)
    perfect = truth.astype(np.float32)
    assert standard_metrics(perfect, jpeg)["dice"] == 1.0  # was 0.96: grey edges counted as object
    assert paper_metrics(perfect, jpeg)["DSC"] == pytest.approx(1.0, abs=1e-6)
    assert "binarised at > 127.5" in truth_note(jpeg, "m.jpg")


@pytest.mark.parametrize(
    ("mask", "kind"),
    [
        (np.array([[0, 1], [1, 0]], bool), "two-valued"),
        (np.array([[0, 255], [255, 0]], np.uint8), "two-valued"),
        (np.array([[0, 1], [2, 3]], np.uint16), "ids"),
        (np.arange(200, dtype=np.uint8).reshape(10, 20), "ids"),  # 199 instances of equal size in 8 bits
        (np.array([[0, 0.2], [0.7, 1.0]], np.float32), "grey"),
    ],
)
def test_truth_kinds(mask, kind) -> None:
    from napari_madgnet.metrics import binary_truth, truth_kind, truth_note

    assert truth_kind(mask) == kind
    expected = mask > (mask.max() / 2 if kind == "grey" else 0)
    np.testing.assert_array_equal(binary_truth(mask), expected)
    assert (truth_note(mask) != "") == (kind == "grey")


def test_paper_metrics_on_instance_ids_count_every_object() -> None:
    ids = np.zeros((40, 40), np.uint16)
    ids[5:15, 5:15], ids[20:30, 20:30] = 1, 9
    perfect = (ids > 0).astype(np.float32)
    # the release's gt / max > 0.5 kept only the object with id 9 (DSC 0.67)
    assert paper_metrics(perfect, ids)["DSC"] == pytest.approx(1.0, abs=1e-6)
