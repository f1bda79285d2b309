"""The Fine-tune dock in a real napari viewer (Xvfb): shape checks, training, Stop, hand-over."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-madgnet"


def _finetune(viewer, **settings):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    widget.patch.setValue(64)
    widget.batch.setValue(2)
    widget.augment.setChecked(False)
    widget.length_unit.setCurrentText("steps")
    for name, value in settings.items():
        getattr(widget, name).setValue(value)
    return widget


@pytest.fixture
def nuclei(make_napari_viewer):
    """A viewer with the bundled sample, cropped to 192 x 192 to keep 2 CPU cores quick."""
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(image[:192, :192], name="nuclei")
    viewer.add_labels(labels[:192, :192], name="nuclei annotation")
    return viewer


def test_mismatched_labels_are_flagged_when_picked(make_napari_viewer, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    viewer.add_labels(np.zeros((32, 64), np.uint8), name="other")
    widget = _finetune(viewer)
    assert "do not match" in widget.shape_note.text()
    assert not widget.start_button.isEnabled()
    assert widget.start() is None
    assert "do not match" in errors[-1] and "pick the labels drawn on this image" in errors[-1]


def test_finetune_stops_keeps_the_best_model_and_lists_it(
    nuclei, qtbot, tiny_model, wait_job, errors
) -> None:
    from napari_madgnet.paths import models_dir

    viewer = nuclei
    widget = _finetune(viewer, length=40, validate_every=2)
    widget.base_model.refresh(select=tiny_model)
    widget.segment_after.setChecked(False)
    widget.name_edit.setText("nuclei-ft-stop")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert segment.model_combo.findData("nuclei-ft-stop") < 0
    steps: list[int] = []
    job = widget.start()
    assert job is not None
    job.worker.yielded.connect(lambda p: steps.append(p.details.get("step", 0)))
    qtbot.waitUntil(lambda: max(steps, default=0) >= 3, timeout=120_000)
    widget.stop()
    wait_job(widget)
    assert errors == []
    assert max(steps) <= 5, "Stop must end training within one step"
    outcome = widget.last_outcome
    assert outcome is not None and outcome.stopped == "cancelled"
    assert "Stopped after" in widget.status.text() and "nuclei-ft-stop" in widget.status.text()
    assert outcome.model_path == models_dir() / "nuclei-ft-stop.pt" and outcome.model_path.is_file()
    assert segment.model_combo.findData("nuclei-ft-stop") >= 0  # listed at once
    assert widget.plot.steps and widget.plot.dices  # the live plot got loss and Dice


def test_sparse_stack_trains_then_segments_with_the_new_model(
    make_napari_viewer, tiny_model, wait_job, errors
) -> None:
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    stack = np.stack([image[:96, :96], image[96:192, :96], image[192:288, :96]])
    sparse = np.zeros(stack.shape, np.uint16)
    sparse[0], sparse[2] = labels[:96, :96], labels[192:288, :96]  # the middle slice is not annotated
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    viewer.add_labels(sparse, name="sparse")
    widget = _finetune(viewer, length=2, validate_every=2)
    widget.base_model.refresh(select="scratch")
    widget.encoder.setCurrentText("resnet50")
    widget.name_edit.setText("stack-ft")
    widget.start()
    wait_job(widget)
    assert errors == []
    assert widget.last_outcome.stopped == "finished" and widget.last_outcome.model_path.is_file()
    from napari_madgnet.model import read_checkpoint_info

    trained_on = read_checkpoint_info(widget.last_outcome.model_path)["provenance"]["trained_on"]
    assert "2 annotated plane(s)" in trained_on
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert segment.model_combo.value() == "stack-ft"
    wait_job(segment)
    assert viewer.layers["stack mask"].data.shape == stack.shape
    assert errors == []


def test_sparse_stack_dock_says_which_planes_validate_and_reports_both_numbers(
    make_napari_viewer, wait_job, errors
) -> None:
    """3 annotated planes of 4: the middle annotated one (Z 1) validates, the dock says so while
    training and reports "Dice on held-out planes (Z 1): X, a threshold gets Y" at the end."""
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    tiles = [(0, 0), (64, 0), (128, 0), (192, 0)]
    stack = np.stack([image[y : y + 64, x : x + 64] for y, x in tiles])
    sparse = np.stack([labels[y : y + 64, x : x + 64] for y, x in tiles])
    sparse[2] = 0  # Z 2 is not annotated
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    viewer.add_labels(sparse, name="sparse")
    widget = _finetune(viewer, length=1, validate_every=1)
    widget.base_model.refresh(select="scratch")
    widget.encoder.setCurrentText("resnet50")
    widget.segment_after.setChecked(False)
    shown: list[str] = []  # every status line the dock showed, in order
    set_text = widget.status.setText
    widget.status.setText = lambda text, *a, **k: (shown.append(text), set_text(text, *a, **k))
    assert widget.start() is not None
    wait_job(widget, timeout=300_000)  # generous: a shared machine can be 5 x slower
    assert errors == []
    assert any("holds out 1 of the 3 annotated planes: Z 1 (0-based" in t for t in shown)
    outcome = widget.last_outcome
    assert widget.heldout == ["Z 1"] and outcome.heldout_planes == ["Z 1"]
    report = (
        f"Dice on held-out planes (Z 1): {outcome.heldout_dice:.3f}, "
        f"a threshold gets {outcome.heldout_threshold_dice:.3f}"
    )
    assert report in widget.status.label.text()  # the status line itself
    assert report in widget.status.text()  # and its details (describe_result)
    # a step's line while training (a fast run's last reports can arrive after its end, when the
    # dock no longer shows them, so the line is checked with a report of its own)
    from napari_madgnet.jobs import Progress

    widget._on_progress(Progress(0.5, "", {"step": 1, "total_steps": 2, "loss": 0.5, "val": {"dice": 0.25}}))
    assert "val Dice 0.250 on held-out Z 1" in widget.status.text()


def test_learning_rate_follows_the_start_point_until_the_user_sets_one(
    make_napari_viewer, tiny_model
) -> None:
    """Continuing a trained model defaults to the core's gentle rate; a user's own rate is kept."""
    from napari_madgnet.training import TrainConfig

    widget = _finetune(make_napari_viewer())
    widget.base_model.refresh(select="scratch")
    assert widget.lr.value() == pytest.approx(TrainConfig.finetune().lr)
    widget.base_model.refresh(select=tiny_model)
    assert widget.lr.value() == pytest.approx(TrainConfig.finetune(from_model=tiny_model).lr)
    widget.lr.setValue(3e-4)
    widget.base_model.refresh(select="scratch")
    assert widget.lr.value() == pytest.approx(3e-4)


def test_dask_layers_are_read_in_the_worker_and_train(
    make_napari_viewer, wait_job, errors, monkeypatch
) -> None:
    """The layer's data reaches the worker as it is in the layer (no np.asarray on the GUI thread)."""
    import dask.array as da

    from napari_madgnet.sample_data import load_nuclei
    from napari_madgnet.widgets import _finetune as finetune_mod

    image, labels = load_nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(image[:128, :96], chunks=32), name="lazy")
    viewer.add_labels(labels[:128, :96], name="lazy labels")
    seen = []
    real = finetune_mod._finetune_job

    def spy(token, image, *args):
        seen.append(type(image).__name__)
        return (yield from real(token, image, *args))

    monkeypatch.setattr(finetune_mod, "_finetune_job", spy)
    widget = _finetune(viewer, length=1, validate_every=1)
    widget.base_model.refresh(select="scratch")
    widget.encoder.setCurrentText("resnet50")
    widget.segment_after.setChecked(False)
    widget.start()
    wait_job(widget)
    assert errors == [] and seen == ["Array"]  # a dask Array, read by the core in the worker
    assert widget.last_outcome.stopped == "finished" and widget.last_outcome.model_path.is_file()


def test_gc_freeze_nests_across_jobs() -> None:
    import gc

    from napari_madgnet.widgets._worker import _GcFreeze

    freeze = _GcFreeze()
    gc.unfreeze()
    freeze.enter()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    freeze.enter()  # "segment when done" starts before the first job ends
    freeze.exit()
    assert gc.get_freeze_count() == frozen  # still frozen for the job that runs on
    freeze.exit()
    assert gc.get_freeze_count() == 0
    freeze.exit()  # an extra exit is harmless
    assert freeze.depth == 0
