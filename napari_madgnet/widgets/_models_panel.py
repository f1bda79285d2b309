"""Getting a model into the Segment dock without the command line.

Two actions do what ``madgnet models import-official DIR`` and ``madgnet models add FILE`` do,
through the same core functions (``registry.import_official``, ``registry.register_model``), in a
worker thread: "Import released models..." (a folder picker) and "Add a model file..." (a file
picker). ``NoModelPanel`` is the dock's empty state: it says where the authors publish their
weights and which file goes where, and offers to train a first model instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_madgnet.jobs import Progress

#: The authors' repository; its README links the released weights (we do not link the archive).
RELEASE_REPOSITORY = "https://github.com/Inha-CVAI/MADGNet"
RELEASE_LAYOUT = "model_weights/<Dataset>/model_weights/model_weight(EPOCH 200).pth.tar"

_LINK = (
    f'<a style="color: #7fb5ff" href="{RELEASE_REPOSITORY}">{RELEASE_REPOSITORY.removeprefix("https://")}</a>'
)
WHERE_THE_WEIGHTS_ARE = (
    "The MADGNet authors released models trained on polyps (endoscopy), skin lesions, breast "
    f"ultrasound, COVID-19 CT and nuclei: the README of their repository, {_LINK}, links the "
    "download. Unpack it and pick the folder that holds <i>model_weights</i> (each data set's file "
    f"is <i>{RELEASE_LAYOUT.replace('<', '&lt;').replace('>', '&gt;')}</i>)."
)


def import_job(token: Any, folder: str):
    """Worker body of "Import released models...": ``registry.import_official`` (index cards
    pointing to the release files; nothing is copied). Returns the registered names."""
    from napari_madgnet.registry import import_official

    yield Progress(0.0, f"Importing the released models from {folder}...")
    return [entry.name for entry in import_official(folder, overwrite=False)]


def add_file_job(token: Any, path: str):
    """Worker body of "Add a model file...": ``registry.register_model`` under a free name made
    from the file name (an index card; the file stays where it is). Returns [the name]."""
    from napari_madgnet.registry import name_from, register_model, unique_name

    yield Progress(0.0, f"Reading {Path(path).name}...")
    stem = Path(path).name
    for suffix in (".pth.tar", ".pth", ".pt", ".tar", ".ckpt"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return [register_model(path, unique_name(name_from(stem))).name]


def choose_release_folder(parent: QWidget) -> str | None:
    folder = QFileDialog.getExistingDirectory(
        parent, "Folder of the unpacked MADGNet release (holds model_weights)"
    )
    return folder or None


def choose_model_file(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(
        parent, "A MADGNet checkpoint", "", "Checkpoints (*.pth *.pt *.tar *.ckpt);;All files (*)"
    )
    return path or None


class NoModelPanel(QGroupBox):
    """The Segment dock's empty state: three ways to a first model, with the buttons for each."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("No model yet", parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)

        def text(html: str) -> QLabel:
            label = QLabel(html)
            label.setWordWrap(True)
            label.setOpenExternalLinks(True)
            layout.addWidget(label)
            return label

        text(
            "MADGNet segments with a trained model. Train a first one on an image you have annotated: "
            "a few minutes on a laptop (the nuclei sample comes with its annotation)."
        )
        self.train_button = QPushButton("Train a first model...")
        self.train_button.setToolTip("Open the Fine-tune dock with settings for a first model")
        layout.addWidget(self.train_button)
        self.where = text(WHERE_THE_WEIGHTS_ARE)
        self.import_button = QPushButton("Import released models...")
        self.import_button.setToolTip(
            "Pick the unpacked release folder; its models are listed here by name "
            "(as `madgnet models import-official DIR` does; nothing is copied)"
        )
        layout.addWidget(self.import_button)
        text("Or use a checkpoint file you have (.pt, .pth, .pth.tar).")
        self.add_button = QPushButton("Add a model file...")
        self.add_button.setToolTip("List a checkpoint file by name (as `madgnet models add FILE` does)")
        layout.addWidget(self.add_button)
