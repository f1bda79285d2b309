"""The Fine-tune dock widget: train MADGNet on an image and its (possibly sparse) labels.

It only gathers settings and shows results: the training length (``TrainConfig.with_length``),
the output name and folder (``training.finetune.plan_output``), stopping with the best model so
far, registering the saved model, the Otsu floor and what stays on disk all happen in the core's
``training.iter_finetune``, exactly as for ``madgnet finetune``. The generator runs in a thread
worker; each step updates a progress bar, the time left and the live loss/Dice plot. The saved
model is announced on the window's ``ModelHub`` (Segment widgets list it at once) and, by default,
used to segment the image.

Before Start the dock says what the run will cost and whether it can start as set: the time, from
a short calibration (``training.estimate``, the CLI's ``--estimate``), and whether the ImageNet
starting weights are here or downloadable (``training.encoder_weights``; offline, random weights
become the default start, as in the CLI). With no model in the registry it offers the first-model
settings (``training.presets``, the CLI's ``--preset first-model``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QWidget

from napari_madgnet.model import BACKBONES
from napari_madgnet.paths import models_dir
from napari_madgnet.training import AugmentConfig, TrainConfig
from napari_madgnet.training.data import plane_names_text
from napari_madgnet.training.finetune import describe_result, heldout_report, plan_output
from napari_madgnet.widgets._annotate import add_annotate_next
from napari_madgnet.widgets._common import (
    HubLink,
    describe_exception,
    notify_error,
    notify_info,
    notify_warning,
)
from napari_madgnet.widgets._finetune_form import LABEL_MODES, FinetuneForm
from napari_madgnet.widgets._finetune_time import TimeEstimator
from napari_madgnet.widgets._layers import layer_axes, layer_data
from napari_madgnet.widgets._ui import LEVEL_COLOURS
from napari_madgnet.widgets._worker import Job, stop_with_owner


def _finetune_job(
    token: Any, image: Any, labels: Any, cfg: TrainConfig, plan: Any, axes: str, name: str, keep: str
):
    """Worker body: the core's fine-tuning generator (Stop keeps the best model so far).

    The layer data arrives as it is in the layer (numpy, dask, zarr): it is read here, in the
    worker thread, never on the GUI thread.
    """
    from napari_madgnet.training import iter_finetune

    try:
        return (
            yield from iter_finetune(
                image,
                labels,
                config=cfg,
                out=plan.model_path,
                name=plan.name,
                work_dir=plan.run_dir,
                axes=axes,
                cancel=token,
                image_name=name,
                keep_run=keep,
            )
        )
    finally:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _weights_job(token: Any, backbone: str):
    """Worker body: are the ImageNet weights here, or downloadable (one short request)?"""
    from napari_madgnet.jobs import Progress
    from napari_madgnet.training.encoder_weights import encoder_weights_status

    yield Progress(0.0, "Checking the ImageNet starting weights...")
    return encoder_weights_status(backbone)


def summary_line(result: Any, below_baseline: bool) -> str:
    """The status line after a run (the whole ``describe_result`` is in its details)."""
    how = {"finished": "Finished", "cancelled": "Stopped", "early_stopping": "Stopped early"}.get(
        result.stopped, str(result.stopped).capitalize()
    )
    name = f"'{result.model_name}'" if result.model_name else "the model"
    dice = result.best.get("dice")
    if dice is None:
        return f"{how}: {name} saved (nothing was validated)."
    if result.heldout_planes:  # a sparse stack: the numbers on the planes it did not train on
        advice = ": train longer or annotate more" if below_baseline else ""
        return f"{how}: {name} saved. {heldout_report(result)}{advice}."
    if below_baseline:
        return (
            f"{how}: {name} is not better than a threshold (Dice {dice:.3f}, Otsu "
            f"{result.baseline_dice:.3f}): train longer or annotate more."
        )
    otsu = f", Otsu threshold {result.baseline_dice:.3f}" if result.baseline_dice is not None else ""
    return f"{how}: {name} saved, validation Dice {dice:.3f}{otsu}."


def image_shape(layer: Any) -> tuple[int, ...]:
    shape = tuple(layer_data(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


class FinetuneWidget(FinetuneForm):
    """Fine-tune a model on the chosen image and labels."""

    #: Calibrate the time estimate this long after the settings stop changing (None: only
    #: measure once training runs).
    estimate_delay_ms: int | None = 800

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.weights_job: Job | None = None
        self.weights: Any = None  # encoder_weights.EncoderWeights, once checked
        self.last_outcome: Any = None  # the last TrainResult
        self.heldout: list[str] = []  # the stack planes the running job validates on
        self._start_chosen = False  # the user picked a start point: defaults no longer move it
        self._offered_first_model = False  # the first-model settings were filled in once
        self._build()
        self.annotate_next = add_annotate_next(self)  # "Annotate next" and continuing (_annotate.py)
        self.encoder.addItems(BACKBONES)
        self.fit_width()
        self.estimator = TimeEstimator(self.estimate_label, self.estimate_delay_ms, self)
        self._preset_lr = self.lr.value()  # follows the start point until the user picks a rate
        self.hub_link = HubLink(self, lambda _name: self._on_models_changed())
        self._settings_timer = QTimer(self)
        self._settings_timer.setSingleShot(True)
        self._settings_timer.setInterval(50)
        self._settings_timer.timeout.connect(self._settings_changed)
        for combo in (self.image_combo, self.labels_combo):
            combo.currentIndexChanged.connect(self.check_shapes)
        self.image_combo.currentIndexChanged.connect(self._suggest_name)
        self.base_model.currentIndexChanged.connect(self._on_base_changed)
        self.base_model.activated.connect(self._on_start_chosen)
        self.preset.activated.connect(lambda _i: self.apply_preset(self.preset.currentData()))
        self.start_button.clicked.connect(self.start)
        self.first_model_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        for signal in (
            self.image_combo.currentIndexChanged,
            self.labels_combo.currentIndexChanged,
            self.base_model.currentIndexChanged,
            self.encoder.currentIndexChanged,
            self.label_mode.currentIndexChanged,
            self.length.valueChanged,
            self.length_unit.currentIndexChanged,
            self.validate_every.valueChanged,
            self.batch.valueChanged,
            self.patch.valueChanged,
            self.val_fraction.valueChanged,
            self.device.currentIndexChanged,
        ):
            signal.connect(self._settings_timer.start)
        stop_with_owner(
            self, lambda: [self.job, self.weights_job, self.estimator.job, self.annotate_next.job]
        )
        self.check_shapes()
        self._suggest_name()
        self._on_models_changed()
        self._on_base_changed()
        self._check_weights()

    # ------------------------------------------------------------------ presets and start point
    def apply_preset(self, name: str) -> None:
        """Fill the settings from a core preset: "finetune" or "first-model" (``training.presets``)."""
        from napari_madgnet.training.presets import preset_config

        self.preset.setCurrentIndex(max(0, self.preset.findData(name)))
        cfg = preset_config(name)
        if name == "first-model":
            self.base_model.refresh(select=cfg.init)
        elif self.base_model.value() == "scratch" and not self._start_chosen:
            self.base_model.refresh(select=self._default_start())
        self.patch.setValue(cfg.patch_size)
        self.batch.setValue(cfg.batch_size)
        self.lr.setValue(cfg.lr)
        self._preset_lr = cfg.lr
        self.length_unit.setCurrentText("steps")
        self.length.setValue(cfg.planned_steps() or cfg.epochs * (cfg.steps_per_epoch or 1))
        self.validate_every.setValue(cfg.steps_per_epoch or self.validate_every.value())
        self._settings_changed()

    def use_first_model(self) -> None:
        """The empty state's suggestion: the first-model settings on the current layers."""
        self._offered_first_model = True
        self.apply_preset("first-model")
        self.first_model.setVisible(True)

    def _default_start(self) -> str:
        """ImageNet when its weights are here or downloadable (or not yet known), else scratch."""
        return "scratch" if self.weights is not None and not self.weights.usable else "imagenet"

    def _on_models_changed(self) -> None:
        """A model was saved or added: the start list follows; the empty state shows while none exists."""
        self.base_model.refresh()
        empty = self.base_model.registered == 0
        running = self.job is not None and self.job.running
        if empty and not running and not self._offered_first_model:
            self.use_first_model()  # once: later the user's settings stay as they are
        else:
            self.first_model.setVisible(empty and not running)

    def _on_start_chosen(self, *_: Any) -> None:
        self._start_chosen = True

    def _check_weights(self) -> None:
        """Ask (in a worker) whether an ImageNet start is possible here; the note says so."""
        if self.weights_job is not None and self.weights_job.running:
            return
        backbone = self.encoder.currentText()
        self.weights_job = Job(
            _weights_job,
            backbone,
            description="Checking the ImageNet starting weights",
            on_done=self._on_weights,
            on_error=lambda exc: None,  # an unknown encoder: the start note stays empty
        )
        self.weights_job.start()
        self._update_start_note()

    def _on_weights(self, status: Any) -> None:
        self.weights = status
        if not status.usable and self.base_model.value() == "imagenet" and not self._start_chosen:
            self.base_model.refresh(select="scratch")  # offline: random weights by default
        self._update_start_note()

    def _update_start_note(self) -> None:
        base = self.base_model.value()
        if base != "imagenet":
            text, level = "", "info"
        elif self.weights is None:
            text, level = "Checking whether the ImageNet starting weights are here...", "info"
        elif self.weights.usable:
            text, level = ("" if self.weights.cached else self.weights.note()), "info"
        else:
            text, level = self.weights.note(), "warning"
        if base == "scratch" and self.weights is not None and not self.weights.usable:
            text, level = (
                "Random weights: the ImageNet ones cannot be downloaded here (no internet?).",
                "info",
            )
        self.start_note.setText(text)
        self.start_note.setStyleSheet(LEVEL_COLOURS[level])
        self.start_note.setVisible(bool(text))

    # ------------------------------------------------------------------ settings
    def check_shapes(self, *_: Any) -> bool:
        """Say at once whether the labels fit the image; True when they do."""
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        ok = False
        if image is None or labels is None:
            text = "Pick an image and a Labels layer drawn on it (Layer > New Labels Layer, then paint)."
        else:
            i_shape, l_shape = image_shape(image), tuple(labels.data.shape)
            ok = i_shape == l_shape
            text = (
                f"Labels fit the image ({' x '.join(map(str, l_shape))})."
                if ok
                else f"Labels {l_shape} do not match image {i_shape}: pick the labels drawn on this image, "
                "or make a new Labels layer on it."
            )
        self.shape_note.setText(text)
        self.shape_note.setStyleSheet(LEVEL_COLOURS["info" if ok else "error"])
        running = self.job is not None and self.job.running
        self.start_button.setEnabled(ok and not running)
        self.first_model_button.setEnabled(ok and not running)
        return ok

    def _suggest_name(self, *_: Any) -> None:
        from napari_madgnet.registry import name_from, unique_name

        image = self.image_combo.layer()
        base = name_from(image.name if image is not None else "model") + "-finetuned"
        folder = Path(self.folder_edit.text() or models_dir()).expanduser()
        self.name_edit.setText(unique_name(base, folder))

    def _on_base_changed(self, *_: Any) -> None:
        base = self.base_model.value()
        untrained = base in (None, "imagenet", "scratch")
        self.encoder.setEnabled(untrained)
        # The core's preset: a gentle rate to continue a trained model, a larger one otherwise.
        preset_lr = TrainConfig.finetune(from_model=None if untrained else base).lr
        if math.isclose(self.lr.value(), self._preset_lr, rel_tol=1e-6):
            self.lr.setValue(preset_lr)
        self._preset_lr = preset_lr
        self._update_start_note()

    def showEvent(self, event: Any) -> None:
        self.hub_link.update()
        self._on_models_changed()
        super().showEvent(event)
        self._settings_timer.start()

    def event(self, event: Any) -> bool:
        # The dock was closed (napari takes the widget out of its dock): stop like Stop.
        if event.type() == QEvent.ParentChange and self.parent() is None:
            self.stop()
            self.estimator.cancel()
        return super().event(event)

    def _settings_changed(self) -> None:
        """Refresh the time estimate: at once from measured costs, else after a calibration."""
        if (self.job is not None and self.job.running) or not self.isVisible():
            return
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None or not self.check_shapes():
            self.estimator.cancel()
            self.estimate_label.setText("")
            return
        try:
            cfg = self.train_config(resolve=False)
        except Exception as exc:  # a setting the core refuses: it names it
            self.estimate_label.setText(str(exc))
            return
        key = (
            id(image),
            id(labels),
            cfg.backbone,
            cfg.patch_size,
            cfg.batch_size,
            cfg.device,
            cfg.val_fraction,
            cfg.label_mode,
        )
        self.estimator.schedule(
            key,
            lambda: (layer_data(image), labels.data, cfg, layer_axes(image), image.name),
            cfg,
        )

    def train_config(self, resolve: bool = True) -> TrainConfig:
        """The core's fine-tuning preset with the dock's settings. ``resolve=False`` does not
        look up a registry model (the estimate only needs its encoder, taken from the list)."""
        base = self.base_model.value()
        start: dict[str, Any] = {"backbone": self.encoder.currentText()}
        if base in ("imagenet", "scratch"):
            start["init"] = base
        elif base is not None and resolve:
            from napari_madgnet.registry import resolve_model

            entry = resolve_model(base)
            start = {"from_model": str(entry.path), "backbone": entry.encoder or self.encoder.currentText()}
        overrides: dict[str, Any] = dict(
            patch_size=self.patch.value(),
            batch_size=self.batch.value(),
            lr=self.lr.value(),
            val_fraction=self.val_fraction.value(),
            label_mode=LABEL_MODES[self.label_mode.currentText()],
            device=self.device.value(),
            **start,
        )
        if not self.augment.isChecked():
            overrides["augment"] = AugmentConfig(hflip=False, vflip=False)
        n = self.length.value()
        steps_mode = self.length_unit.currentText() == "steps"
        return TrainConfig.finetune(**overrides).with_length(
            steps=n if steps_mode else None,
            epochs=None if steps_mode else n,
            validate_every=self.validate_every.value(),
        )

    def output_plan(self) -> Any:
        """Where the model goes and its registry name (``training.finetune.plan_output``)."""
        folder = self.folder_edit.text().strip() or str(models_dir())
        return plan_output(name=self.name_edit.text().strip(), folder=folder)

    # ------------------------------------------------------------------ running
    def start(self) -> Job | None:
        """Check everything, then train in a worker; problems become notifications."""
        from napari_madgnet.errors import is_user_error

        if self.job is not None and self.job.running:
            notify_info("Training is already running; press Stop first.")
            return None
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        try:
            if image is None or labels is None or not self.check_shapes():
                raise ValueError(self.shape_note.text())
            cfg = self.train_config()
            plan = self.output_plan()
        except Exception as exc:
            if not (is_user_error(exc) or isinstance(exc, ValueError)):
                raise
            notify_error(f"Cannot start fine-tuning: {exc}")
            self.status.setText(str(exc), "error")
            return None
        self.plot.clear()
        self.plot.setVisible(False)
        self.progress_bar.setValue(0)
        self.heldout = []
        self._image_layer = image
        self.estimator.start_run(cfg)
        self.job = Job(
            _finetune_job,
            layer_data(image),
            labels.data,
            cfg,
            plan,
            layer_axes(image),
            image.name,
            "resume" if self.keep_state.isChecked() else "none",
            description=f"Fine-tuning on {image.name}",
            on_progress=self._on_progress,
            on_done=self._on_done,
            on_cancelled=lambda: self.status.setText("Stopped before the first step: no model was saved."),
            on_error=self._on_error,
            on_finally=self._on_finally,
        )
        self.start_button.setEnabled(False)
        self.first_model.setVisible(False)  # the suggestion is taken (it returns if no model results)
        self.stop_button.setEnabled(True)
        self.status.setText("Preparing the data and the network...")
        return self.job.start()

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.status.setText("Stopping after this step; the best model so far is kept...")
            self.job.cancel()

    def _on_progress(self, report: Any) -> None:
        d = report.details
        self.progress_bar.setValue(round(report.fraction * 1000))
        self.estimator.update_run(report)
        if d.get("warning"):
            notify_warning(report.message)
        if "heldout_planes" in d:
            self.heldout = list(d["heldout_planes"])
        if "step" not in d:
            self.status.setText(report.message)  # e.g. "step 40/400: validating..."
            return
        dice = d.get("val", {}).get("dice") if isinstance(d.get("val"), dict) else None
        self.plot.add(int(d["step"]), d.get("loss"), dice)
        if not self.plot.isVisible():
            self.plot.setVisible(True)
        parts = [f"step {d['step']}/{d.get('total_steps', '?')}", f"loss {d.get('loss', float('nan')):.4f}"]
        if self.plot.dices:
            on = f" on held-out {plane_names_text(self.heldout)}" if self.heldout else ""
            parts.append(f"val Dice {self.plot.dices[-1]:.3f}{on}")
        self.status.setText(" · ".join(parts))

    def _on_error(self, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message, "error")
        notify_error(f"Fine-tuning failed: {message}")

    def _on_finally(self) -> None:
        self.stop_button.setEnabled(False)
        self.estimator.end_run()
        self.check_shapes()
        self.plot.redraw()
        self._on_models_changed()

    def _on_done(self, result: Any) -> None:
        self.last_outcome = result
        self.progress_bar.setValue(1000)
        below = result.baseline_dice is not None and any("simple threshold" in w for w in result.warnings)
        self.status.setText(
            summary_line(result, below), "warning" if below else "ok", describe_result(result)
        )
        for warning in result.warnings:
            notify_warning(warning)
        if result.model_path is None:
            return
        name = result.model_name or str(result.model_path)
        self.hub_link.update().model_saved.emit(name)
        self._suggest_name()
        if self.segment_after.isChecked():
            self.segment_with(name)

    def segment_with(self, model_ref: str) -> Any:
        """Open (or reuse) the Segment dock and segment the trained image with ``model_ref``."""
        window = getattr(self.viewer, "window", None)
        if window is None or not hasattr(window, "add_plugin_dock_widget"):
            return None
        _, segment = window.add_plugin_dock_widget("napari-madgnet", "Segment")
        image = getattr(self, "_image_layer", None)
        return segment.run_with(model_ref, image if image in self.viewer.layers else None)
