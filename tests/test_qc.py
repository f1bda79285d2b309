"""Mask comparison (QC): overall, per-slice and per-object metrics, error map, CLI."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import tifffile

from napari_madgnet.cli import main
from napari_madgnet.errors import UserError
from napari_madgnet.qc import compare_masks
from napari_madgnet.surface_metrics import surface_metrics


def _shifted_squares() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((20, 20), np.uint8)
    pred = np.zeros_like(ref)
    ref[5:15, 5:15] = 1
    pred[5:15, 7:17] = 1  # shifted two pixels along X
    return pred, ref


def test_overlap_error_map_and_surface_metrics_of_a_shift() -> None:
    pred, ref = _shifted_squares()
    r = compare_masks(pred, ref, spacing=(1.0, 0.5), unit="mm")
    o = r.overall
    assert o["dice"] == pytest.approx(0.8) and o["iou"] == pytest.approx(80 / 120)
    assert o["precision"] == pytest.approx(0.8) and o["recall"] == pytest.approx(0.8)
    assert np.count_nonzero(r.error_map == 1) == 20 and np.count_nonzero(r.error_map == 2) == 20
    assert r.error_map.dtype == np.uint8 and (r.error_map[:, 15:17][5:15] == 1).all()
    assert (r.error_map[5:15, 5:7] == 2).all()
    assert r.tolerance == 1.0  # default: the largest spacing, one voxel's extent
    want = surface_metrics(pred, ref, 1.0, spacing=(1.0, 0.5))
    assert {k: o[f"{k}_mm" if k != "nsd" else k] for k in want} == pytest.approx(want)
    assert o["hd95_mm"] == pytest.approx(1.0)  # the shifted sides are 2 px x 0.5 mm apart
    assert o["reference_area_mm2"] == pytest.approx(100 * 0.5)
    assert r.per_slice == [] and r.worst_slice is None  # a 2-D image has no slices


def test_3d_overall_metrics_equal_monai() -> None:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )
    from scipy import ndimage

    rng = np.random.default_rng(3)
    ref = ndimage.binary_opening(rng.random((8, 24, 20)) < 0.5)
    pred = ndimage.binary_opening(rng.random((8, 24, 20)) < 0.5)
    spacing = (2.5, 0.7, 0.9)
    r = compare_masks(pred, ref, spacing=spacing, unit="mm", tolerance=1.5, per_object=False)

    def t(m: np.ndarray):
        return torch.as_tensor(m[None, None].astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"include_background": True, "spacing": spacing}
        hd = compute_hausdorff_distance(t(pred), t(ref), percentile=95, **kw).item()
        asd = compute_average_surface_distance(t(pred), t(ref), symmetric=True, **kw).item()
        nsd = compute_surface_dice(t(pred), t(ref), [1.5], **kw).item()
    assert r.overall["hd95_mm"] == pytest.approx(hd, rel=1e-6)
    assert r.overall["assd_mm"] == pytest.approx(asd, rel=1e-6)
    assert r.overall["nsd"] == pytest.approx(nsd, rel=1e-6)
    for row in r.per_slice:  # per-slice metrics are the 2-D ones of that plane (Y-X spacing)
        z = row["z"]
        assert row["hd95_mm"] == pytest.approx(
            surface_metrics(pred[z], ref[z], 1.5, spacing[1:])["hd95"], nan_ok=True
        )


def test_hungarian_matching_beats_greedy() -> None:
    # Reference A = x 0..9, B = x 10..19; prediction Y = x 0..3, X = x 4..13 (one row band).
    ref = np.zeros((4, 20), np.uint16)
    pred = np.zeros_like(ref)
    ref[:, 0:10] = 1
    ref[:, 10:20] = 2
    pred[:, 0:4] = 5
    pred[:, 4:14] = 6
    # IoU(X, A) = 6/14 is the best pair, but X-B (4/16) + Y-A (4/10) match more and sum higher.
    r = compare_masks(pred, ref, match_iou=0.2)
    pairs = {(o["reference_label"], o["predicted_label"]) for o in r.per_object if o["status"] == "matched"}
    assert pairs == {(1, 5), (2, 6)}
    a = next(o for o in r.per_object if o["reference_label"] == 1)
    assert a["iou"] == pytest.approx(0.4) and a["best_iou"] == pytest.approx(6 / 14)
    assert a["dice"] == pytest.approx(2 * 0.4 / 1.4)

    strict = compare_masks(pred, ref)  # IoU >= 0.5: nothing matches
    assert [o["status"] for o in strict.per_object] == [
        "missed",
        "missed",
        "false positive",
        "false positive",
    ]
    assert strict.overall["missed_objects"] == 2 and strict.overall["false_positive_objects"] == 2
    fp = strict.per_object[-1]
    assert math.isnan(fp["hd95_px"]) and fp["assd_px"] == math.inf and fp["nsd"] == 0.0


def test_binary_prediction_against_instance_reference() -> None:
    ref = np.zeros((6, 12), np.uint16)
    ref[1:5, 1:4] = 3
    ref[1:5, 4:7] = 4
    ref[1:5, 7:10] = 5  # touching instances
    pred = ref > 0  # one connected blob: IoU 1/3 with each instance
    r = compare_masks(pred, ref)
    assert r.overall["reference_objects"] == 3 and r.overall["predicted_objects"] == 1
    assert r.overall["matched_objects"] == 0 and r.overall["dice"] == 1.0


@pytest.mark.parametrize("value", [True, 255])
def test_binary_masks_are_split_into_connected_objects(value) -> None:
    ref = np.zeros((12, 12), np.uint8 if value == 255 else bool)
    pred = np.zeros_like(ref)
    ref[1:4, 1:4] = ref[7:10, 7:10] = value
    pred[1:4, 1:4] = value
    pred[0, 11] = value
    r = compare_masks(pred, ref)
    assert [o["status"] for o in r.per_object] == ["matched", "missed", "false positive"]
    matched = r.per_object[0]
    assert matched["iou"] == 1.0 and matched["hd95_px"] == 0.0 and matched["nsd"] == 1.0
    assert (matched["center_y"], matched["center_x"]) == (2.0, 2.0)
    assert r.overall["reference_objects"] == 2 and r.overall["predicted_objects"] == 2


def test_per_slice_table_and_worst_slice() -> None:
    ref = np.zeros((5, 16, 16), np.uint8)
    ref[1:4, 4:12, 4:12] = 1
    pred = ref.copy()
    pred[2, 4:12, 4:8] = 0  # plane 2: half the object missed (32 pixels)
    pred[4, 0, 0] = 1  # plane 4: one stray pixel (Dice 0, 1 pixel)
    r = compare_masks(pred, ref, spacing=(3.0, 1.0, 1.0), unit="mm")
    assert [row["z"] for row in r.per_slice] == [1, 2, 3, 4]  # plane 0 is empty in both
    by_z = {row["z"]: row for row in r.per_slice}
    assert by_z[1]["dice"] == 1.0 and by_z[2]["false_negative_pixels"] == 32 and by_z[4]["errors"] == 1
    assert by_z[2]["dice"] == pytest.approx(2 * 32 / (64 + 32))
    assert r.worst_slice == (2,)
    assert compare_masks(pred, ref, worst_by="dice", per_object=False).worst_slice == (4,)
    assert "worst slice: z=2" in r.summary()


def test_time_axis_frames_are_compared_separately() -> None:
    pred, ref = _shifted_squares()
    stack_p, stack_r = np.stack([pred, ref]), np.stack([ref, ref])
    r = compare_masks(stack_p, stack_r, axes="TYX")
    # Frame 1 is perfect; the pooled distances hold frame 0's and frame 1's (zero) distances.
    one = surface_metrics(pred, ref, 1.0)
    assert r.overall["hd95_px"] <= one["hd95"] and r.overall["assd_px"] < one["assd"]
    assert [row["t"] for row in r.per_slice] == [0, 1] and r.worst_slice == (0,)
    assert {o["t"] for o in r.per_object} == {0, 1}

    # Binary time points: the two blobs of frame 0 stay two objects although frame 1 joins them.
    ref = np.zeros((2, 6, 9), bool)
    ref[0, 2:4, 0:3] = ref[0, 2:4, 6:9] = True
    ref[1, 2:4, :] = True
    r = compare_masks(ref, ref, axes="TYX")
    assert [(o["t"], o["status"]) for o in r.per_object] == [(0, "matched"), (0, "matched"), (1, "matched")]


def test_empty_masks_and_bad_input() -> None:
    empty = np.zeros((3, 8, 8), np.uint8)
    r = compare_masks(empty, empty)
    assert r.overall["dice"] == 1.0 and math.isnan(r.overall["hd95_px"]) and math.isnan(r.overall["nsd"])
    assert r.per_slice == [] and r.per_object == [] and r.worst_slice is None
    with pytest.raises(UserError, match=r"\(3, 8, 8\).*\(3, 8, 9\)"):
        compare_masks(empty, np.zeros((3, 8, 9), np.uint8))
    with pytest.raises(UserError, match="tolerance"):
        compare_masks(empty, empty, tolerance=-1)
    with pytest.raises(UserError, match="match_iou"):
        compare_masks(empty, empty, match_iou=0)
    with pytest.raises(UserError, match="integers"):
        compare_masks(empty.astype(float) + 0.5, empty)


def test_report_to_csv(tmp_path) -> None:
    pred, ref = _shifted_squares()
    r = compare_masks(np.stack([pred, ref]), np.stack([ref, ref]))
    written = r.to_csv(tmp_path)
    assert [p.name for p in written] == ["summary.csv", "per_slice.csv", "per_object.csv"]
    with open(tmp_path / "per_slice.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["dice"]) == pytest.approx(0.8) and rows[1]["hd95_px"] == "0.0"
    with pytest.raises(FileExistsError, match=r"summary\.csv"):
        r.to_csv(tmp_path)


def test_cli_compare(tmp_path, capsys) -> None:
    ref = np.zeros((4, 16, 16), np.uint16)
    ref[1:3, 4:12, 4:12] = 1
    pred = ref.copy()
    pred[2, 4:12, 4:8] = 0
    tifffile.imwrite(tmp_path / "a.tif", pred, photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", ref, photometric="minisblack")
    out = tmp_path / "qc"
    rc = main(
        [
            "compare",
            str(tmp_path / "a.tif"),
            str(tmp_path / "b.tif"),
            "-o",
            str(out),
            "--spacing",
            "2",
            "1",
            "1",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "HD95" in text and " mm" in text and "worst slice: z=2" in text
    error_map = tifffile.imread(out / "error_map.tif")
    assert error_map.shape == ref.shape and np.count_nonzero(error_map == 2) == 32
    with open(out / "summary.csv", newline="") as fh:
        summary = next(csv.DictReader(fh))
    assert float(summary["tolerance_mm"]) == 2.0 and "hd95_mm" in summary

    assert main(["compare", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "c.tif", ref[:3], photometric="minisblack")
    assert main(["compare", str(tmp_path / "a.tif"), str(tmp_path / "c.tif")]) == 2
    err = capsys.readouterr().err
    assert "a.tif has shape (4, 16, 16)" in err and "c.tif has shape (3, 16, 16)" in err
