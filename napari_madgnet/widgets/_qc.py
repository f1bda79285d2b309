"""The Quality check dock: compare a mask with a reference (or two models' masks) in the viewer.

Thin on purpose: the two Labels layers and the layer's pixel size go to ``qc.compare_masks``
(the same comparison as ``madgnet compare``) in a thread worker; the dock shows the report:
Dice, IoU, HD95 and NSD overall (distances in the layer's physical unit, from its ``scale``),
a per-slice and a per-object table (clicking a row goes there), a false-positive /
false-negative Labels layer, and "Go to worst slice".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QWidget,
)

from napari_madgnet.widgets._common import LayerCombo, describe_exception, notify_error, notify_info
from napari_madgnet.widgets._layers import find_layer, layer_data, unique_name
from napari_madgnet.widgets._navigate import go_to, go_to_plane
from napari_madgnet.widgets._physical import layer_spacing, layer_unit
from napari_madgnet.widgets._table_view import TableView, format_value
from napari_madgnet.widgets._ui import LEVEL_COLOURS, ScrollDock, Section, StatusLine, note_label
from napari_madgnet.widgets._worker import Job, stop_with_owner

#: Colours of the error layer: false positives (in the mask, not the reference) and false negatives.
ERROR_COLOURS = {1: "#ff40ff", 2: "#40e0ff"}
ERROR_NAMES = ("agree", "false positive", "false negative")


def _compare_job(token: Any, mask: Any, ref: Any, spacing: Any, unit: str | None, tolerance: Any, names: Any):
    """Worker body: read both layers (they may be lazy) and compare them."""
    from napari_madgnet.jobs import Progress
    from napari_madgnet.qc import compare_masks

    yield Progress(0.0, "Reading the layers")
    a, b = np.asarray(mask), np.asarray(ref)
    yield Progress(0.2, "Comparing (overall, per slice, per object)")
    return compare_masks(a, b, spacing=spacing, unit=unit, tolerance=tolerance, names=names)


class QualityWidget(ScrollDock):
    """Compare a mask Labels layer with a reference Labels layer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.report: Any = None
        self.mask_layer: Any = None  # the layer the report's coordinates belong to
        self.error_layer: Any = None
        self.choose_folder = _choose_folder  # the report folder picker (tests put answers here)
        self.ask_overwrite = self._ask_overwrite
        self._build()
        for combo in (self.mask_combo, self.ref_combo):
            combo.currentIndexChanged.connect(self._on_layers_changed)
        self._on_layers_changed()
        stop_with_owner(self, lambda: [self.job])

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        layout = self._make_body()
        box = Section("Compare")
        self.mask_combo = LayerCombo(self.viewer, (Labels,))
        self.ref_combo = LayerCombo(self.viewer, (Labels,))
        self.unit = QLineEdit()
        self.unit.setPlaceholderText("px")
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.0, 1e6)
        self.tolerance.setDecimals(3)
        self.tolerance.setSpecialValueText("one voxel")
        self.layer_note = note_label("info")
        box.add_row("Mask (A)", self.mask_combo, "The mask to check, e.g. the model's result.")
        box.add_row(
            "Reference (B)",
            self.ref_combo,
            "What it is checked against: an annotation, or another model's mask (A/B).",
        )
        box.add_row(None, self.layer_note)
        box.add_row(
            "Unit",
            self.unit,
            "The unit of the mask layer's pixel size (its scale), e.g. mm or um; distances are "
            "reported in it. Filled in from the layer when napari knows it.",
        )
        box.add_row(
            "NSD tolerance",
            self.tolerance,
            "Normalised surface Dice: the share of both boundaries within this distance (in the unit) of "
            "the other; 'one voxel' uses the largest pixel size.",
        )
        layout.addWidget(box)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Compare A with B: overall, per slice and per object")
        self.compare_button.clicked.connect(self.compare)
        layout.addWidget(self.compare_button)
        self.status = StatusLine()
        layout.addWidget(self.status)

        self.results = Section("Result")
        self.values: dict[str, QLabel] = {}
        for key, text, tip in (
            ("dice", "Dice", "2|A∩B| / (|A| + |B|): 1 is a perfect overlap."),
            ("iou", "IoU", "|A∩B| / |A∪B| (Jaccard)."),
            ("hd95", "HD95", "95th percentile of the boundary distances both ways (MONAI's HD95)."),
            ("nsd", "NSD", "Share of both boundaries within the tolerance of the other."),
            ("pr", "Precision / recall", "Share of A that is in B / share of B that is in A."),
            ("objects", "Objects", "Reference objects matched one-to-one to A's at IoU >= 0.5."),
        ):
            label = QLabel("")
            self.values[key] = label
            self.results.add_row(text, label, tip)
        self.worst_button = QPushButton("Go to worst slice")
        self.worst_button.setToolTip("Move the slider to the plane where the most pixels differ")
        self.worst_button.clicked.connect(self.go_to_worst)
        self.save_button = QPushButton("Save tables...")
        self.save_button.setToolTip("Write summary.csv, per_slice.csv and per_object.csv into a folder")
        self.save_button.clicked.connect(self.save_tables)
        row = QHBoxLayout()
        row.addWidget(self.worst_button)
        row.addWidget(self.save_button)
        self.results.add_row(None, row)
        self.tabs = QTabWidget()
        self.slice_table = TableView()
        self.slice_table.on_row = self.go_to_slice_row
        self.object_table = TableView()
        self.object_table.on_row = self.go_to_object_row
        self.tabs.addTab(self.slice_table, "Per slice")
        self.tabs.addTab(self.object_table, "Per object")
        self.results.add_row(None, self.tabs)
        self.results.setVisible(False)
        layout.addWidget(self.results)
        layout.addStretch(1)
        self.fit_width()

    def _on_layers_changed(self, *_: Any) -> None:
        mask = self.mask_combo.layer()
        self.unit.setText(layer_unit(mask) if mask is not None else "")
        self._check_layers()

    def _check_layers(self, *_: Any) -> bool:
        mask, ref = self.mask_combo.layer(), self.ref_combo.layer()
        ok = False
        if mask is None or ref is None:
            text, level = "Pick two Labels layers of the same image.", "info"
        elif mask is ref:
            text, level = "A and B are the same layer: pick the reference under B.", "warning"
        elif tuple(mask.data.shape) != tuple(ref.data.shape):
            text = f"A is {tuple(mask.data.shape)} but B is {tuple(ref.data.shape)}: pick masks of one image."
            level = "error"
        else:
            spacing = layer_spacing(mask)
            unit = self.unit.text().strip()
            where = (
                "pixels" if spacing is None else " x ".join(f"{s:g}" for s in spacing) + f" {unit}".rstrip()
            )
            text, level, ok = f"Pixel size from A's scale: {where}.", "info", True
            if not np.allclose(np.asarray(mask.scale), np.asarray(ref.scale)):
                text += " B's scale differs; A's is used."
                level = "warning"
        self.layer_note.setText(text)
        self.layer_note.setStyleSheet(LEVEL_COLOURS[level])
        self.compare_button.setEnabled(ok and not (self.job is not None and self.job.running))
        return ok

    # ------------------------------------------------------------------ running
    def compare(self) -> Job | None:
        """Compare A with B in a worker; problems are shown and nothing starts."""
        if self.job is not None and self.job.running:
            notify_info("A comparison is running; wait for it.")
            return None
        if not self._check_layers():
            notify_error(self.layer_note.text())
            return None
        mask, ref = self.mask_combo.layer(), self.ref_combo.layer()
        spacing = layer_spacing(mask)
        unit = self.unit.text().strip() or None
        tolerance = self.tolerance.value() or None
        self.job = Job(
            _compare_job,
            layer_data(mask),
            layer_data(ref),
            spacing,
            unit if spacing is not None else None,
            tolerance,
            (mask.name, ref.name),
            description=f"Comparing {mask.name} with {ref.name}",
            on_progress=lambda p: self.status.setText(p.message),
            on_done=lambda report: self._on_done(report, mask),
            on_error=self._on_error,
            on_finally=lambda: self._check_layers(),
        )
        self.compare_button.setEnabled(False)
        self.status.setText(f"Comparing {mask.name} with {ref.name}...")
        return self.job.start()

    def _on_error(self, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message, "error")
        notify_error(f"Comparison failed: {message}")

    def _on_done(self, report: Any, mask: Any) -> None:
        self.report, self.mask_layer = report, mask
        o, u = report.overall, report.unit
        self.values["dice"].setText(format_value(o["dice"]))
        self.values["iou"].setText(format_value(o["iou"]))
        self.values["hd95"].setText(f"{format_value(o[f'hd95_{u}'])} {u}")
        self.values["nsd"].setText(f"{format_value(o['nsd'])} (at {report.tolerance:g} {u})")
        self.values["pr"].setText(f"{format_value(o['precision'])} / {format_value(o['recall'])}")
        if "matched_objects" in o:
            self.values["objects"].setText(
                f"{o['matched_objects']} matched, {o['missed_objects']} missed, "
                f"{o['false_positive_objects']} false; F1 {format_value(o['object_f1'])}"
            )
        lead = [a.lower() for a in report.axes[:-2]]
        self.slice_table.fill(
            report.per_slice or [], [*lead, "dice", "iou", f"hd95_{u}", "nsd", "errors"] if lead else None
        )
        self.object_table.fill(
            report.per_object or [],
            ["t", "status", "reference_label", "predicted_label", "iou", f"hd95_{u}", "nsd"],
        )
        self.tabs.setTabEnabled(0, bool(report.per_slice))
        self.tabs.setCurrentIndex(0 if report.per_slice else 1)
        self.worst_button.setEnabled(report.worst_slice is not None)
        self.results.setVisible(True)
        self.error_layer = self._write_errors(report.error_map, mask)
        self.status.setText(
            f"Dice {o['dice']:.3f}; the layer '{self.error_layer.name}' shows false positives (magenta) and "
            "false negatives (cyan).",
            "ok",
            report.summary(),
        )
        self.fit_width()

    def _write_errors(self, error_map: np.ndarray, mask: Any) -> Any:
        from napari.utils.colormaps import DirectLabelColormap

        name = f"{mask.name} errors"
        colours = {None: "transparent", 0: "transparent", **ERROR_COLOURS}
        features = {"index": np.arange(3), "error": np.array(ERROR_NAMES)}
        layer = find_layer(self.viewer, name, Labels)
        if layer is not None and tuple(layer.data.shape) == error_map.shape:
            layer.data = error_map
            layer.scale, layer.translate = mask.scale, mask.translate
            layer.features = features
            return layer
        return self.viewer.add_labels(
            error_map,
            name=unique_name(self.viewer, name),
            scale=mask.scale,
            translate=mask.translate,
            affine=mask.affine,
            colormap=DirectLabelColormap(color_dict=colours),
            features=features,
            opacity=0.8,
        )

    # ------------------------------------------------------------------ going places
    def go_to_worst(self) -> Any:
        """Move the sliders to the report's worst slice."""
        if (
            self.report is None
            or self.report.worst_slice is None
            or self.mask_layer not in self.viewer.layers
        ):
            return None
        return go_to_plane(self.viewer, self.mask_layer, self.report.worst_slice)

    def go_to_slice_row(self, row: int) -> Any:
        report = self.report
        if report is None or self.mask_layer not in self.viewer.layers:
            return None
        data = report.per_slice[row]
        index = [int(data[a.lower()]) for a in report.axes[:-2]]
        return go_to_plane(self.viewer, self.mask_layer, index)

    def go_to_object_row(self, row: int) -> Any:
        report = self.report
        if report is None or self.mask_layer not in self.viewer.layers:
            return None
        data = report.per_object[row]
        point = [float(data[f"center_{a.lower()}"]) if a != "T" else float(data["t"]) for a in report.axes]
        return go_to(self.viewer, self.mask_layer, point)

    # ------------------------------------------------------------------ saving
    def save_tables(self) -> list[Path] | None:
        """Write the report's CSVs into a chosen folder (asking before replacing files)."""
        if self.report is None:
            return None
        folder = self.choose_folder(self)
        if not folder:
            return None
        try:
            return self.report.to_csv(folder)
        except FileExistsError as exc:
            if not self.ask_overwrite(str(exc).split(";")[0]):
                return None
            return self.report.to_csv(folder, overwrite=True)
        except OSError as exc:
            notify_error(f"Could not write the tables: {exc}")
            return None

    def _ask_overwrite(self, what: str) -> bool:  # pragma: no cover - a dialog
        answer = QMessageBox.question(self, "Replace files?", f"{what}. Replace them?")
        return answer == QMessageBox.StandardButton.Yes


def _choose_folder(parent: QWidget) -> str | None:  # pragma: no cover - a dialog
    return QFileDialog.getExistingDirectory(parent, "Folder for the comparison tables") or None
