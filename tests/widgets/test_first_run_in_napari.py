"""A newcomer's first ten minutes in napari (issue 13), under Xvfb, with no model and no network.

Everything goes through what the docks offer: the sample opens the Fine-tune dock with the
first-model suggestion, the suggestion trains and segments; the Segment dock's empty state
imports a folder laid out like the authors' release and adds a model file.
"""

from __future__ import annotations

import pytest
import torch

from napari_madgnet.widgets._finetune import FinetuneWidget

PLUGIN = "napari-madgnet"


def _dock(viewer, cls):
    found = viewer.window._qt_window.findChildren(cls)
    return found[0] if found else None


@pytest.mark.slow  # the whole 512 x 512 sample with the default encoder: a minute or more on 2 cores
def test_the_sample_leads_to_a_first_model_and_a_segmentation(
    make_napari_viewer, qtbot, wait_job, errors, auto_estimate, _own_models_folder
) -> None:
    viewer = make_napari_viewer(show=True)  # the dock estimates the time while it is visible
    viewer.open_sample(PLUGIN, "nuclei_dsb2018")
    qtbot.waitUntil(lambda: _dock(viewer, FinetuneWidget) is not None, timeout=10_000)
    finetune = _dock(viewer, FinetuneWidget)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")

    # Empty states: the Segment dock says how to get a model, the Fine-tune dock offers one.
    assert segment.no_model.isVisibleTo(segment) and segment.model_combo.value() is None
    assert "github.com/Inha-CVAI/MADGNet" in segment.no_model.where.text()
    assert "model_weight(EPOCH 200).pth.tar" in segment.no_model.where.text()
    assert finetune.first_model.isVisibleTo(finetune)
    assert finetune.image_combo.layer().name == "nuclei"
    assert finetune.labels_combo.layer().name == "nuclei annotation"
    assert finetune.base_model.value() == "scratch"  # the first model needs no download
    assert (finetune.patch.value(), finetune.batch.value(), finetune.length.value()) == (64, 4, 400)

    # The time is measured before Start and follows the length at once.
    qtbot.waitUntil(lambda: finetune.estimator.current is not None, timeout=600_000)
    assert finetune.estimate_label.text().endswith("on this computer")
    assert "per step x 400" in finetune.estimate_label.toolTip()
    calibration = finetune.estimator.job
    finetune.length.setValue(4)  # reduced for the test
    finetune.validate_every.setValue(2)
    qtbot.waitUntil(lambda: finetune.estimator.current.steps == 4, timeout=5_000)
    assert finetune.estimator.job is calibration  # no second calibration for another length

    shown: list[str] = []
    real_set = finetune.status.setText
    finetune.status.setText = lambda text, level="info", details=None: shown.append(text) or real_set(
        text, level, details
    )
    finetune.first_model_button.click()
    assert finetune.job is not None
    wait_job(finetune, timeout=900_000)
    assert errors == [], errors
    assert any("validating..." in text for text in shown)  # the status says so while it validates
    result = finetune.last_outcome
    assert result.stopped == "finished" and result.model_path.is_file()
    assert finetune.estimate_label.text().startswith("Took ")
    # the model lands in the Segment dock, which segments the image with it
    qtbot.waitUntil(lambda: segment.job is not None, timeout=10_000)
    wait_job(segment, timeout=300_000)
    assert viewer.layers["nuclei mask"].data.shape == (512, 512)
    assert segment.status.text().startswith("Done in")
    assert not segment.no_model.isVisibleTo(segment) and not finetune.first_model.isVisibleTo(finetune)


def test_released_models_and_model_files_are_added_from_the_segment_dock(
    make_napari_viewer, tmp_path, qtbot, wait_job, errors, _tiny_checkpoint
) -> None:
    from napari_madgnet.model import MADGNet
    from napari_madgnet.sample_data import load_nuclei

    # A folder laid out like the authors' release, holding a small checkpoint in their format.
    weights = tmp_path / "MADGNet" / "model_weights" / "DSB2018" / "model_weights"
    weights.mkdir(parents=True)
    torch.manual_seed(0)
    state = MADGNet("resnet50").state_dict()
    torch.save({"model_state_dict": state, "current_epoch": 200}, weights / "model_weight(EPOCH 200).pth.tar")

    image, _ = load_nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(image[:96, :96], name="nuclei")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert segment.no_model.isVisibleTo(segment)
    segment.choose_folder = lambda parent: str(tmp_path / "MADGNet")
    segment.no_model.import_button.click()
    qtbot.waitUntil(lambda: not segment.models_job.running, timeout=60_000)
    assert errors == [], errors
    assert segment.model_combo.value() == "madgnet-nuclei-dsb2018"
    assert not segment.no_model.isVisibleTo(segment)
    assert "Added 1 model(s): madgnet-nuclei-dsb2018" in segment.status.text()
    segment.run()
    wait_job(segment)
    assert errors == [] and viewer.layers["nuclei mask"].data.shape == (96, 96)

    # "Add a model file..." from the + menu: listed by a name made from the file name
    segment.choose_model_file = lambda parent: str(_tiny_checkpoint)
    actions = {a.text(): a for a in segment.add_models.menu().actions()}
    assert set(actions) == {"Import released models...", "Add a model file..."}
    actions["Add a model file..."].trigger()
    qtbot.waitUntil(lambda: not segment.models_job.running, timeout=60_000)
    assert errors == [] and segment.model_combo.value() == "tiny"
    from napari_madgnet.registry import list_models

    assert {e.name for e in list_models(read=False)} == {"madgnet-nuclei-dsb2018", "tiny"}
