"""The Segment dock widget: pick an image, a model and a scope; get a Labels layer.

Thin on purpose: the controls fill an ``inference.InferenceConfig``; ``inference.iter_segment``
runs in a thread worker; the result goes into layers on the GUI thread. The probabilities of the
last run are kept, so moving the threshold or the clean-up settings re-labels at once (in a
worker, without the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import QEvent, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from napari_madgnet.imagefile import GEOMETRY_KEY
from napari_madgnet.inference import GEOMETRIES, InferenceConfig, PostprocessConfig
from napari_madgnet.preprocess import METHODS
from napari_madgnet.widgets import _layers
from napari_madgnet.widgets._common import (
    DeviceCombo,
    HubLink,
    LayerCombo,
    ModelCombo,
    describe_exception,
    notify_error,
    notify_info,
)
from napari_madgnet.widgets._layers import layer_axes, layer_data
from napari_madgnet.widgets._models import ModelCache
from napari_madgnet.widgets._models_panel import (
    NoModelPanel,
    add_file_job,
    choose_model_file,
    choose_release_folder,
    import_job,
)
from napari_madgnet.widgets._scope import SCOPES, Region, compute_region, layer_position, visible_rect
from napari_madgnet.widgets._segment_heads import HeadControls, write_uncertainty
from napari_madgnet.widgets._ui import ScrollDock, Section, StatusLine
from napari_madgnet.widgets._worker import Job, stop_with_owner

FROM_MODEL = "from model"
#: The geometry choices in words (the core's ``GEOMETRIES`` values as item data).
GEOMETRY_CHOICES: tuple[tuple[str, str], ...] = tuple(
    (
        value,
        {
            "auto": "as the model was trained",
            "resize": "whole image, resized",
            "tiles": "tiles, full resolution",
        }[value],
    )
    for value in GEOMETRIES
)


def _segment_job(token: Any, image: Any, model_ref: str, config: InferenceConfig, cache: ModelCache):
    """Worker body: load (or reuse) the model, then run the core's generator."""
    from napari_madgnet.inference import iter_segment
    from napari_madgnet.jobs import Progress

    yield Progress(0.0, "Loading the model")
    model = cache.get(model_ref)
    try:
        return (yield from iter_segment(image, model, config, cancel=token))
    finally:
        cache.release()


@dataclass
class LastRun:
    """What re-thresholding needs: the cached result and where its mask went."""

    result: Any
    image_name: str
    region: Region
    place: dict[str, Any]
    mask_layer: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


