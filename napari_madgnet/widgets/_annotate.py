"""The Fine-tune dock's "Annotate next" section: where to correct, then continue the current model.

The loop (docs/heads.md, part 3) inside the viewer: segment with an uncertainty layer (Segment
dock) -> "Suggest" ranks the most uncertain regions (2-D images) or slices (stacks) with
``suggest.suggest_corrections`` in a worker; they are listed here and drawn as rectangles in a
Shapes layer "<image> annotate next" whose features hold rank and score; clicking a row moves
the viewer there (camera for a region, sliders for a slice) -> the user corrects the labels
there and ticks the row -> "Continue from the current model" trains the model that made the
uncertainty layer on every region corrected so far (``_continue.continue_job``: the core's
``iter_continue_finetune``, which keeps the optimiser state when it can and says so) -> the image
is segmented again with the new model, and new regions are suggested (those done are skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.layers import Image, Labels, Shapes
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
)

from napari_madgnet.suggest import SUGGEST_MODES, features, shapes_data
from napari_madgnet.widgets import _layers
from napari_madgnet.widgets._common import LayerCombo, describe_exception, notify_error, notify_info
from napari_madgnet.widgets._continue import CurrentModel, continue_job, continued_line, model_of_layer
from napari_madgnet.widgets._navigate import go_to, go_to_plane
from napari_madgnet.widgets._ui import Section, StatusLine
from napari_madgnet.widgets._worker import Job

UNCERTAINTY_SUFFIX = " uncertainty"
COLUMNS = ("fixed", "#", "where", "score")


def _suggest_job(token: Any, data: Any, axes: str, mode: str, size: int, count: int, exclude: list):
    """Worker body: rank the regions or slices of the uncertainty map (read plane by plane)."""
    from napari_madgnet.jobs import Progress
    from napari_madgnet.suggest import suggest_corrections

    yield Progress(0.0, "Ranking by uncertainty")
    return suggest_corrections(data, axes, mode=mode, region_size=size, count=count, exclude=exclude)


def _wrapped() -> QLabel:
    """A note that wraps onto more lines (a sentence the user has to read whole)."""
    label = QLabel("")
    label.setWordWrap(True)
    return label


def _spatial_axes(ndim: int) -> str:
    from napari_madgnet.labelutils import resolve_axes

    return resolve_axes(ndim, None)


def describe_place(s: Any, axes: str, whole: tuple[int, int]) -> str:
    """ "z 3" for a slice, "y 64-128, x 0-64" for a region (with "z 3: " in front in a stack)."""
    lead = ", ".join(f"{a.lower()} {i}" for a, i in zip(axes, s.index, strict=False))
    y0, x0, y1, x1 = s.box
    if (y0, x0, y1, x1) == (0, 0, *whole) and lead:
        return lead
    box = f"y {y0}-{y1}, x {x0}-{x1}"
    return f"{lead}: {box}" if lead else box


class AnnotateNext(Section):
    """The section; ``dock`` is the Fine-tune widget (its Data layers, device, folder, job slot)."""

    def __init__(self, dock: Any) -> None:
        super().__init__("Annotate next", foldable=True)
        self.dock = dock
        self.viewer = dock.viewer
        self.job: Job | None = None  # the ranking; training runs in the dock's own job slot
        self.suggestions: list[Any] = []
        self.done: list[Any] = []  # regions corrected and trained on in earlier rounds
        self.rounds = 0
        self.round_model: CurrentModel | None = None
        self.shapes_layer: Any = None
        self.source_layer: Any = None  # the uncertainty layer the suggestions belong to
        self.last_result: Any = None
        self.round_line = ""  # what the last round did, kept in front of the next messages
        self._axes = "YX"
        self._classes = 0  # 1 when the uncertainty layer has a class axis in front (several classes)
        self._resuggest = False
        self._listening: Any = None  # the Segment dock whose "segmented" signal is connected
        self._build()
        self.uncertainty_combo.currentIndexChanged.connect(self._update_model_note)
        dock.base_model.currentIndexChanged.connect(self._update_model_note)
        self._pick_uncertainty()
        self._update_model_note()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.uncertainty_combo = LayerCombo(self.viewer, (Image,))
        self.add_row(
            "Uncertainty",
            self.uncertainty_combo,
            "The '<image> uncertainty' layer of the Segment dock (Advanced > uncertainty layer). 'Suggest' "
            "runs the Segment dock with it when there is none.",
        )
        self.mode = QComboBox()
        for mode in SUGGEST_MODES:
            self.mode.addItem({"auto": "auto", "regions": "regions", "slices": "slices"}[mode], mode)
        self.size = QSpinBox()
        self.size.setRange(32, 4096)
        self.size.setSingleStep(32)
        self.size.setValue(64)
        self.size.setSuffix(" px")
        self.count = QSpinBox()
        self.count.setRange(1, 100)
        self.count.setValue(5)
        row = QHBoxLayout()
        row.addWidget(self.mode)
        row.addWidget(self.size)
        row.addWidget(self.count)
        self.add_row(
            "Cut, size, how many",
            row,
            "auto: whole slices of a stack, squares of a 2-D image; the squares' side in pixels; how many "
            "places to list (most uncertain first).",
        )
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip("List the places where the model is least sure")
        self.suggest_button.clicked.connect(self.suggest)
        self.add_row(None, self.suggest_button)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # the rest: no sideways scrolling
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.horizontalHeaderItem(0).setToolTip("Tick the places you corrected")
        self.table.setMaximumHeight(170)
        self.table.cellClicked.connect(lambda row, _col: self.go_to(row))
        self.table.setVisible(False)
        self.add_row(None, self.table)
        self.hint = _wrapped()
        self.add_row(None, self.hint)
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setValue(60)
        self.add_row(
            "Steps",
            self.steps,
            "Training steps of one round (60 is what the active-learning benchmark used).",
        )
        self.model_note = _wrapped()
        self.add_row(None, self.model_note)
        self.continue_button = QPushButton("Continue from the current model")
        self.continue_button.setToolTip(
            "Train the model that made the uncertainty layer on the ticked (corrected) regions and every "
            "region corrected in earlier rounds; its optimiser state is kept when possible."
        )
        self.continue_button.clicked.connect(self.continue_training)
        self.add_row(None, self.continue_button)
        self.status = StatusLine()
        self.add_row(None, self.status)

    # ------------------------------------------------------------------ the uncertainty layer
    def _pick_uncertainty(self) -> None:
        """Select the newest uncertainty layer the Segment dock wrote, when there is one."""
        current = self.uncertainty_combo.layer()
        if current is not None and current.name.endswith(UNCERTAINTY_SUFFIX):
            return
        for layer in reversed(list(self.viewer.layers)):
            if isinstance(layer, Image) and (_layers.record(layer) or {}).get("role") == "uncertainty":
                self.uncertainty_combo.set_layer(layer)
                return

    def current_model(self) -> CurrentModel | None:
        """The model that made the uncertainty layer; else this section's last round; else the
        dock's "Start from" model."""
        layer = self.uncertainty_combo.layer()
        found = model_of_layer(layer) if layer is not None else None
        if found is not None:
            return found
        if self.round_model is not None:
            return self.round_model
        base = self.dock.base_model.value()
        if base not in (None, "imagenet", "scratch"):
            return CurrentModel(base, Path(base).stem, "chosen under 'Start from'")
        return None

    def _update_model_note(self, *_: Any) -> None:
        model = self.current_model()
        self.model_note.setText(
            f"Current model: '{model.name}' ({model.source})."
            if model is not None
            else "No current model: segment with one first (Segment dock)."
        )

    def image_name(self, layer: Any) -> str:
        rec = _layers.record(layer) or {}
        if rec.get("image"):
            return str(rec["image"])
        return layer.name.removesuffix(UNCERTAINTY_SUFFIX)

    # ------------------------------------------------------------------ suggesting
    def suggest(self) -> Job | None:
        """Rank the uncertainty layer's regions or slices (computing the layer first if needed)."""
        if self.job is not None and self.job.running:
            notify_info("Suggestions are being ranked; wait a moment.")
            return None
        self._pick_uncertainty()
        layer = self.uncertainty_combo.layer()
        if layer is None or not layer.name.endswith(UNCERTAINTY_SUFFIX):
            return self._compute_uncertainty()
        classes = 1 if (_layers.record(layer) or {}).get("classes") else 0
        axes = _spatial_axes(layer.ndim - classes)
        self._axes, self._classes = axes, classes
        self.source_layer = layer
        exclude = [(s.index, s.box) for s in self.done]
        self.job = Job(
            _suggest_job,
            _layers.layer_data(layer),
            axes,
            self.mode.currentData(),
            self.size.value(),
            self.count.value(),
            exclude,
            description=f"Suggesting where to annotate in {layer.name}",
            on_done=lambda found: self._on_suggested(found, layer),
            on_error=self._on_error,
        )
        self.status.setText(f"Ranking {layer.name}...")
        return self.job.start()

    def _compute_uncertainty(self) -> Any:
        """No uncertainty layer: segment the dock's image with the uncertainty on, then suggest."""
        window = getattr(self.viewer, "window", None)
        image = self.dock.image_combo.layer()
        model = self.current_model()
        if window is None or image is None or model is None:
            message = (
                "No uncertainty layer: in the Segment dock tick Advanced > 'uncertainty layer' and run it "
                "(or pick a trained model under 'Start from')."
            )
            self.status.setText(message, "warning")
            notify_error(message)
            return None
        _, segment = window.add_plugin_dock_widget("napari-madgnet", "Segment")
        return self._segment_then_suggest(segment, model.ref, image)

    def _segment_then_suggest(self, segment: Any, model_ref: str, image: Any) -> Any:
        segment.heads.uncertainty.setChecked(True)
        segment.scope.setCurrentText("whole stack")
        if self._listening is not segment:
            segment.segmented.connect(self._after_segment)
            self._listening = segment
        self._resuggest = True
        what = image.name if image is not None else "the image"
        self.status.setText(f"{self.round_line}Segmenting {what} with the uncertainty layer...".lstrip())
        return segment.run_with(model_ref, image)

    def _after_segment(self, _result: Any) -> None:
        if not self._resuggest:
            return
        self._resuggest = False
        self.uncertainty_combo.refresh()
        self._pick_uncertainty()
        self._update_model_note()
        self.suggest()

    def _on_error(self, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message, "error")
        notify_error(message)

    def _on_suggested(self, found: list[Any], layer: Any) -> None:
        self.suggestions = list(found)
        h, w = tuple(layer.data.shape)[-2:]
        self.table.setRowCount(len(found))
        for r, s in enumerate(found):
            tick = QTableWidgetItem()
            tick.setFlags(
                Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
            )
            tick.setCheckState(Qt.CheckState.Unchecked)
            self.table.setItem(r, 0, tick)
            for c, text in enumerate(
                (str(s.rank + 1), describe_place(s, self._axes, (h, w)), f"{s.score:.3f}")
            ):
                self.table.setItem(r, c + 1, QTableWidgetItem(text))
        self.table.setVisible(bool(found))
        self.shapes_layer = self._write_shapes(found, layer)
        self._select_data_layers(layer)
        self._update_model_note()
        if found:
            self.hint.setText("Click a row to go there, correct the labels there, tick it; then continue.")
            self.status.setText(
                f"{self.round_line}{len(found)} place(s) to check, most uncertain first.", "ok"
            )
        else:
            self.hint.setText("")
            self.status.setText(
                f"{self.round_line}Nothing left to suggest: every place was corrected.", "warning"
            )

    def _write_shapes(self, found: list[Any], layer: Any) -> Any:
        """Rectangles in "<image> annotate next" on the uncertainty layer's grid, rank as text."""
        name = f"{self.image_name(layer)} annotate next"
        feats = features(found)
        c = self._classes
        place = {"scale": layer.scale[c:], "translate": layer.translate[c:]}
        old = _layers.find_layer(self.viewer, name, Shapes)
        if old is not None:
            self.viewer.layers.remove(old)
        if not found:
            return None
        return self.viewer.add_shapes(
            shapes_data(found),
            shape_type="rectangle",
            name=name,
            edge_color="#ffd84a",
            face_color="transparent",
            edge_width=max(1.0, min(layer.data.shape[-2:]) / 256),
            features=feats,
            text={"string": "{rank}", "color": "#ffd84a", "anchor": "upper_left", "size": 10},
            **place,
        )

    def _select_data_layers(self, uncertainty: Any) -> None:
        """Point the dock's Data at the image and its mask (the labels the user corrects)."""
        name = self.image_name(uncertainty)
        image = _layers.find_layer(self.viewer, name, Image)
        mask = _layers.find_layer(self.viewer, _layers.output_name(name), Labels)
        if image is not None:
            self.dock.image_combo.set_layer(image)
        if mask is not None:
            self.dock.labels_combo.set_layer(mask)

    # ------------------------------------------------------------------ going there
    def go_to(self, row: int) -> Any:
        """Show suggestion ``row``: the sliders to its plane; for a region also the camera."""
        layer = self.source_layer
        if layer is None or layer not in self.viewer.layers or not 0 <= row < len(self.suggestions):
            return None
        s = self.suggestions[row]
        h, w = tuple(layer.data.shape)[-2:]
        lead = [0] * self._classes  # the class axis of a several-class layer: its first plane
        if s.box == (0, 0, h, w) and s.index:
            return go_to_plane(self.viewer, layer, [*lead, *s.index])
        extent = [1.0] * (len(lead) + len(s.index)) + [s.box[2] - s.box[0], s.box[3] - s.box[1]]
        return go_to(self.viewer, layer, [*lead, *s.center], extent)

    def ticked(self) -> list[Any]:
        return [
            s
            for r, s in enumerate(self.suggestions)
            if self.table.item(r, 0) is not None
            and self.table.item(r, 0).checkState() == Qt.CheckState.Checked
        ]

    def set_ticked(self, rows: list[int]) -> None:
        for r in rows:
            self.table.item(r, 0).setCheckState(Qt.CheckState.Checked)

    # ------------------------------------------------------------------ continuing
    def continue_training(self) -> Job | None:
        """Train the current model on the corrected regions (the dock's job slot, Stop and plot)."""
        from napari_madgnet.registry import name_from, unique_name

        dock = self.dock
        if dock.job is not None and dock.job.running:
            notify_info("Training is already running; press Stop first.")
            return None
        model = self.current_model()
        image, labels = dock.image_combo.layer(), dock.labels_combo.layer()
        new = self.ticked()
        problem = None
        if model is None:
            problem = "No current model: segment the image with a model first (Segment dock)."
        elif image is None or labels is None or not dock.check_shapes():
            problem = dock.shape_note.text()
        elif not new:
            problem = "Tick the suggestions you corrected (the first column) before continuing."
        if problem:
            self.status.setText(problem, "error")
            notify_error(f"Cannot continue: {problem}")
            return None
        regions = [*self.done, *new]
        folder = dock.folder_edit.text().strip() or None
        name = unique_name(name_from(model.name) + "-continued", folder)
        dock.plot.clear()
        dock.plot.setVisible(False)
        dock.progress_bar.setValue(0)
        dock.estimator.cancel()
        dock._image_layer = image
        dock.job = Job(
            continue_job,
            _layers.layer_data(image),
            labels.data,
            model.ref,
            regions,
            self.steps.value(),
            dock.device.value(),
            _layers.layer_axes(image),
            name,
            folder,
            image.name,
            description=f"Continuing '{model.name}' on {len(regions)} corrected region(s)",
            on_progress=self._on_progress,
            on_done=lambda result: self._on_continued(result, model, new, image),
            on_cancelled=lambda: self.status.setText("Stopped before the first step: nothing was saved."),
            on_error=self._on_train_error,
            on_finally=dock._on_finally,
        )
        dock.start_button.setEnabled(False)
        dock.stop_button.setEnabled(True)
        self.continue_button.setEnabled(False)
        self.status.setText(f"Continuing '{model.name}' on {len(regions)} region(s)...")
        return dock.job.start()

    def _on_progress(self, report: Any) -> None:
        if "optimizer_state" in report.details:
            self.status.setText(report.message)
        if report.details.get("warning"):
            # the round's own notes (e.g. "validation is off": continue_config turns it off on
            # purpose) go to this section's status, not into a notification per round
            self.status.setText(report.message, "info")
            return
        self.dock._on_progress(report)

    def _on_train_error(self, exc: BaseException) -> None:
        self.continue_button.setEnabled(True)
        self.dock._on_error(exc)
        self.status.setText(describe_exception(exc), "error")

    def _on_continued(self, result: Any, base: CurrentModel, new: list[Any], image: Any) -> None:
        self.continue_button.setEnabled(True)
        self.dock.last_outcome = result
        self.dock.progress_bar.setValue(1000)
        self.last_result = result
        if result.model_path is None:
            self.status.setText("No model was saved.", "warning")
            return
        self.rounds += 1
        self.done.extend(new)
        name = result.model_name or str(result.model_path)
        self.round_model = CurrentModel(name, name, f"round {self.rounds} of 'Annotate next'")
        line = continued_line(result, base.name)
        self.round_line = line + " "
        self.status.setText(line, "ok")
        self.dock.status.setText(line, "ok")
        self.dock.hub_link.update().model_saved.emit(name)
        self.dock._suggest_name()
        if self.dock.segment_after.isChecked():
            window = getattr(self.viewer, "window", None)
            if window is not None and hasattr(window, "add_plugin_dock_widget"):
                _, segment = window.add_plugin_dock_widget("napari-madgnet", "Segment")
                self._segment_then_suggest(segment, name, image if image in self.viewer.layers else None)
        else:
            self._update_model_note()


def add_annotate_next(dock: Any) -> AnnotateNext:
    """Build the section and put it at the end of the Fine-tune dock (above its stretch)."""
    section = AnnotateNext(dock)
    body = dock.scroll.widget().layout()
    body.insertWidget(max(0, body.count() - 1), section)
    return section
