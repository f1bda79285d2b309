"""The Measure dock: per-object properties of a Labels layer, in its physical units, and a CSV.

Thin on purpose: the layer, an optional intensity image and the layer's pixel size go to
``measure.measure_objects`` (``skimage.measure.regionprops_table`` with ``spacing``) in a thread
worker; the table goes into the layer's ``features`` (napari shows them when the pointer is over
an object, and in its features table) and into a table here; "Export CSV..." writes it with
``tables.write_csv`` (atomic, an existing file replaced only when the user says so). Each label
value is one object, as napari's features need (number objects first, e.g. the Segment dock's
instance labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLineEdit, QMessageBox, QPushButton, QWidget

from napari_madgnet.widgets._common import LayerCombo, describe_exception, notify_error, notify_info
from napari_madgnet.widgets._layers import layer_data
from napari_madgnet.widgets._physical import layer_spacing, layer_unit
from napari_madgnet.widgets._table_view import TableView
from napari_madgnet.widgets._ui import ScrollDock, Section, StatusLine
from napari_madgnet.widgets._worker import Job, stop_with_owner


def _measure_job(token: Any, labels: Any, image: Any, spacing: Any, unit: str | None):
    """Worker body: read the layers (they may be lazy) and measure every object."""
    from napari_madgnet.jobs import Progress
    from napari_madgnet.measure import measure_objects, napari_features

    yield Progress(0.0, "Reading the layers")
    lab = np.asarray(labels)
    img = None if image is None else np.asarray(image)
    yield Progress(0.3, "Measuring the objects")
    table = measure_objects(lab, img, spacing=spacing, unit=unit, objects="labels")
    return table, napari_features(table)


class MeasureWidget(ScrollDock):
    """Measure the objects of a Labels layer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.table: dict[str, np.ndarray] | None = None
        self.measured_layer: Any = None
        self.choose_csv_path = _choose_csv_path  # the save dialog (tests put answers here)
        self.ask_overwrite = self._ask_overwrite
        self._build()
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self._on_labels_changed()
        stop_with_owner(self, lambda: [self.job])

    def _build(self) -> None:
        layout = self._make_body()
        box = Section("Measure")
        self.labels_combo = LayerCombo(self.viewer, (Labels,))
        self.use_image = QCheckBox("intensity of")
        self.image_combo = LayerCombo(self.viewer, (Image,))
        image_row = QHBoxLayout()
        image_row.addWidget(self.use_image)
        image_row.addWidget(self.image_combo, 1)
        self.unit = QLineEdit()
        self.unit.setPlaceholderText("px")
        box.add_row("Labels", self.labels_combo, "The objects to measure: each label value is one object.")
        for widget in (self.use_image, self.image_combo):
            widget.setToolTip(
                "Also the mean, smallest and largest value of this image inside each object (same size as "
                "the labels)."
            )
        box.add_row(None, image_row)
        box.add_row(
            "Unit",
            self.unit,
            "The unit of the labels layer's pixel size (its scale), e.g. mm or um; sizes are reported in it.",
        )
        layout.addWidget(box)
        row = QHBoxLayout()
        self.measure_button = QPushButton("Measure")
        self.measure_button.setToolTip(
            "Area or volume, equivalent diameter, centroid (and intensities) of every object"
        )
        self.measure_button.clicked.connect(self.measure)
        self.export_button = QPushButton("Export CSV...")
        self.export_button.setToolTip("Save the table as a CSV file")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_csv)
        row.addWidget(self.measure_button)
        row.addWidget(self.export_button)
        layout.addLayout(row)
        self.status = StatusLine()
        layout.addWidget(self.status)
        self.view = TableView(max_height=320)
        self.view.setVisible(False)
        layout.addWidget(self.view)
        layout.addStretch(1)
        self.fit_width()

    def _on_labels_changed(self, *_: Any) -> None:
        layer = self.labels_combo.layer()
        self.unit.setText(layer_unit(layer) if layer is not None else "")
        self.measure_button.setEnabled(layer is not None)

    # ------------------------------------------------------------------ running
    def measure(self) -> Job | None:
        """Measure in a worker; the result goes into the layer's features and the table."""
        if self.job is not None and self.job.running:
            notify_info("Measuring already; wait for it.")
            return None
        layer = self.labels_combo.layer()
        if layer is None:
            notify_error("No Labels layer to measure: segment an image or open a label image first.")
            return None
        image = self.image_combo.layer() if self.use_image.isChecked() else None
        if self.use_image.isChecked() and image is None:
            notify_error("No image layer for the intensities: open one, or untick 'intensity of'.")
            return None
        spacing = layer_spacing(layer)
        unit = (self.unit.text().strip() or None) if spacing is not None else None
        self.job = Job(
            _measure_job,
            layer_data(layer),
            None if image is None else layer_data(image),
            spacing,
            unit,
            description=f"Measuring {layer.name}",
            on_progress=lambda p: self.status.setText(p.message),
            on_done=lambda out: self._on_done(out, layer),
            on_error=self._on_error,
            on_finally=lambda: self.measure_button.setEnabled(True),
        )
        self.measure_button.setEnabled(False)
        self.status.setText(f"Measuring {layer.name}...")
        return self.job.start()

    def _on_error(self, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message, "error")
        notify_error(f"Measuring failed: {message}")

    def _on_done(self, out: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], layer: Any) -> None:
        table, features = out
        self.table, self.measured_layer = table, layer
        if layer in self.viewer.layers:
            layer.features = features
        self.view.fill(table)
        self.view.setVisible(True)
        self.export_button.setEnabled(True)
        n = len(table["label"])
        size = next(k for k in table if k.startswith(("area_", "volume_")))
        self.status.setText(
            f"{n} object(s) of '{layer.name}' measured ({size}); hover over an object to see its values.",
            "ok",
        )

    # ------------------------------------------------------------------ export
    def export_csv(self) -> Path | None:
        """Ask for a file name and write the table (an existing file only after asking)."""
        from napari_madgnet.tables import write_csv

        if self.table is None:
            return None
        name = self.measured_layer.name if self.measured_layer is not None else "labels"
        path = self.choose_csv_path(self, f"{name}_measurements.csv")
        if not path:
            return None
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_name(path.name + ".csv")
        overwrite = False
        if path.exists():
            if not self.ask_overwrite(path):
                self.status.setText(f"Not saved: {path} exists.", "warning")
                return None
            overwrite = True
        try:
            write_csv(self.table, path, overwrite=overwrite)
        except OSError as exc:
            self._on_error(exc)
            return None
        self.status.setText(f"Saved {path}.", "ok")
        return path

    def _ask_overwrite(self, path: Path) -> bool:  # pragma: no cover - a dialog
        answer = QMessageBox.question(self, "Replace file?", f"{path} exists. Replace it?")
        return answer == QMessageBox.StandardButton.Yes


def _choose_csv_path(parent: QWidget, suggestion: str) -> str | None:  # pragma: no cover - a dialog
    # The dialog's own overwrite question is off: the dock asks (and writes atomically) itself.
    path, _ = QFileDialog.getSaveFileName(
        parent,
        "Export the measurements",
        suggestion,
        "CSV (*.csv)",
        options=QFileDialog.Option.DontConfirmOverwrite,
    )
    return path or None