class SegmentWidget(ScrollDock):
    """Segment the chosen image layer with a MADGNet model."""

    #: Emitted with the result once a run's layers are written (the Fine-tune dock's
    #: "Annotate next" waits for the uncertainty layer this way).
    segmented = Signal(object)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.models_job: Job | None = None
        self.choose_folder = choose_release_folder  # the pickers (tests put answers here)
        self.choose_model_file = choose_model_file
        self.last: LastRun | None = None
        self.model_cache = ModelCache()
        self._post_generation = 0
        self._post_worker: Any = None
        self.forced_new_layer = False
        self._build()
        self.hub_link = HubLink(self, self._on_model_saved)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(150)
        self._debounce.timeout.connect(self.repostprocess)
        for signal in (
            self.threshold.valueChanged,
            self.fill_holes.toggled,
            self.min_size.valueChanged,
            self.largest.toggled,
            self.instances.toggled,
            self.heads.instance_method.currentIndexChanged,
        ):
            signal.connect(self._debounce.start)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self._on_image_changed()
        self._update_empty_state()
        stop_with_owner(self, lambda: [self.job, self.models_job])
        self._gone = False  # set when the widget is deleted: late results touch nothing then
        self.destroyed.connect(lambda *_: setattr(self, "_gone", True))

    def event(self, event: Any) -> bool:
        # The dock was closed (napari takes the widget out of its dock): stop like Cancel.
        if event.type() == QEvent.ParentChange and self.parent() is None:
            self.cancel()
        return super().event(event)

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        layout = self._make_body()
        self.no_model = NoModelPanel()
        self.no_model.train_button.clicked.connect(self.open_first_model)
        self.no_model.import_button.clicked.connect(self.import_released)
        self.no_model.add_button.clicked.connect(self.add_model_file)
        layout.addWidget(self.no_model)

        box = Section("Input")
        self.image_combo = LayerCombo(self.viewer, (Image,))
        self.scope = QComboBox()
        self.scope.addItems(SCOPES)
        box.add_row("Image", self.image_combo, "The image layer to segment.")
        box.add_row(
            "Scope",
            self.scope,
            "current slice: only the plane on screen; whole stack: every plane; part in view: only the "
            "rectangle visible on the canvas (quick checks on big images).",
        )
        layout.addWidget(box)

        box = Section("Model")
        self.model_combo = ModelCombo()
        self.model_combo.setToolTip(
            "The trained model to segment with: imported releases, models you fine-tuned, or a file "
            "('Load from file...')."
        )
        self.add_models = QToolButton()
        self.add_models.setText("+")
        self.add_models.setToolTip("Import released models or add a model file")
        self.add_models.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.add_models)
        menu.addAction("Import released models...", self.import_released)
        menu.addAction("Add a model file...", self.add_model_file)
        self.add_models.setMenu(menu)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.add_models)
        self.device = DeviceCombo()
        box.add_row("Model", model_row)
        box.add_row("Device", self.device)
        box.add_row(None, self.device.note)
        layout.addWidget(box)

        box = Section("Clean-up (instant, the network is not re-run)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.fill_holes = QCheckBox("fill holes")
        self.largest = QCheckBox("largest object only")
        self.instances = QCheckBox("number each object (instance labels)")
        self.min_size = QSpinBox()
        self.min_size.setRange(0, 10_000_000)
        self.min_size.setSuffix(" px")
        box.add_row(
            "Threshold",
            self.threshold,
            "How sure the model must be that a pixel is object (0 to 1). Lower finds more and larger "
            "objects; higher, fewer and smaller. Moving it re-labels at once.",
        )
        box.add_row("Smallest object", self.min_size, "Objects with fewer pixels than this are removed.")
        box.add_row(None, self.fill_holes, "Fill holes inside objects.")
        box.add_row(None, self.largest, "Keep only the largest object (one organ, one lesion).")
        box.add_row(None, self.instances, "Give each separate object its own label number (1, 2, 3...).")
        layout.addWidget(box)
        clean_up = box

        box = Section("Output")
        self.new_layer = QCheckBox("new layer (keep earlier results)")
        self.probability = QCheckBox("probability layer")
        box.add_row(None, self.new_layer, "Write the result to a new layer instead of updating the last one.")
        box.add_row(None, self.probability, "Also add the model's per-pixel probabilities as an image layer.")
        layout.addWidget(box)

        box = Section("Advanced", foldable=True)
        self.advanced = box
        self.axes_edit = QLineEdit()
        self.channel = QSpinBox()
        self.channel.setRange(-1, 64)
        self.channel.setSpecialValueText("all (grey or colour)")
        self.channel.setValue(-1)
        self.geometry = QComboBox()
        for value, text in GEOMETRY_CHOICES:
            self.geometry.addItem(text, value)
        self.size = QSpinBox()
        self.size.setRange(0, 4096)
        self.size.setSingleStep(32)
        self.size.setSpecialValueText("as trained")
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0.0, 0.9)
        self.overlap.setSingleStep(0.05)
        self.overlap.setValue(0.25)
        self.normalization = QComboBox()
        self.normalization.addItem("as the model was trained", FROM_MODEL)
        for method in METHODS:
            self.normalization.addItem(method, method)
        box.add_row(
            "Axes",
            self.axes_edit,
            "What each dimension of the layer is: T time, Z depth, C channel, Y and X the plane "
            "(e.g. YX, YXC for colour, ZYX for a stack). Filled in from the layer.",
        )
        box.add_row(
            "Channel",
            self.channel,
            "For images with several channels: the one to segment (0 is the first). 'all' uses a grey "
            "image as it is and a colour (RGB) image as colour.",
        )
        box.add_row(
            "Image to network",
            self.geometry,
            "How the image reaches the network: as the model was trained (resized when the image is "
            "about the model's size, tiles when larger), the whole image resized, or tiles at full "
            "resolution (small objects in big images).",
        )
        box.add_row(
            "Network input (px)",
            self.size,
            "Side of the resized image or of each tile, in pixels; 'as trained' uses the model's own.",
        )
        box.add_row("Tile overlap", self.overlap, "How much neighbouring tiles overlap (0.25 = a quarter).")
        box.add_row(
            "Intensity scaling",
            self.normalization,
            "How pixel values are brought to 0..1 before the network: as the model was trained (best), "
            "or a method of your choice (percentile for microscopy, CT windows for CT in HU).",
        )
        self.heads = HeadControls(clean_up, box)
        layout.addWidget(box)

        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Segment the image with the model")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run; nothing is written")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.status = StatusLine()
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.fit_width()

    def _update_empty_state(self) -> None:
        """The "No model yet" panel shows while the registry is empty."""
        self.no_model.setVisible(self.model_combo.registered == 0)

    # ------------------------------------------------------------------ getting models
    def import_released(self) -> Job | None:
        """ "Import released models...": pick the release folder, register its models (worker)."""
        folder = self.choose_folder(self)
        if not folder:
            return None
        return self._models_job(import_job, folder, f"Importing released models from {folder}")

    def add_model_file(self) -> Job | None:
        """ "Add a model file...": pick a checkpoint, list it by name (worker)."""
        path = self.choose_model_file(self)
        if not path:
            return None
        return self._models_job(add_file_job, path, f"Adding {path}")

    def _models_job(self, func: Any, arg: str, description: str) -> Job | None:
        if self.models_job is not None and self.models_job.running:
            notify_info("Models are being added; wait a moment.")
            return None
        self.models_job = Job(
            func,
            arg,
            description=description,
            on_progress=lambda p: self.status.setText(p.message),
            on_done=self._on_models_added,
            on_error=lambda exc: self._show_error("Could not add the models", exc),
        )
        return self.models_job.start()

    def _on_models_added(self, names: list[str]) -> None:
        self.model_combo.refresh(select=names[0] if names else None)
        self._update_empty_state()
        self.hub_link.update().model_saved.emit(names[0] if names else "")
        listed = ", ".join(names)
        self.status.setText(
            f"Added {len(names)} model(s): {listed}. Pick one under Model and press Run.", "ok"
        )

    def _show_error(self, what: str, exc: BaseException) -> None:
        message = describe_exception(exc)
        self.status.setText(message, "error")
        notify_error(f"{what}: {message}")

    def open_first_model(self) -> Any:
        """Open the Fine-tune dock with the first-model settings on the current image."""
        window = getattr(self.viewer, "window", None)
        if window is None or not hasattr(window, "add_plugin_dock_widget"):
            return None
        _, finetune = window.add_plugin_dock_widget("napari-madgnet", "Fine-tune")
        finetune.use_first_model()
        return finetune

    # ------------------------------------------------------------------ settings
    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_combo.layer()
        self.axes_edit.setText(layer_axes(layer) if layer is not None else "")

    def _on_model_saved(self, name: str) -> None:
        self.model_combo.refresh()
        self._update_empty_state()

    def showEvent(self, event: Any) -> None:
        self.hub_link.update()
        self.model_combo.refresh()
        self._update_empty_state()
        super().showEvent(event)

    def postprocess_config(self) -> PostprocessConfig:
        return PostprocessConfig(
            threshold=self.threshold.value(),
            fill_holes=self.fill_holes.isChecked(),
            min_size=self.min_size.value(),
            largest=self.largest.isChecked(),
            instances=self.heads.instances(self.instances.isChecked()),
        )

    def inference_config(self, axes: str) -> InferenceConfig:
        size = self.size.value() or None
        norm = self.normalization.currentData()
        return InferenceConfig(
            axes=axes,
            channel=None if self.channel.value() < 0 else self.channel.value(),
            normalization=None if norm == FROM_MODEL else norm,
            geometry=self.geometry.currentData(),
            input_size=size,
            tile_size=size,
            overlap=self.overlap.value(),
            device=self.device.value(),
            postprocess=self.postprocess_config(),
            **self.heads.inference_settings(),
        )

    # ------------------------------------------------------------------ running
    def run(self) -> Job | None:
        """Start a run in a worker; problems are shown as notifications and nothing starts."""
        if self.job is not None and self.job.running:
            notify_info("A segmentation is already running; wait for it or press Cancel.")
            return None
        try:
            layer, axes, region, config, model_ref = self._prepare()
        except ValueError as exc:
            notify_error(str(exc))
            self.status.setText(str(exc), "error")
            return None
        data = layer_data(layer)
        image = data[region.key]
        place = _layers.placement(layer, _channel_of(axes, layer))
        info = {"image": layer.name, "scope": self.scope.currentText(), "region": _describe(region.key)}
        # A medical image's geometry (spacing, origin, direction) travels with its mask, so the
        # plugin's writer saves the mask where the scan is (napari_io.reference_for_layer).
        scan_geometry = (layer.metadata or {}).get(GEOMETRY_KEY)
        self.job = Job(
            _segment_job,
            image,
            model_ref,
            config,
            self.model_cache,
            description=f"Segmenting {layer.name}",
            on_progress=lambda p: self.status.setText(p.message),
            on_done=lambda result: self._on_done(result, layer.name, region, place, info, scan_geometry),
            on_cancelled=lambda: self.status.setText("Cancelled; nothing was written."),
            on_error=self._on_error,
            on_finally=self._on_finally,
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Segmenting {layer.name} ({self.scope.currentText()})...")
        return self.job.start()

    def run_with(self, model_ref: str, image_layer: Any) -> Job | None:
        """Select a model and an image, then run (the Fine-tune widget's "segment when done")."""
        self.model_combo.refresh(select=model_ref)
        if image_layer is not None:
            self.image_combo.set_layer(image_layer)
        return self.run()

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.status.setText("Cancelling...")
            self.job.cancel()

    def _prepare(self) -> tuple[Any, str, Region, InferenceConfig, str]:
        layer = self.image_combo.layer()
        if layer is None:
            raise ValueError(
                "No image layer to segment: open an image (File > Open) or the nuclei sample "
                "(File > Open Sample > MADGNet), then pick it in 'Image'."
            )
        model_ref = self.model_combo.value()
        if model_ref is None:
            raise ValueError(
                "No model chosen: train a first model, import the released models or add a model file "
                "(the buttons in this dock), or pick 'Load from file...'."
            )
        axes = self.axes_edit.text().strip().upper() or layer_axes(layer)
        data = layer_data(layer)
        position = layer_position(layer, np.asarray(self.viewer.dims.point), axes)
        scope = self.scope.currentText()
        view = visible_rect(self.viewer, layer, axes) if scope == "part in view" else None
        region = compute_region(tuple(data.shape), axes, scope, position, view)
        return layer, axes, region, self.inference_config(region.axes), model_ref

    def _on_error(self, exc: BaseException) -> None:
        self._show_error("Segmentation failed", exc)

    def _on_finally(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_done(
        self, result: Any, image_name: str, region: Region, place: dict, info: dict, scan_geometry: Any = None
    ) -> None:
        metadata = {"madgnet_provenance": {**result.provenance, "widget": info}}
        if isinstance(scan_geometry, dict):
            metadata[GEOMETRY_KEY] = scan_geometry
        self.last = LastRun(result, image_name, region, place, metadata=metadata)
        if self._write_mask(np.asarray(result.mask), new=self.new_layer.isChecked()) is None:
            self.status.setText("Not written: the edited labels were kept.", "warning")
            return
        if self.probability.isChecked():
            self._write_probability(np.asarray(result.probabilities))
        if result.uncertainty is not None:
            write_uncertainty(self, np.asarray(result.uncertainty))
        prov = result.provenance.get("resolved", {})
        self.status.setText(
            f"Done in {prov.get('seconds', '?')} s on {prov.get('device', '?')} "
            f"({prov.get('geometry', '?')}). Move the threshold to re-label instantly.",
            "ok",
        )
        self.segmented.emit(result)

    # ------------------------------------------------------------------ outputs
    def ask_overwrite(self, layer_name: str) -> str:
        """Ask before replacing edited labels: "overwrite", "new" or "cancel" (tests replace this)."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Warning)
        box.setWindowTitle("Edited labels")
        box.setText(
            f"The labels layer '{layer_name}' was edited by hand (or not made by MADGNet). "
            "Overwrite it with the new result, or write the result to a new layer?"
        )
        overwrite = box.addButton("Overwrite", QMessageBox.DestructiveRole)
        new = box.addButton("New layer", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(new)
        box.exec_()
        clicked = box.clickedButton()
        return "overwrite" if clicked is overwrite else "new" if clicked is new else "cancel"

    def _write_mask(self, mask: np.ndarray, new: bool = False) -> Any:
        last = self.last
        assert last is not None
        name = _layers.output_name(last.image_name)
        layer = last.mask_layer if last.mask_layer in self.viewer.layers else None
        if layer is None and not new:
            layer = _layers.find_layer(self.viewer, name, Labels)
        if layer is not None and tuple(layer.data.shape) != last.region.out_shape:
            layer = None
        if layer is not None and _layers.is_user_edited(layer):
            answer = self.ask_overwrite(layer.name)
            if answer == "cancel":
                return None
            if answer == "new":
                layer = None
        layer = _layers.write_region(
            self.viewer,
            layer=layer,
            name=name,
            full_shape=last.region.out_shape,
            region=last.region.out_key,
            values=mask,
            kind="labels",
            place=last.place,
            metadata=last.metadata,
        )
        _layers.mark(layer, role="mask", image=last.image_name)
        last.mask_layer = layer
        return layer

    def _write_probability(self, probabilities: np.ndarray) -> Any:
        last = self.last
        assert last is not None
        k = probabilities.shape[0]
        place = dict(last.place)
        if k == 1:
            values, full, region = probabilities[0], last.region.out_shape, last.region.out_key
        else:
            values, full = probabilities, (k, *last.region.out_shape)
            region = (slice(None), *last.region.out_key)
            place = {"scale": [1.0, *place["scale"]], "translate": [0.0, *place["translate"]]}
        name = _layers.output_name(last.image_name, "probability")
        layer = None if self.new_layer.isChecked() else _layers.find_layer(self.viewer, name, Image)
        if layer is not None and tuple(layer.data.shape) != full:
            layer = None
        return _layers.write_region(
            self.viewer,
            layer=layer,
            name=name,
            full_shape=full,
            region=region,
            values=values.astype(np.float32, copy=False),
            kind="image",
            place=place,
            metadata=last.metadata,
        )

    # ------------------------------------------------------------------ re-thresholding
    def repostprocess(self) -> Any:
        """Re-label the cached probabilities with the current settings, in a worker."""
        if self.last is None or (self.job is not None and self.job.running):
            return None
        config = self.postprocess_config()
        self._post_generation += 1
        generation = self._post_generation
        worker = create_worker(
            self.last.result.repostprocess, config, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(lambda result: self._on_repostprocessed(result, config, generation))
        worker.errored.connect(lambda exc: None if self._gone else self._on_error(exc))
        self._post_worker = worker
        worker.start()
        return worker

    def _on_repostprocessed(self, result: Any, config: PostprocessConfig, generation: int) -> None:
        if self._gone or generation != self._post_generation or self.last is None:
            return  # the window closed, or a newer setting is on its way
        self.last.result = result
        prov = self.last.metadata.get("madgnet_provenance", {})
        cfg = dict(prov.get("config", {}), postprocess=config.to_dict())
        self.last.metadata = {**self.last.metadata, "madgnet_provenance": {**prov, "config": cfg}}
        if self._write_mask(np.asarray(result.mask)) is not None:
            self.status.setText(f"Re-labelled at threshold {config.threshold:.2f} (network not re-run).")


def _channel_of(axes: str, layer: Any) -> int | None:
    """The channel axis of a non-RGB layer's data, which the mask does not have."""
    return axes.index("C") if "C" in axes and not layer.rgb else None


def _describe(key: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for k in key:
        if isinstance(k, slice):
            out.append([k.start, k.stop] if (k.start is not None or k.stop is not None) else ":")
        else:
            out.append(int(k))
    return out
