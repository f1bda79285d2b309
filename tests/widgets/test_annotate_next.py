"""The heads in the Segment and Fine-tune docks (real napari under Xvfb, the tiny model): the
uncertainty layer, "Objects by", "Annotate next" moving the viewer, and continuing the current
model with its optimiser state."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Shapes

from napari_madgnet.widgets._scope import viewer_camera

PLUGIN = "napari-madgnet"


def _docks(viewer):
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    finetune.annotate_next.set_expanded(True)
    return segment, finetune


def _wait_suggest(qtbot, section) -> None:
    qtbot.waitUntil(lambda: section.job is not None and not section.job.running, timeout=30_000)
    qtbot.wait(20)


def test_segment_adds_an_uncertainty_layer_on_the_image_grid(
    make_napari_viewer, qtbot, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    image = viewer.add_image(
        np.random.default_rng(0).random((64, 80)).astype(np.float32),
        name="cells",
        scale=(0.5, 2.0),
        translate=(10.0, -4.0),
    )
    segment, _ = _docks(viewer)
    segment.heads.uncertainty.setChecked(True)
    segment.heads.tta.setCurrentIndex(segment.heads.tta.findData(2))
    config = segment.inference_config("YX")
    assert config.uncertainty is True and config.tta == 2
    got: list[object] = []
    segment.segmented.connect(got.append)
    segment.run()
    wait_job(segment)
    assert errors == []
    layer = viewer.layers["cells uncertainty"]
    assert isinstance(layer, Image)
    assert layer.data.shape == image.data.shape and layer.data.dtype == np.float32
    assert tuple(layer.scale) == (0.5, 2.0) and tuple(layer.translate) == (10.0, -4.0)
    assert layer.data.min() >= 0.0 and layer.data.max() <= 1.0 and layer.data.max() > 0
    assert layer.colormap.name == "inferno" and tuple(layer.contrast_limits) == (0.0, 1.0)
    np.testing.assert_allclose(layer.data, np.asarray(got[0].uncertainty)[0], atol=1e-6)
    assert got[0].provenance["config"]["tta"] == 2
    # Without the option no uncertainty is computed (the default path stays as it was).
    segment.heads.uncertainty.setChecked(False)
    assert segment.inference_config("YX").uncertainty is False


def test_objects_by_sets_the_instance_method(make_napari_viewer, tiny_model) -> None:
    viewer = make_napari_viewer()
    segment, _ = _docks(viewer)
    assert segment.postprocess_config().instances is False
    segment.instances.setChecked(True)
    assert segment.postprocess_config().instances is True  # the model's default
    segment.heads.instance_method.setCurrentIndex(segment.heads.instance_method.findData("components"))
    assert segment.postprocess_config().instances == "components"
    segment.heads.instance_method.setCurrentIndex(segment.heads.instance_method.findData("watershed"))
    assert segment.postprocess_config().instances == "watershed"


def test_annotate_next_lists_regions_and_moves_the_camera(
    make_napari_viewer, qtbot, tiny_model, errors
) -> None:
    viewer = make_napari_viewer()
    unc = np.zeros((128, 192), np.float32)
    unc[64:128, 0:64] = 0.9  # the most uncertain square
    unc[0:64, 128:192] = 0.5  # the second
    scale, translate = (0.5, 2.0), (100.0, 0.0)
    viewer.add_image(np.zeros((128, 192), np.float32), name="img", scale=scale, translate=translate)
    viewer.add_image(unc, name="img uncertainty", scale=scale, translate=translate)
    _, finetune = _docks(viewer)
    section = finetune.annotate_next
    assert section.uncertainty_combo.layer().name == "img uncertainty"
    section.count.setValue(3)
    section.suggest()
    _wait_suggest(qtbot, section)
    assert errors == []
    assert [s.box for s in section.suggestions[:2]] == [(64, 0, 128, 64), (0, 128, 64, 192)]
    assert section.table.rowCount() == 3
    assert section.table.item(0, 2).text() == "y 64-128, x 0-64"
    assert section.table.item(0, 3).text() == "0.900"
    shapes = viewer.layers["img annotate next"]
    assert isinstance(shapes, Shapes) and len(shapes.data) == 3
    assert tuple(shapes.scale) == scale and list(shapes.features["rank"]) == [1, 2, 3]
    np.testing.assert_allclose(shapes.data[0].min(axis=0), [63.5, -0.5])
    # Clicking the first row centres the camera on that square, zoomed to it.
    camera = viewer_camera(viewer)
    camera.zoom = 0.01
    section.table.cellClicked.emit(0, 1)
    assert tuple(camera.center[-2:]) == pytest.approx((100.0 + 95.5 * 0.5, 31.5 * 2.0))
    assert camera.zoom > 0.5
    section.table.cellClicked.emit(1, 1)
    assert tuple(camera.center[-2:]) == pytest.approx((100.0 + 31.5 * 0.5, 159.5 * 2.0))


def test_annotate_next_in_a_stack_moves_the_slider(make_napari_viewer, qtbot, tiny_model, errors) -> None:
    viewer = make_napari_viewer()
    unc = np.zeros((5, 32, 32), np.float32)
    unc[3] = 0.8
    unc[1, :8] = 0.6
    viewer.add_image(unc, name="stack uncertainty", scale=(4.0, 1.0, 1.0), translate=(-2.0, 0.0, 0.0))
    _, finetune = _docks(viewer)
    section = finetune.annotate_next
    section.suggest()
    _wait_suggest(qtbot, section)
    assert errors == []
    assert [s.index for s in section.suggestions[:2]] == [(3,), (1,)]
    assert section.table.item(0, 2).text() == "z 3"
    viewer.dims.set_point(0, -2.0)
    section.table.cellClicked.emit(0, 1)
    assert viewer.dims.point[0] == pytest.approx(-2.0 + 3 * 4.0)
    section.table.cellClicked.emit(1, 1)
    assert viewer.dims.point[0] == pytest.approx(-2.0 + 1 * 4.0)


@pytest.mark.slow  # two rounds of loading, training and segmenting: about 40 s on 2 cores
def test_continue_from_the_current_model_restores_the_optimiser_state_in_round_two(
    make_napari_viewer, qtbot, tiny_model, wait_job, errors
) -> None:
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    image = rng.random((128, 128)).astype(np.float32)
    viewer.add_image(image, name="img")
    segment, finetune = _docks(viewer)
    segment.ask_overwrite = lambda name: "overwrite"  # the corrected mask is replaced on re-segmenting
    section = finetune.annotate_next
    section.steps.setValue(2)
    finetune.base_model.refresh(select=tiny_model)
    assert "Current model: 'tiny' (chosen under 'Start from')" in section.model_note.text()

    # No uncertainty layer yet: Suggest segments the image with it first, then suggests.
    section.suggest()
    qtbot.waitUntil(lambda: len(section.suggestions) == 4, timeout=90_000)
    assert errors == []
    assert "img uncertainty" in viewer.layers and "img mask" in viewer.layers
    assert finetune.labels_combo.layer() is viewer.layers["img mask"]
    assert "'tiny'" in section.model_note.text()

    # "Correct" the two most uncertain regions (draw a disc) and tick them.
    mask = viewer.layers["img mask"]
    first = section.suggestions[:2]
    for s in first:
        y0, x0, y1, x1 = s.box
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask.data[y0:y1, x0:x1] = ((yy - (y0 + y1) / 2) ** 2 + (xx - (x0 + x1) / 2) ** 2 < 15**2).astype(
            mask.data.dtype
        )
    section.set_ticked([0, 1])
    job = section.continue_training()
    assert job is finetune.job
    wait_job(finetune, timeout=180_000)
    assert errors == []
    result = section.last_result
    assert result.continued["optimizer_state"] == "fresh"  # the tiny model has no run folder
    assert "optimiser started fresh" in section.status.text()
    assert result.steps == 2 and result.model_path.is_file()
    assert section.done == first

    # The image is segmented again with the new model, and the next regions are suggested.
    qtbot.waitUntil(lambda: section.rounds == 1 and len(section.suggestions) == 2, timeout=90_000)
    qtbot.waitUntil(lambda: not segment.job.running, timeout=30_000)
    assert not any(s.overlaps(d) for s in section.suggestions for d in first)
    assert result.model_name in section.model_note.text()
    section.set_ticked([0])
    section.continue_training()
    wait_job(finetune, timeout=180_000)
    assert errors == []
    second = section.last_result
    assert second.continued["optimizer_state"] == "restored"
    assert "optimiser state restored" in section.status.text()
    assert section.rounds == 2 and len(section.done) == 3


def test_continue_needs_ticked_regions(make_napari_viewer, qtbot, tiny_model, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="img mask")
    _, finetune = _docks(viewer)
    finetune.base_model.refresh(select=tiny_model)
    assert finetune.annotate_next.continue_training() is None
    assert "Tick the suggestions you corrected" in errors[-1]
