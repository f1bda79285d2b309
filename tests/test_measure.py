"""Per-object measurements: physical units, 2-D/3-D, per-plane stacks, CSV and napari features."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_madgnet.errors import UserError
from napari_madgnet.measure import measure_objects, measure_to_csv, napari_features


def _two_rectangles() -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros((20, 30), np.uint16)
    lab[2:6, 4:10] = 4  # 4 x 6 pixels
    lab[10:15, 20:22] = 9  # 5 x 2 pixels
    img = np.zeros(lab.shape, np.float32)
    img[2:6, 4:10] = np.arange(24, dtype=np.float32).reshape(4, 6)
    img[10:15, 20:22] = 100.0
    return lab, img


def test_2d_sizes_centroids_and_intensities_in_physical_units() -> None:
    lab, img = _two_rectangles()
    t = measure_objects(lab, img, spacing=(0.5, 0.25), unit="µm")
    assert list(t)[:3] == ["label", "area_um2", "pixels"]
    assert t["label"].tolist() == [4, 9]
    assert t["area_um2"] == pytest.approx([24 * 0.125, 10 * 0.125])
    assert t["pixels"].tolist() == [24, 10]
    assert t["equivalent_diameter_um"] == pytest.approx(
        [2 * math.sqrt(3.0 / math.pi), 2 * math.sqrt(1.25 / math.pi)]
    )
    assert t["centroid_y_um"] == pytest.approx([3.5 * 0.5, 12 * 0.5])
    assert t["centroid_x_um"] == pytest.approx([6.5 * 0.25, 20.5 * 0.25])
    assert t["mean_intensity"] == pytest.approx([11.5, 100.0])
    assert t["min_intensity"].tolist() == [0.0, 100.0] and t["max_intensity"].tolist() == [23.0, 100.0]


def test_without_spacing_sizes_are_pixel_counts() -> None:
    lab, _ = _two_rectangles()
    t = measure_objects(lab)
    assert list(t) == [
        "label",
        "area_px",
        "pixels",
        "equivalent_diameter_px",
        "centroid_y_px",
        "centroid_x_px",
    ]
    assert t["area_px"].tolist() == [24.0, 10.0]


def test_ellipsoid_volume_with_anisotropic_spacing() -> None:
    spacing = (2.0, 0.5, 0.5)
    a, b, c = 20.0, 12.0, 8.0  # semi-axes in mm along Z, Y, X
    z, y, x = np.ogrid[:30, :80, :80]
    inside = ((z * 2.0 - 30) / a) ** 2 + ((y * 0.5 - 20) / b) ** 2 + ((x * 0.5 - 20) / c) ** 2 <= 1
    t = measure_objects(inside.astype(np.uint8), spacing=spacing, unit="mm")
    volume = 4 / 3 * math.pi * a * b * c
    assert t["volume_mm3"][0] == pytest.approx(volume, rel=0.03)
    assert t["voxels"][0] * 2.0 * 0.5 * 0.5 == t["volume_mm3"][0]
    assert t["equivalent_diameter_mm"][0] == pytest.approx(2 * (a * b * c) ** (1 / 3), rel=0.01)
    assert [t[f"centroid_{k}_mm"][0] for k in "zyx"] == pytest.approx([30.0, 20.0, 20.0])


def _stack_with_reused_labels() -> np.ndarray:
    """Planes segmented one by one: label 1 in plane 0 and plane 1 overlap (connected in Z)."""
    stack = np.zeros((3, 10, 10), np.uint8)
    stack[0, 1:4, 1:4] = 1
    stack[1, 2:5, 2:5] = 1
    stack[1, 7:9, 7:9] = 2
    stack[2, 7:9, 0:2] = 1  # a different object that reuses value 1
    return stack


def test_stack_in_3d_per_plane_and_as_connected_components() -> None:
    stack = _stack_with_reused_labels()
    as_3d = measure_objects(stack, spacing=(3.0, 1.0, 1.0), unit="mm")
    assert as_3d["label"].tolist() == [1, 2] and as_3d["volume_mm3"].tolist() == [(9 + 9 + 4) * 3.0, 4 * 3.0]

    planes = measure_objects(stack, spacing=(3.0, 1.0, 1.0), unit="mm", per_plane=True)
    assert list(planes)[:3] == ["z", "label", "area_mm2"]
    assert planes["z"].tolist() == [0, 1, 1, 2] and planes["label"].tolist() == [1, 1, 2, 1]
    assert planes["area_mm2"].tolist() == [9.0, 9.0, 4.0, 4.0]
    assert planes["centroid_z_mm"].tolist() == [0.0, 3.0, 3.0, 6.0]

    comps = measure_objects(stack, spacing=(3.0, 1.0, 1.0), unit="mm", objects="components")
    assert comps["voxels"].tolist() == [18, 4, 4]  # planes 0-1 joined in Z; the reused 1 split off


def test_components_of_planes_are_not_joined_through_a_neighbouring_plane() -> None:
    stack = np.zeros((2, 6, 9), bool)
    stack[0, 2:4, 0:3] = stack[0, 2:4, 6:9] = True  # two blobs in plane 0...
    stack[1, 2:4, :] = True  # ...joined by one blob in plane 1
    planes = measure_objects(stack, per_plane=True, objects="auto")
    assert planes["z"].tolist() == [0, 0, 1] and planes["pixels"].tolist() == [6, 6, 18]
    assert measure_objects(stack, objects="auto")["voxels"].tolist() == [30]  # in 3-D: one object


def test_components_are_numbered_as_the_post_processing_numbers_instances(tmp_path) -> None:
    from scipy import ndimage

    mask = np.zeros((8, 8), np.uint8)
    mask[0:2, 0:2] = mask[2:4, 2:4] = 1  # touching only at a corner: two objects
    mask[5:8, 0:3] = 1
    numbered, n = ndimage.label(mask)  # what `madgnet predict --instances` does
    path = measure_to_csv(mask, None, tmp_path / "m.csv")  # objects="auto" for a binary mask
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert n == 3 and [int(r["pixels"]) for r in rows] == [np.count_nonzero(numbered == k) for k in (1, 2, 3)]
    assert measure_objects(mask)["label"].tolist() == [1]  # measure_objects: label values as they are


def test_time_axis_is_never_spatial() -> None:
    stack = _stack_with_reused_labels()
    t = measure_objects(stack, axes="TYX")
    assert t["t"].tolist() == [0, 1, 1, 2] and "area_px" in t


def test_rgb_image_gives_one_column_per_channel() -> None:
    lab, img = _two_rectangles()
    rgb = np.stack([img, 2 * img, 3 * img], axis=-1)
    t = measure_objects(lab, rgb)
    assert t["mean_intensity_c2"] == pytest.approx([34.5, 300.0])


def test_csv_round_trip_and_no_silent_overwrite(tmp_path) -> None:
    lab, img = _two_rectangles()
    path = measure_to_csv(lab, img, tmp_path / "m.csv", spacing=0.5, unit="mm")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == [4, 9]
    assert float(rows[0]["area_mm2"]) == 6.0 and float(rows[1]["mean_intensity"]) == 100.0
    with pytest.raises(FileExistsError, match=r"m\.csv"):
        measure_to_csv(lab, img, path)
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left behind


def test_features_are_accepted_by_a_napari_labels_layer() -> None:
    from napari.layers import Labels

    lab, _ = _two_rectangles()
    layer = Labels(lab, features=napari_features(measure_objects(lab)))
    assert layer.features["area_px"].tolist() == [24.0, 10.0]
    assert "area_px: 10" in layer.get_status((12, 20))["value"]
    with pytest.raises(UserError, match="repeat"):
        napari_features(measure_objects(_stack_with_reused_labels(), per_plane=True))


def test_bad_input_is_a_user_error() -> None:
    lab, _ = _two_rectangles()
    with pytest.raises(UserError, match=r"\(20, 31\).*\(20, 30\)"):
        measure_objects(lab, np.zeros((20, 31)))
    with pytest.raises(UserError, match="threshold"):
        measure_objects(lab.astype(float))
    with pytest.raises(UserError, match="one value per axis"):
        measure_objects(lab, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(UserError, match="axes"):
        measure_objects(lab, axes="ZYX")
