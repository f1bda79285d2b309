"""The Fine-tune dock widget: train MADGNet on an image and its (possibly sparse) labels.

The controls start from the core's ``TrainConfig.finetune()`` preset; ``training.iter_finetune``
runs in a thread worker; each step updates a progress bar with ETA and the live loss/Dice plot.
Stop ends within one step and keeps the best validated model so far. The saved model is announced
on the window's ``ModelHub`` (Segment widgets list it at once) and, by default, used to segment
the image.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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

from napari_madgnet.io import atomic_path
from napari_madgnet.paths import models_dir
from napari_madgnet.training import AugmentConfig, TrainConfig
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
from napari_madgnet.widgets._plot import TrainingPlot
from napari_madgnet.widgets._worker import Job

#: The registry's rule for model names (letters, digits, ".", "_", "-").
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LABEL_MODES = {
    "objects (any value > 0)": "binary",
    "classes (1..K)": "multiclass",
    "scribbles (1 object, 2 background)": "scribble",
}
ENCODERS = ("resnest50", "res2net50_v1b_26w_4s", "resnet50")
START_POINTS = (("ImageNet encoder", "imagenet"), ("random weights (scratch)", "scratch"))


@dataclass
class Outcome:
    """What the worker hands back: how training ended and where the model is (None: not saved)."""

    stopped: str
    model_path: Path | None
    best: dict[str, Any] = field(default_factory=dict)
    steps: int = 0


def _keep_best(out: Path) -> Path | None:
    """After Stop: the run folder's best validated model becomes the requested model file."""
    best = out.with_name(out.stem + "_run") / "best.pt"
    if not best.is_file():
        return None
    with atomic_path(out, overwrite=True) as tmp:
        shutil.copyfile(best, tmp)
    return out


def _finetune_job(token: Any, image: Any, labels: Any, cfg: TrainConfig, out: Path, channel_axis, name):
    """Worker body: the core's fine-tuning generator; Stop keeps the best model so far."""
    from napari_madgnet.jobs import Cancelled
    from napari_madgnet.training import iter_finetune

    try:
        result = yield from iter_finetune(
            image, labels, config=cfg, out=out, channel_axis=channel_axis, cancel=token, name=name
        )
    except Cancelled:
        return Outcome("stopped", _keep_best(out))
    finally:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    outcome = Outcome(result.stopped, result.model_path, dict(result.best), len(result.history))
    del result  # the network: the saved file is what counts, and the GPU gets its memory back
    return outcome


def image_shape(layer: Any) -> tuple[int, ...]:
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


class FinetuneWidget(QWidget):
    """Fine-tune a model on the chosen image and labels."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_outcome: Outcome | None = None
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
        self.encoder.addItems(ENCODERS)
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
        image = self.image_combo.layer()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", image.name if image is not None else "model").strip("-.")
        base = f"{stem or 'model'}-finetuned"
        folder = Path(self.folder_edit.text() or models_dir())
        name, i = base, 2
        while (folder / f"{name}.pt").exists():
            name, i = f"{base}-{i}", i + 1
        self.name_edit.setText(name)

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
        every = self.validate_every.value()
        steps_mode = self.length_unit.currentText() == "steps"
        n = self.length.value()
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
            steps_per_epoch=every,
            epochs=math.ceil(n / every) if steps_mode else n,
            max_steps=n if steps_mode else None,
            val_fraction=self.val_fraction.value(),
            label_mode=LABEL_MODES[self.label_mode.currentText()],
            device=self.device.value(),
            **start,
        )
        if not self.augment.isChecked():
            overrides["augment"] = AugmentConfig(hflip=False, vflip=False)
        return TrainConfig.finetune(**overrides)

    def output_path(self) -> Path:
        name = self.name_edit.text().strip()
        if not _NAME.match(name):
            raise ValueError(
                f"Model name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit."
            )
        folder = Path(self.folder_edit.text().strip() or models_dir()).expanduser()
        out = folder / f"{name}.pt"
        if out.exists():
            raise ValueError(f"{out} exists already: choose another name (or folder) for the new model.")
        return out

    # ------------------------------------------------------------------ running
    def start(self) -> Job | None:
        """Check everything, then train in a worker; problems become notifications."""
        if self.job is not None and self.job.running:
            notify_info("Training is already running; press Stop first.")
            return None
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        try:
            if image is None or labels is None or not self.check_shapes():
                raise ValueError(self.shape_note.text())
            cfg = self.train_config()
            out = self.output_path()
        except ValueError as exc:
            notify_error(f"Cannot start fine-tuning: {exc}")
            self.status.setText(str(exc))
            return None
        data = image.data[0] if image.multiscale else image.data
        channel_axis = len(data.shape) - 1 if image.rgb else None
        self.plot.clear()
        self.progress_bar.setValue(0)
        self._image_layer = image
        self.job = Job(
            _finetune_job,
            np.asarray(data),
            np.asarray(labels.data),
            cfg,
            out,
            channel_axis,
            image.name,
            description=f"Fine-tuning on {image.name}",
            on_progress=self._on_progress,
            on_done=self._on_done,
            on_cancelled=lambda: self.status.setText("Stopped before any model was saved."),
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

    def _on_done(self, outcome: Outcome) -> None:
        self.last_outcome = outcome
        if outcome.model_path is None:
            self.status.setText("Stopped before the first validation: no model was saved.")
            notify_warning(
                "Fine-tuning stopped before the first validation, so there was no best model to keep; "
                "train longer or validate more often."
            )
            return
        name = self._register(Path(outcome.model_path))
        self.progress_bar.setValue(1000)
        dice = outcome.best.get("dice")
        how = {"stopped": "Stopped", "early_stopping": "Stopped early (no better Dice)"}.get(
            outcome.stopped, "Finished"
        )
        self.status.setText(
            f"{how}: saved '{name}'"
            + (f" (best validation Dice {dice:.3f})" if dice is not None else "")
            + f" to {outcome.model_path}."
        )
        self.hub_link.update().model_saved.emit(name)
        self._suggest_name()
        if self.segment_after.isChecked():
            self.segment_with(name)

    def _register(self, path: Path) -> str:
        """The model's registry name; a model saved outside the registry folder gets an index card."""
        from napari_madgnet.registry import register_model

        if path.parent.resolve() == models_dir().resolve():
            return path.stem
        try:
            return register_model(path, path.stem).name
        except (ValueError, FileExistsError) as exc:
            notify_warning(f"The model was saved to {path} but not listed in the registry: {exc}")
            return str(path)

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
