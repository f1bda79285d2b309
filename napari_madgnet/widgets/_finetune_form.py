"""The Fine-tune dock's controls: built here, with a plain-words tooltip on each; no behaviour.

The everyday settings are visible (image, labels, start point, name, length, Start); the rarely
needed ones (encoder, folder, validation, learning rate, batch and patch size, augmentation, what
the run folder keeps) sit under a folded "Advanced" section. ``_finetune.FinetuneWidget`` gives
them behaviour.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_madgnet.paths import models_dir
from napari_madgnet.training import TrainConfig
from napari_madgnet.widgets._common import DeviceCombo, LayerCombo, ModelCombo
from napari_madgnet.widgets._plot import TrainingPlot
from napari_madgnet.widgets._ui import ScrollDock, Section, StatusLine, note_label

LABEL_MODES = {
    "objects (any value > 0)": "binary",
    "classes (1..K)": "multiclass",
    "scribbles (1 object, 2 background)": "scribble",
}
START_POINTS = (("ImageNet encoder", "imagenet"), ("random weights (scratch)", "scratch"))
#: The dock's presets, as ``madgnet finetune --preset`` names them.
PRESET_CHOICES = (("fine-tuning", "finetune"), ("first model (quick on a CPU)", "first-model"))


class FinetuneForm(ScrollDock):
    """The controls of the Fine-tune dock (see the module docstring)."""

    viewer: Any

    def _build(self) -> None:
        preset = TrainConfig.finetune()
        layout = self._make_body()

        box = Section("Data")
        self.image_combo = LayerCombo(self.viewer, (Image,))
        self.labels_combo = LayerCombo(self.viewer, (Labels,))
        self.shape_note = note_label("info")
        self.label_mode = QComboBox()
        self.label_mode.addItems(LABEL_MODES)
        box.add_row("Image", self.image_combo, "The image to learn from (2-D, a stack or a time series).")
        box.add_row(
            "Labels",
            self.labels_combo,
            "Your annotation of that image: a Labels layer of the same size. In a stack, only slices "
            "with labels are used, so a few annotated slices are enough.",
        )
        box.add_row(None, self.shape_note)
        box.add_row(
            "Labels are",
            self.label_mode,
            "objects: every painted value counts as object; classes: 1, 2, 3... are different kinds; "
            "scribbles: 1 marks object, 2 marks background, the rest is not annotated.",
        )
        layout.addWidget(box)

        self.first_model = QGroupBox("No model yet? Train a first one")
        first = QVBoxLayout(self.first_model)
        first.setContentsMargins(6, 4, 6, 4)
        self.first_model_text = QLabel(
            "On this image and its labels, from random weights (nothing to download): 400 steps on "
            "64 px patches. The time it takes on this computer shows under 'Train for'."
        )
        self.first_model_text.setWordWrap(True)
        self.first_model_button = QPushButton("Train a first model")
        self.first_model_button.setToolTip("Start training with the first-model settings shown below")
        first.addWidget(self.first_model_text)
        first.addWidget(self.first_model_button)
        self.first_model.setVisible(False)
        layout.addWidget(self.first_model)

        box = Section("Model")
        self.base_model = ModelCombo(extra=START_POINTS)
        self.start_note = note_label("info")
        self.name_edit = QLineEdit()
        self.device = DeviceCombo()
        box.add_row(
            "Start from",
            self.base_model,
            "ImageNet encoder: weights pre-trained on photographs (downloaded once, about 100 MB); "
            "random weights: nothing to download, fine for a first model; or one of your models, "
            "to improve it with more annotation.",
        )
        box.add_row(None, self.start_note)
        box.add_row("New name", self.name_edit, "The name the new model is listed under (Segment dock, CLI).")
        box.add_row("Device", self.device)
        box.add_row(None, self.device.note)
        layout.addWidget(box)

        box = Section("Training")
        self.preset = QComboBox()
        for text, value in PRESET_CHOICES:
            self.preset.addItem(text, value)
        self.length_unit = QComboBox()
        self.length_unit.addItems(["steps", "epochs"])
        self.length = QSpinBox()
        self.length.setRange(1, 1_000_000)
        self.length.setValue(preset.epochs * (preset.steps_per_epoch or 1))
        length_row = QHBoxLayout()
        length_row.addWidget(self.length)
        length_row.addWidget(self.length_unit)
        self.estimate_label = note_label("info")
        self.segment_after = QCheckBox("segment the image when done")
        self.segment_after.setChecked(True)
        box.add_row(
            "Settings",
            self.preset,
            "fine-tuning: the usual settings; first model: quick settings for a first model on a laptop "
            "CPU (random weights, small patches). Choosing one fills in the settings.",
        )
        box.add_row(
            "Train for",
            length_row,
            "How long to train: steps (one batch of patches each) or epochs (one check on the held-out "
            "part each). Longer usually means better, up to a point.",
        )
        box.add_row(None, self.estimate_label)
        box.add_row(None, self.segment_after, "When training ends, segment the image in the Segment dock.")
        layout.addWidget(box)

        box = Section("Advanced", foldable=True)
        self.advanced = box
        self.encoder = QComboBox()
        self.folder_edit = QLineEdit(str(models_dir()))
        browse = QPushButton("...")
        browse.setFixedWidth(28)
        browse.setToolTip("Choose the folder")
        browse.clicked.connect(self._browse_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(browse)
        self.validate_every = QSpinBox()
        self.validate_every.setRange(1, 100_000)
        self.validate_every.setValue(preset.steps_per_epoch or 10)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(preset.lr)
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setValue(preset.batch_size)
        self.patch = QSpinBox()
        self.patch.setRange(32, 2048)
        self.patch.setSingleStep(32)
        self.patch.setValue(preset.patch_size)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.0, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(preset.val_fraction)
        self.augment = QCheckBox("augmentation (flips, rotations, intensity)")
        self.augment.setChecked(True)
        self.keep_state = QCheckBox("keep the training state to continue later")
        box.add_row("Encoder", self.encoder, "The network's first half (when not starting from your model).")
        box.add_row("Folder", folder_row, "Where the new model file is saved (default: the models folder).")
        box.add_row(
            "Check every",
            self.validate_every,
            "Steps between checks on the held-out part; the best-checked model is the one kept.",
        )
        box.add_row(
            "Learning rate",
            self.lr,
            "How big each learning step is. Follows the start point: larger from random or ImageNet "
            "weights, gentler when improving a trained model.",
        )
        box.add_row(
            "Batch size", self.batch, "Patches per step. More is steadier but slower and needs more memory."
        )
        box.add_row(
            "Patch size (px)",
            self.patch,
            "Side of the square pieces cut from the image to train on; a few object widths is good.",
        )
        box.add_row(
            "Held out",
            self.val_fraction,
            "Share of the annotated pixels kept aside to check the model while it trains (never "
            "trained on): 0.2 is a fifth; 0 trains on everything without checks.",
        )
        box.add_row(
            None, self.augment, "Vary the patches (flips, rotations, brightness) so the model generalises."
        )
        box.add_row(
            None,
            self.keep_state,
            "Keep the optimiser state (about four times the model's size) in the run folder after a "
            "successful run, to continue it later. Off: only the model and the log stay.",
        )
        layout.addWidget(box)

        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train a new model with these settings")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and keep the best model so far")
        self.stop_button.setEnabled(False)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(8)
        layout.addWidget(self.progress_bar)
        self.status = StatusLine()
        layout.addWidget(self.status)
        self.plot = TrainingPlot()
        self.plot.setVisible(False)  # no empty axes: it shows with the first point
        layout.addWidget(self.plot)
        layout.addStretch(1)
        self.fit_width()

    def _browse_folder(self) -> None:  # pragma: no cover - a dialog
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Folder for the new model", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
