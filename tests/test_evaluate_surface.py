"""``evaluate_folder`` reports HD95/ASSD/NSD per image with units, undefined cases and objects.

The model's prediction is replaced by known probability maps so that the numbers can be checked
by hand; the real prediction path is covered by tests/training/test_cli.py.
"""

from __future__ import annotations

import csv
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

from napari_madgnet.errors import UserError
from napari_madgnet.inference import evaluate as ev
from napari_madgnet.surface_metrics import surface_metrics


def _data(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    square = np.zeros((32, 32), np.uint8)
    square[8:20, 8:20] = 255
    for name, mask in (("a.png", square), ("b.png", np.zeros_like(square))):
        iio.imwrite(tmp_path / "data" / "images" / name, np.full((32, 32), 100, np.uint8))
        iio.imwrite(tmp_path / "data" / "masks" / name, mask)
    prob_a = np.zeros((32, 32), np.float32)
    prob_a[8:20, 10:22] = 0.9  # the square shifted two pixels along X
    prob_b = np.zeros((32, 32), np.float32)
    prob_b[2:5, 2:5] = 0.8  # a false positive on an empty mask
    return tmp_path / "data", iter([prob_a, prob_b]), square > 0, prob_a >= 0.5  # in file-name order


def test_surface_metrics_per_image_and_in_the_summary(tmp_path, monkeypatch) -> None:
    data, probs, truth_a, pred_a = _data(tmp_path)
    monkeypatch.setattr("napari_madgnet.inference.fast_model", lambda model: model)
    monkeypatch.setattr(ev, "predict", lambda model, image, device="auto": next(probs))
    summary = ev.evaluate_folder(object(), data, tmp_path / "out", spacing=(0.5, 0.25), unit="mm")
    with open(tmp_path / "out" / "per_image.csv", newline="") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    want = surface_metrics(pred_a, truth_a, 0.5, spacing=(0.5, 0.25))  # default tolerance: 1 px = 0.5 mm
    assert float(rows["a.png"]["hd95_mm"]) == pytest.approx(want["hd95"])
    assert float(rows["a.png"]["assd_mm"]) == pytest.approx(want["assd"])
    assert float(rows["a.png"]["nsd"]) == pytest.approx(want["nsd"])
    assert want["hd95"] == pytest.approx(0.5)  # the shifted sides lie 2 x 0.25 mm apart
    assert (
        rows["b.png"]["hd95_mm"] == "nan"
        and rows["b.png"]["assd_mm"] == "inf"
        and rows["b.png"]["nsd"] == "0.0"
    )

    s = summary["surface_metrics"]
    assert s["unit"] == "mm" and s["spacing"] == [0.5, 0.25] and s["nsd_tolerance"] == 0.5
    assert s["hd95_mm"] == pytest.approx(want["hd95"]) and s["hd95_mm_undefined_images"] == 1
    assert s["nsd"] == pytest.approx(want["nsd"] / 2) and s["nsd_undefined_images"] == 0
    assert "hd95_mm" not in summary["standard_metrics"] and math.isfinite(summary["standard_metrics"]["dice"])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["surface_metrics"] == s

    with open(tmp_path / "out" / "per_object.csv", newline="") as fh:
        objects = list(csv.DictReader(fh))
    assert [(o["image"], o["status"]) for o in objects] == [("a.png", "matched"), ("b.png", "false positive")]
    assert float(objects[0]["iou"]) == pytest.approx(120 / 168) and "hd95_mm" in objects[0]
    assert summary["objects"] == {
        "match_iou": 0.5,
        "reference": 1,
        "predicted": 2,
        "matched": 1,
        "missed": 0,
        "false_positive": 1,
    }


def test_without_spacing_distances_are_pixels_and_bad_tolerance_is_refused(tmp_path, monkeypatch) -> None:
    data, probs, truth_a, pred_a = _data(tmp_path)
    monkeypatch.setattr("napari_madgnet.inference.fast_model", lambda model: model)
    monkeypatch.setattr(ev, "predict", lambda model, image, device="auto": next(probs))
    summary = ev.evaluate_folder(object(), data, tmp_path / "out", nsd_tolerance=2.0)
    s = summary["surface_metrics"]
    assert s["unit"] == "px" and s["spacing"] is None and s["nsd_tolerance"] == 2.0
    assert s["hd95_px"] == pytest.approx(surface_metrics(pred_a, truth_a, 2.0)["hd95"])
    with pytest.raises(UserError, match="tolerance"):
        ev.evaluate_folder(object(), data, tmp_path / "out2", nsd_tolerance=-1.0)
