"""The Fine-tune dock widget: train MADGNet on an image and its (possibly sparse) labels.

It only gathers settings and shows results: the training length (``TrainConfig.with_length``),
the output name and folder (``training.finetune.plan_output``), stopping with the best model so
far and registering the saved model all happen in the core's ``training.iter_finetune``, exactly
as for ``madgnet finetune``. The generator runs in a thread worker; each step updates a progress
bar with ETA and the live loss/Dice plot. The saved model is announced on the window's
``ModelHub`` (Segment widgets list it at once) and, by default, used to segment the image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_madgnet.model import BACKBONES
from napari_madgnet.paths import models_dir
from napari_madgnet.training import AugmentConfig, TrainConfig
from napari_madgnet.training.finetune import describe_result, plan_output
from napari_madgnet.widgets._common import (
    DeviceCombo,
    HubLink,
    LayerCombo,
    ModelCombo,
    describe_exception,
    notify_error,
    notify_info,
    notify_warning,
)
from napari_madgnet.widgets._layers import layer_axes, layer_data
from napari_madgnet.widgets._plot import TrainingPlot
from napari_madgnet.widgets._worker import Job

LABEL_MODES = {
    "objects (any value > 0)": "binary",
    "classes (1..K)": "multiclass",
    "scribbles (1 object, 2 background)": "scribble",
}
START_POINTS = (("ImageNet encoder", "imagenet"), ("random weights (scratch)", "scratch"))


def _finetune_job(token: Any, image: Any, labels: Any, cfg: TrainConfig, plan: Any, axes: str, name: str):
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
            )
        )
    finally:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def image_shape(layer: Any) -> tuple[int, ...]:
    shape = tuple(layer_data(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


class FinetuneWidget(QWidget):
    """Fine-tune a model on the chosen image and labels."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_outcome: Any = None  # the last TrainResult
        self._build()
        self.hub_link = HubLink(self, lambda _name: self.base_model.refresh())
        for combo in (self.image_combo, self.labels_combo):
            combo.currentIndexChanged.connect(self.check_shapes)
        self.image_combo.currentIndexChanged.connect(self._suggest_name)
        self.base_model.currentIndexChanged.connect(self._on_base_changed)
        self.check_shapes()
        self._suggest_name()
        self._on_base_changed()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        preset = TrainConfig.finetune()
        layout = QVBoxLayout(self)
        box, form = _group("Data")
        self.image_combo = LayerCombo(self.viewer, (Image,))
        self.labels_combo = LayerCombo(self.viewer, (Labels,))
        self.shape_note = QLabel()
        self.shape_note.setWordWrap(True)
        self.label_mode = QComboBox()
        self.label_mode.addItems(LABEL_MODES)
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow(self.shape_note)
        form.addRow("Labels are", self.label_mode)
        layout.addWidget(box)

        box, form = _group("Model")
        self.base_model = ModelCombo(extra=START_POINTS)
        self.encoder = QComboBox()
        self.encoder.addItems(BACKBONES)
        self.name_edit = QLineEdit()
        self.folder_edit = QLineEdit(str(models_dir()))
        browse = QPushButton("...")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(browse)
        self.device = DeviceCombo()
        form.addRow("Start from", self.base_model)
        form.addRow("Encoder", self.encoder)
        form.addRow("New name", self.name_edit)
        form.addRow("Folder", folder_row)
        form.addRow("Device", self.device)
        form.addRow(self.device.note)
        layout.addWidget(box)

        box, form = _group("Training")
        self.length_unit = QComboBox()
        self.length_unit.addItems(["steps", "epochs"])
        self.length = QSpinBox()
        self.length.setRange(1, 1_000_000)
        self.length.setValue(preset.epochs * (preset.steps_per_epoch or 1))
        length_row = QHBoxLayout()
        length_row.addWidget(self.length)
        length_row.addWidget(self.length_unit)
        self.validate_every = QSpinBox()
        self.validate_every.setRange(1, 100_000)
        self.validate_every.setValue(preset.steps_per_epoch or 10)
        self.validate_every.setToolTip("Steps per epoch: validate (and keep the best model) this often.")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(preset.lr)
        self._preset_lr = preset.lr  # follows the start point until the user picks a rate
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setValue(preset.batch_size)
        self.patch = QSpinBox()
        self.patch.setRange(32, 2048)
        self.patch.setSingleStep(32)
        self.patch.setValue(preset.patch_size)
        self.augment = QCheckBox("augmentation (flips, rotations, intensity)")
        self.augment.setChecked(True)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.0, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(preset.val_fraction)
        form.addRow("Train for", length_row)
        form.addRow("Validate every", self.validate_every)
        form.addRow("Learning rate", self.lr)
        form.addRow("Batch size", self.batch)
        form.addRow("Patch size (px)", self.patch)
        form.addRow("Validation share", self.val_fraction)
        form.addRow(self.augment)
        layout.addWidget(box)

        self.segment_after = QCheckBox("segment the image with the new model when done")
        self.segment_after.setChecked(True)
        layout.addWidget(self.segment_after)
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        layout.addWidget(self.progress_bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.plot = TrainingPlot()
        layout.addWidget(self.plot)
        layout.addStretch(1)

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
        self.shape_note.setStyleSheet("" if ok else "color: #e06060;")
        self.start_button.setEnabled(ok and not (self.job is not None and self.job.running))
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

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new model", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def showEvent(self, event: Any) -> None:
        self.hub_link.update()
        self.base_model.refresh()
        super().showEvent(event)

    def train_config(self) -> TrainConfig:
        """The core's fine-tuning preset with the dock's settings."""
        base = self.base_model.value()
        start: dict[str, Any] = {"backbone": self.encoder.currentText()}
        if base in ("imagenet", "scratch"):
            start["init"] = base
        elif base is not None:
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
            self.status.setText(str(exc))
            return None
        self.plot.clear()
        self.progress_bar.setValue(0)
        self._image_layer = image
        self.job = Job(
            _finetune_job,
            layer_data(image),
            labels.data,
            cfg,
            plan,
            layer_axes(image),
            image.name,
            description=f"Fine-tuning on {image.name}",
            on_progress=self._on_progress,
            on_done=self._on_done,
            on_cancelled=lambda: self.status.setText("Stopped before the first step: no model was saved."),
            on_error=self._on_error,
            on_finally=self._on_finally,
        )
        self.start_button.setEnabled(False)
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
        if d.get("warning"):
            notify_warning(report.message)
        if "step" not in d:
            self.status.setText(report.message)
            return
        dice = d.get("val", {}).get("dice") if isinstance(d.get("val"), dict) else None
        self.plot.add(int(d["step"]), d.get("loss"), dice)
        eta = d.get("eta_s")
        parts = [f"step {d['step']}/{d.get('total_steps', '?')}", f"loss {d.get('loss', float('nan')):.4f}"]
        if self.plot.dices:
            parts.append(f"val Dice {self.plot.dices[-1]:.3f}")
        if eta is not None:
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.status.setText(" · ".join(parts))

    def _on_error(self, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message)
        notify_error(f"Fine-tuning failed: {message}")

    def _on_finally(self) -> None:
        self.stop_button.setEnabled(False)
        self.check_shapes()
        self.plot.redraw()

    def _on_done(self, result: Any) -> None:
        self.last_outcome = result
        self.progress_bar.setValue(1000)
        self.status.setText(describe_result(result))
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


def _group(title: str) -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setContentsMargins(6, 4, 6, 4)
    return box, form
