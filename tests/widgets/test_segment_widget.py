"""The Segment dock in a real napari viewer (Xvfb): layers, re-thresholding, scopes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Labels

from napari_madgnet.inference.runner import Runner
from napari_madgnet.widgets._scope import viewer_camera

PLUGIN = "napari-madgnet"


def _segment(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    return widget


@pytest.fixture
def forward_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts batches the network runs on (the core's Runner wraps every forward pass)."""
    calls: list[int] = []
    original = Runner.__call__

    def counting(self, x):
        calls.append(int(x.shape[0]))
        return original(self, x)

    monkeypatch.setattr(Runner, "__call__", counting)
    return calls


def test_both_widgets_open_through_the_manifest(make_napari_viewer) -> None:
    from napari_madgnet.widgets import FinetuneWidget, SegmentWidget

    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    assert isinstance(segment, SegmentWidget)
    assert isinstance(finetune, FinetuneWidget)


def test_segment_writes_labels_with_shape_scale_and_provenance_then_rethresholds(
    make_napari_viewer, qtbot, tiny_model, wait_job, forward_calls, errors
) -> None:
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = viewer.add_image(
        rng.random((80, 96)).astype(np.float32), name="cells", scale=(0.5, 2.0), translate=(10.0, -4.0)
    )
    widget = _segment(viewer)
    assert widget.model_combo.value() == tiny_model
    widget.run()
    wait_job(widget)
    assert errors == []
    mask = viewer.layers["cells mask"]
    assert isinstance(mask, Labels)
    assert mask.data.shape == image.data.shape
    assert mask.data.dtype == np.asarray(widget.last.result.mask).dtype == np.uint8
    assert tuple(mask.scale) == (0.5, 2.0) and tuple(mask.translate) == (10.0, -4.0)
    prov = mask.metadata["madgnet_provenance"]
    assert prov["model"]["name"] == tiny_model and len(prov["model"]["sha256"]) == 64
    assert prov["resolved"]["device"] == "cpu" and prov["software"]["version"]
    assert prov["widget"]["image"] == "cells"

    # Re-threshold: the mask changes, the network does not run again.
    runs = len(forward_calls)
    assert runs > 0
    probs = np.asarray(widget.last.result.probabilities)
    before = mask.data.copy()
    widget.threshold.setValue(float(np.round(np.median(probs), 2)))
    qtbot.waitUntil(lambda: not np.array_equal(mask.data, before), timeout=10_000)
    assert len(forward_calls) == runs
    assert viewer.layers["cells mask"] is mask  # updated in place
    expected = (probs[0] > widget.threshold.value()).astype(np.uint8)
    np.testing.assert_array_equal(mask.data, expected)


def test_current_slice_of_a_stack_writes_only_that_slice(
    make_napari_viewer, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((3, 64, 64)).astype(np.float32), name="stack")
    viewer.dims.set_current_step(0, 1)
    widget = _segment(viewer)
    assert widget.axes_edit.text() == "ZYX"
    widget.scope.setCurrentText("current slice")
    widget.threshold.setValue(0.0)  # every pixel of the segmented slice becomes foreground
    widget.run()
    wait_job(widget)
    assert errors == []
    data = viewer.layers["stack mask"].data
    assert data.shape == (3, 64, 64)
    assert data[1].all() and not data[0].any() and not data[2].any()


def test_rgb_layer_gives_a_2d_mask(make_napari_viewer, tiny_model, wait_job, errors) -> None:
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(2).integers(0, 255, (64, 72, 3), dtype=np.uint8)
    layer = viewer.add_image(rgb, name="photo")
    assert layer.rgb
    widget = _segment(viewer)
    assert widget.axes_edit.text() == "YXC"
    widget.run()
    wait_job(widget)
    assert errors == []
    assert viewer.layers["photo mask"].data.shape == (64, 72)


def test_cancel_leaves_no_layer(make_napari_viewer, tiny_model, wait_job, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((4, 64, 64)).astype(np.float32), name="stack")
    widget = _segment(viewer)
    widget.scope.setCurrentText("whole stack")
    widget.run()
    widget.cancel()
    wait_job(widget)
    assert [layer.name for layer in viewer.layers] == ["stack"]
    assert "Cancelled" in widget.status.text()
    assert errors == []
    assert widget.run_button.isEnabled()


def test_edited_labels_are_not_overwritten_without_asking(
    make_napari_viewer, qtbot, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(4).random((64, 64)).astype(np.float32), name="img")
    widget = _segment(viewer)
    widget.threshold.setValue(0.0)
    widget.run()
    wait_job(widget)
    mask = viewer.layers["img mask"]
    mask.paint((5, 5), 7)  # the user corrects the result
    edited = mask.data.copy()
    questions: list[str] = []
    widget.ask_overwrite = lambda name: questions.append(name) or "new"
    widget.threshold.setValue(1.0)
    qtbot.waitUntil(lambda: "img mask [2]" in viewer.layers, timeout=10_000)
    assert questions == ["img mask"]
    np.testing.assert_array_equal(mask.data, edited)
    assert not viewer.layers["img mask [2]"].data.any()
    # "cancel" keeps everything as it is; no new layer either.
    widget.ask_overwrite = lambda name: "cancel"
    viewer.layers["img mask [2]"].paint((1, 1), 3)
    widget.run()
    wait_job(widget)
    assert len(viewer.layers) == 3
    assert errors == []


def test_errors_are_notifications_and_the_viewer_keeps_working(
    make_napari_viewer, tmp_path, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    widget = _segment(viewer)
    assert widget.run() is None  # no image layer
    assert "No image layer" in errors[-1] and "File > Open" in errors[-1]

    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint at all")
    widget.model_combo.choose_file = lambda parent: str(broken)
    widget.model_combo.setCurrentIndex(widget.model_combo.count() - 1)
    widget.model_combo.activated.emit(widget.model_combo.count() - 1)
    assert widget.model_combo.value() == str(broken)
    widget.run()
    wait_job(widget)
    assert "broken.pth" in errors[-1] and "Pick another model" in errors[-1]
    assert "img mask" not in viewer.layers and widget.run_button.isEnabled()

    widget.axes_edit.setText("ZYX")  # wrong axes for a 2-D layer
    assert widget.run() is None
    assert "Axes 'ZYX'" in errors[-1]
    viewer.add_points([[1, 1]])  # the viewer still works
    assert len(viewer.layers) == 2


def test_part_in_view_segments_only_the_visible_rectangle(
    make_napari_viewer, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(5).random((256, 256)).astype(np.float32), name="big")
    h, w = viewer.canvas.size
    camera = viewer_camera(viewer)
    camera.center = (128.0, 128.0)
    camera.zoom = 2.0 * max(h, w) / 128  # about 64 x 64 image pixels in view
    widget = _segment(viewer)
    widget.scope.setCurrentText("part in view")
    widget.threshold.setValue(0.0)
    widget.run()
    wait_job(widget)
    assert errors == []
    data = viewer.layers["big mask"].data
    assert data.shape == (256, 256)
    ys, xs = np.nonzero(data)
    rows, cols = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert data.sum() == rows * cols  # one filled rectangle
    assert 32 <= rows < 256 and 32 <= cols < 256
    assert ys.min() <= 128 <= ys.max() and xs.min() <= 128 <= xs.max()  # around the view's centre
