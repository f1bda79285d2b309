"""What the docks show and when (issues 13 and 16): the final status shows last, the offline
start, the time before Start, the Otsu floor, what stays on disk, closing while a job runs, and
a layout that fits a laptop screen."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from napari_madgnet.jobs import Progress

PLUGIN = "napari-madgnet"


@pytest.fixture
def crop(make_napari_viewer):
    """A shown viewer (docks estimate only while visible) with a 160 x 128 crop of the nuclei
    sample and its labels."""
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image[:160, :128], name="nuclei")
    viewer.add_labels(labels[:160, :128], name="nuclei annotation")
    return viewer


def _small(widget, steps: int = 2, every: int = 2) -> None:
    widget.base_model.refresh(select="scratch")
    widget.encoder.setCurrentText("resnet50")
    widget.patch.setValue(64)
    widget.batch.setValue(2)
    widget.augment.setChecked(False)
    widget.length_unit.setCurrentText("steps")
    widget.length.setValue(steps)
    widget.validate_every.setValue(every)
    widget.segment_after.setChecked(False)


# ------------------------------------------------------------------------------ final status
def test_the_final_status_shows_last_even_when_a_report_is_handled_late(qtbot, monkeypatch) -> None:
    """napari's progress bar processes events while it updates, so the job's end can be handled
    inside the handler of its last report; the report must not then overwrite the end."""
    from napari_madgnet.widgets import _worker

    shown: list[str] = []

    def body(token):
        yield Progress(0.9, "Post-processing")
        return "Done in 1.0 s"

    job = _worker.Job(
        body,
        description="test",
        on_progress=lambda p: shown.append(p.message),
        on_done=shown.append,
    )
    real_update = _worker.napari_progress.update

    def update_that_processes_events(self, n=1):
        # the generator returns meanwhile; the bar's event processing handles the job's end
        deadline = time.monotonic() + 10
        while not job.ended and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.005)
        return real_update(self, n)

    monkeypatch.setattr(_worker.napari_progress, "update", update_that_processes_events)
    job.start()
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert job.ended and shown == ["Done in 1.0 s"]  # the late "Post-processing" was not shown


def test_segment_runs_end_on_their_summary(make_napari_viewer, tiny_model, wait_job, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 64, 64)).astype(np.float32), name="stack")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.scope.setCurrentText("whole stack")
    for _ in range(3):
        widget.run()
        wait_job(widget)
        QApplication.processEvents()
        assert widget.status.text().startswith("Done in"), widget.status.text()
    assert errors == []


# ---------------------------------------------------------------------------- offline start
def test_offline_the_start_point_becomes_random_weights_and_says_why(crop, qtbot, tiny_model) -> None:
    _, widget = crop.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    assert not widget.first_model.isVisibleTo(widget)  # a model exists: the usual preset
    qtbot.waitUntil(lambda: widget.weights is not None, timeout=20_000)
    assert widget.base_model.value() == "scratch"
    assert "cannot be downloaded" in widget.start_note.text()
    widget.base_model.refresh(select="imagenet")  # asking for it anyway: the reason stays beside it
    assert "not on this computer and cannot be downloaded now" in widget.start_note.text()
    assert len(widget.start_note.text()) < 260


def test_online_the_imagenet_start_stays_and_says_it_downloads_once(
    crop, qtbot, tiny_model, server, publish, monkeypatch
) -> None:
    from napari_madgnet.model import pretrained
    from napari_madgnet.model.pretrained import WeightFile

    base, root = server
    name = publish(root, "resnest50", b"weights")
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "resnest50", WeightFile(name, base))
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", base)
    _, widget = crop.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    qtbot.waitUntil(lambda: widget.weights is not None, timeout=20_000)
    assert widget.weights.downloadable and widget.base_model.value() == "imagenet"
    assert "downloaded once" in widget.start_note.text()


# ------------------------------------------------- estimate, Otsu floor and disk, in one run each
def test_time_is_shown_before_start_then_measured_and_the_result_says_floor_and_disk(
    crop, qtbot, wait_job, errors, auto_estimate, monkeypatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr("napari_madgnet.widgets._finetune.notify_warning", warnings.append)
    _, widget = crop.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    _small(widget, steps=3, every=3)
    widget.name_edit.setText("first")
    qtbot.waitUntil(lambda: widget.estimator.current is not None, timeout=120_000)
    before = widget.estimator.current
    assert before.source == "calibration" and before.steps == 3 and before.validations == 1
    assert (
        widget.estimate_label.text().startswith("About ")
        and "on this computer" in widget.estimate_label.text()
    )
    widget.length.setValue(30)
    qtbot.waitUntil(lambda: widget.estimator.current.steps == 30, timeout=5_000)
    assert widget.estimator.current.total_s > before.total_s
    widget.length.setValue(3)

    lefts: list[str] = []
    widget.estimate_label.setText = lambda text, real=widget.estimate_label.setText: (
        lefts.append(text) or real(text)
    )
    widget.start()
    wait_job(widget)
    assert errors == []
    assert any(text.endswith(" left") for text in lefts) and lefts[-1].startswith("Took ")
    result = widget.last_outcome
    # three steps from random weights do not beat a threshold: the dock says so plainly
    assert result.baseline_dice is not None and result.best["dice"] <= result.baseline_dice
    assert widget.status.level == "warning" and "Otsu threshold scores" in widget.status.text()
    assert any("not better than a simple threshold" in w for w in warnings)
    # kept on disk: the model and the log; the message says how much, where
    run = result.model_path.with_name("first_run")
    assert sorted(p.name for p in run.iterdir()) == ["run.json", "train_log.jsonl"]  # how it ended, the log
    assert "On disk: the model, " in widget.status.text() and str(run) in widget.status.text()

    widget.keep_state.setChecked(True)  # "keep the training state to continue later"
    widget.name_edit.setText("kept")
    widget.start()
    wait_job(widget)
    kept = widget.last_outcome.model_path.with_name("kept_run")
    assert {"last_state.pt", "best.pt", "train_log.jsonl"} <= {p.name for p in kept.iterdir()}


# ----------------------------------------------------------------------- closing while running
def test_closing_the_window_while_training_keeps_the_model_and_touches_nothing_deleted(
    crop, qtbot, capfd
) -> None:
    from napari_madgnet.paths import models_dir

    _, widget = crop.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    _small(widget, steps=500, every=1)
    widget.name_edit.setText("closed")
    steps: list[int] = []
    job = widget.start()
    job.worker.yielded.connect(lambda p: steps.append(p.details.get("step", 0)))
    qtbot.waitUntil(lambda: max(steps, default=0) >= 1, timeout=120_000)
    crop.close()
    assert job.done.is_set()  # closing waited for the job: nothing runs on
    assert job.detached
    for _ in range(20):  # the worker's last signals arrive after the window is gone
        QApplication.processEvents()
    assert (models_dir() / "closed.pt").is_file()  # what Stop would keep
    assert (models_dir() / "closed_run" / "last_state.pt").is_file()
    err = capfd.readouterr().err
    assert "has been deleted" not in err and "Traceback" not in err


def test_closing_the_segment_dock_cancels_its_run(make_napari_viewer, qtbot, tiny_model, errors) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((6, 96, 96)).astype(np.float32), name="stack")
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.scope.setCurrentText("whole stack")
    job = widget.run()
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    assert job.token.cancelled and "stack mask" not in viewer.layers and errors == []


# -------------------------------------------------------------------------------------- layout
def test_both_docks_fit_a_laptop_screen_and_explain_every_control(crop, qtbot, tiny_model) -> None:
    window = crop.window._qt_window
    window.resize(1366, 768)
    _, segment = crop.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, finetune = crop.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    qtbot.wait(200)
    for dock in (segment, finetune):
        assert dock.scroll.widgetResizable()
        assert dock.minimumSizeHint().height() < 768 // 3  # the rest scrolls
        untipped = [
            w
            for w in dock.findChildren(
                (QComboBox, QSpinBox, QDoubleSpinBox, QCheckBox, QPushButton, QLineEdit)
            )
            if not isinstance(w.parent(), (QSpinBox, QDoubleSpinBox, QComboBox)) and not w.toolTip()
        ]
        assert untipped == [], [
            type(w).__name__ + ":" + (getattr(w, "text", lambda: "")() or "") for w in untipped
        ]
    assert finetune.advanced.toggle is not None and not finetune.advanced.content.isVisible()
    assert not finetune.plot.isVisible()  # no empty axes before the first point
    long = "Finished after 200 step(s): kept the best validated model " + "and more words " * 40
    finetune.status.setText(long)
    qtbot.wait(50)
    line = finetune.status.label
    assert line.text() == long and line.is_elided() and line.toolTip() == long
    assert line.height() < 2 * line.fontMetrics().height() + 6  # one line, not a pile of rows
    assert finetune.status.more.isVisible()
    finetune.status.more.click()
    assert finetune.status.details.isVisible() and finetune.status.details.text() == long
