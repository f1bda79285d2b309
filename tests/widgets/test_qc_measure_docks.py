"""The Quality check and Measure docks in a real napari viewer (Xvfb), on 2-D and 3-D layers with
anisotropic pixel sizes; expected values worked out by hand from small arrays."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from napari.layers import Labels

PLUGIN = "napari-madgnet"


def _dock(viewer, name: str):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: widget.job is not None and not widget.job.running, timeout=30_000)
    qtbot.wait(20)


# ---------------------------------------------------------------------------------- quality check
def test_qc_2d_in_physical_units_with_an_error_layer(make_napari_viewer, qtbot, errors) -> None:
    viewer = make_napari_viewer()
    a = np.zeros((10, 16), np.uint8)
    b = np.zeros((10, 16), np.uint8)
    a[2:6, 2:10] = 1  # 4 x 8 = 32 px
    b[2:6, 4:12] = 1  # the same box 2 px to the right: 24 px shared
    scale = (2.0, 0.5)  # rows 2 mm apart, columns 0.5 mm
    viewer.add_labels(b, name="annotation", scale=scale, units=("mm", "mm"))
    mask = viewer.add_labels(a, name="model", scale=scale, translate=(5.0, -1.0), units=("mm", "mm"))
    qc = _dock(viewer, "Quality check")
    qc.mask_combo.set_layer(mask)
    qc.ref_combo.set_layer(viewer.layers["annotation"])
    assert qc.unit.text() == "mm"
    assert "2 x 0.5 mm" in qc.layer_note.text()
    qc.compare()
    _wait(qtbot, qc)
    assert errors == []
    o = qc.report.overall
    assert o["dice"] == pytest.approx(2 * 24 / 64)  # 0.75
    assert o["iou"] == pytest.approx(24 / 40)
    # The farthest boundary points are the 2-px shift along x: 2 x 0.5 mm = 1 mm (2 in pixels).
    assert o["hd95_mm"] == pytest.approx(1.0)
    assert qc.values["dice"].text() == "0.75"
    assert qc.values["hd95"].text() == "1 mm"
    assert qc.values["nsd"].text().endswith("(at 2 mm)")  # default tolerance: the largest spacing
    assert "1 matched, 0 missed, 0 false" in qc.values["objects"].text()
    assert qc.object_table.rowCount() == 1
    assert qc.object_table.cell_text(0, "status") == "matched"
    assert not qc.tabs.isTabEnabled(0)  # a 2-D image has no slices
    err = viewer.layers["model errors"]
    assert isinstance(err, Labels)
    assert np.count_nonzero(err.data == 1) == 8 and np.count_nonzero(err.data == 2) == 8
    assert np.all(err.data[2:6, 2:4] == 1) and np.all(err.data[2:6, 10:12] == 2)
    assert tuple(err.scale) == scale and tuple(err.translate) == (5.0, -1.0)
    assert list(err.features["error"]) == ["agree", "false positive", "false negative"]
    # A second comparison updates the same error layer.
    qc.compare()
    _wait(qtbot, qc)
    assert [layer.name for layer in viewer.layers].count("model errors") == 1


def test_qc_3d_anisotropic_per_slice_table_and_worst_slice(
    make_napari_viewer, qtbot, tmp_path, errors
) -> None:
    viewer = make_napari_viewer()
    a = np.zeros((4, 12, 12), np.uint16)
    b = np.zeros((4, 12, 12), np.uint16)
    a[0:3, 2:8, 2:8] = 1  # slices 0-2: 36 px each
    b[0:2, 2:8, 2:8] = 1  # slices 0-1 the same; slice 2 missing in the reference
    b[3, 2:4, 2:4] = 1  # slice 3: 4 px the mask misses
    scale, translate = (3.0, 0.5, 0.5), (10.0, 0.0, 0.0)
    ref = viewer.add_labels(b, name="reference", scale=scale, translate=translate)
    mask = viewer.add_labels(a, name="mask", scale=scale, translate=translate)
    qc = _dock(viewer, "Quality check")
    qc.mask_combo.set_layer(mask)
    qc.ref_combo.set_layer(ref)
    qc.unit.setText("um")
    qc.compare()
    _wait(qtbot, qc)
    assert errors == []
    o = qc.report.overall
    # |A| = 108, |B| = 76, shared 72: Dice 144 / 184, IoU 72 / 112.
    assert o["dice"] == pytest.approx(144 / 184)
    assert o["iou"] == pytest.approx(72 / 112)
    assert o["reference_volume_um3"] == pytest.approx(76 * 3.0 * 0.25)
    assert qc.tabs.isTabEnabled(0)
    assert qc.slice_table.rowCount() == 4
    assert qc.slice_table.header()[:3] == ["z", "dice", "iou"]
    assert [qc.slice_table.cell_text(r, "dice") for r in range(4)] == ["1", "1", "0", "0"]
    assert qc.report.worst_slice == (2,)  # 36 differing pixels, against 4 in slice 3
    viewer.dims.set_point(0, translate[0])
    qc.go_to_worst()
    assert viewer.dims.point[0] == pytest.approx(10.0 + 2 * 3.0)
    qc.slice_table.cellClicked.emit(3, 0)  # clicking a row goes to its slice
    assert viewer.dims.point[0] == pytest.approx(10.0 + 3 * 3.0)
    err = viewer.layers["mask errors"]
    assert tuple(err.scale) == scale and np.count_nonzero(err.data[2] == 1) == 36
    # Saving the tables: existing files only after asking.
    qc.choose_folder = lambda parent: str(tmp_path)
    written = qc.save_tables()
    assert sorted(p.name for p in written) == ["per_object.csv", "per_slice.csv", "summary.csv"]
    asked: list[str] = []
    qc.ask_overwrite = lambda what: asked.append(what) or False
    assert qc.save_tables() is None and len(asked) == 1


def test_qc_refuses_layers_of_different_shapes(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="a")
    viewer.add_labels(np.zeros((8, 9), np.uint8), name="b")
    qc = _dock(viewer, "Quality check")
    qc.mask_combo.set_layer(viewer.layers["a"])
    qc.ref_combo.set_layer(viewer.layers["b"])
    assert not qc.compare_button.isEnabled()
    assert qc.compare() is None
    assert "pick masks of one image" in errors[-1]


# ---------------------------------------------------------------------------------- measurements
def test_measure_2d_features_in_physical_units_and_csv(make_napari_viewer, qtbot, tmp_path, errors) -> None:
    viewer = make_napari_viewer()
    labels = np.zeros((10, 10), np.uint8)
    labels[1:5, 1:4] = 3  # 12 px
    labels[6:8, 6:8] = 7  # 4 px
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    scale = (0.5, 2.0)  # a pixel is 1 um^2
    viewer.add_image(image, name="img", scale=scale)
    layer = viewer.add_labels(labels, name="objects", scale=scale, units=("um", "um"))
    dock = _dock(viewer, "Measure")
    dock.labels_combo.set_layer(layer)
    assert dock.unit.text() == "um"
    dock.use_image.setChecked(True)
    dock.image_combo.set_layer(viewer.layers["img"])
    dock.measure()
    _wait(qtbot, dock)
    assert errors == []
    f = layer.features
    assert list(f["index"]) == [3, 7]
    assert list(f["area_um2"]) == pytest.approx([12.0, 4.0])
    assert list(f["pixels"]) == [12, 4]
    assert f["equivalent_diameter_um"][0] == pytest.approx(2 * math.sqrt(12 / math.pi))
    assert f["centroid_y_um"][0] == pytest.approx(2.5 * 0.5) and f["centroid_x_um"][0] == pytest.approx(
        2 * 2.0
    )
    assert f["mean_intensity"][1] == pytest.approx(np.mean([66, 67, 76, 77]))
    assert f["max_intensity"][0] == 43
    # napari shows the features of the object under the pointer
    status = layer.get_status(layer.data_to_world((2, 2)), world=True)
    assert "area_um2: 12" in str(status)
    assert dock.view.rowCount() == 2 and dock.view.cell_text(0, "area_um2") == "12"

    target = tmp_path / "objects.csv"
    dock.choose_csv_path = lambda parent, suggestion: str(target)
    assert dock.export_csv() == target
    rows = list(csv.DictReader(target.open()))
    assert [r["label"] for r in rows] == ["3", "7"] and float(rows[0]["area_um2"]) == 12.0
    # An existing file is replaced only when the user says so.
    target.write_text("keep me")
    dock.ask_overwrite = lambda path: False
    assert dock.export_csv() is None and target.read_text() == "keep me"
    dock.ask_overwrite = lambda path: True
    assert dock.export_csv() == target and target.read_text().startswith("label,")


def test_measure_3d_anisotropic_volume(make_napari_viewer, qtbot, errors) -> None:
    viewer = make_napari_viewer()
    labels = np.zeros((5, 8, 8), np.int32)
    labels[1:3, 2:5, 2:6] = 1  # 2 x 3 x 4 = 24 voxels
    layer = viewer.add_labels(labels, name="cells", scale=(2.0, 1.0, 1.0))
    dock = _dock(viewer, "Measure")
    dock.labels_combo.set_layer(layer)
    dock.unit.setText("mm")
    dock.measure()
    _wait(qtbot, dock)
    assert errors == []
    f = layer.features
    assert list(f["volume_mm3"]) == pytest.approx([48.0])
    assert list(f["voxels"]) == [24]
    assert f["equivalent_diameter_mm"][0] == pytest.approx((6 * 48 / math.pi) ** (1 / 3))
    assert f["centroid_z_mm"][0] == pytest.approx(1.5 * 2.0)
    assert "mm3" in dock.status.text()


def test_measure_with_an_image_of_another_size_is_a_clear_error(make_napari_viewer, qtbot, errors) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((6, 6), np.uint8), name="empty")
    dock = _dock(viewer, "Measure")
    dock.labels_combo.set_layer(layer)
    dock.use_image.setChecked(True)
    viewer.add_image(np.zeros((5, 5), np.float32), name="wrong size")
    dock.image_combo.set_layer(viewer.layers["wrong size"])
    dock.measure()
    _wait(qtbot, dock)
    assert "shape" in errors[-1] and "Traceback" not in errors[-1]


def test_the_new_docks_explain_every_control_and_scroll(make_napari_viewer, qtbot) -> None:
    from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QPushButton, QSpinBox

    viewer = make_napari_viewer()
    docks = [_dock(viewer, "Quality check"), _dock(viewer, "Measure"), _dock(viewer, "Fine-tune")]
    docks[2].annotate_next.set_expanded(True)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    docks.append(segment)
    for dock in docks:
        assert dock.scroll.widgetResizable()
        untipped = [
            type(w).__name__ + ":" + (getattr(w, "text", lambda: "")() or "")
            for w in dock.findChildren(
                (QComboBox, QSpinBox, QDoubleSpinBox, QCheckBox, QPushButton, QLineEdit)
            )
            if not isinstance(w.parent(), (QSpinBox, QDoubleSpinBox, QComboBox)) and not w.toolTip()
        ]
        assert untipped == [], (type(dock).__name__, untipped)
