"""Pieces both dock widgets share: layer, model and device pickers, the per-viewer model hub, notices.

The pickers follow the viewer (layers added, removed, renamed) and the model folder (new models),
so the widgets never show a stale choice. The hub is how a Fine-tune widget tells the Segment
widgets of the same viewer that a model was saved: one small QObject that lives as a child of the
viewer's main window, so it exists once per window, dies with it, and needs no module global.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from napari_madgnet.device import available_devices, resolve_device
from napari_madgnet.widgets._ui import note_label

#: The text of the picker entry that opens a file dialog.
LOAD_FROM_FILE = "Load from file..."
HUB_NAME = "napari-madgnet-model-hub"


class ModelHub(QObject):
    """Per-window messenger: ``model_saved(name)`` when a Fine-tune widget wrote a new model."""

    model_saved = Signal(str)

    @classmethod
    def of(cls, widget: QWidget) -> ModelHub:
        """The hub of the window ``widget`` is docked in (created on first use).

        Before docking, ``widget.window()`` is the widget itself, so an undocked widget gets a
        private hub; ``HubLink`` looks it up again once the widget is docked.
        """
        top = widget.window()
        hub = top.findChild(cls, HUB_NAME, Qt.FindDirectChildrenOnly)
        if hub is None:
            hub = cls(top)
            hub.setObjectName(HUB_NAME)
        return hub


class HubLink:
    """Keeps ``slot`` connected to the hub of whatever window the widget is docked in.

    napari docks a widget after constructing it, so the link is made on the next event-loop turn
    and checked again whenever the widget is shown (it may be moved to another window).
    """

    def __init__(self, widget: QWidget, slot: Callable[[str], None]) -> None:
        self._widget = widget
        self._slot = slot
        self.hub: ModelHub | None = None
        QTimer.singleShot(0, self.update)

    def update(self) -> ModelHub:
        hub = ModelHub.of(self._widget)
        if hub is not self.hub:
            if self.hub is not None:
                with contextlib.suppress(TypeError, RuntimeError):
                    self.hub.model_saved.disconnect(self._slot)
            hub.model_saved.connect(self._slot)
            self.hub = hub
        return hub


def notify_error(message: str) -> None:
    """An error the user can act on, shown as a napari notification (never a crash)."""
    show_error(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def notify_info(message: str) -> None:
    show_info(message)


def describe_exception(exc: BaseException) -> str:
    """The core's user errors (``errors.is_user_error``) already name problem and fix and are
    shown as they are; anything else is a bug, shown with a request to report it."""
    from napari_madgnet.errors import is_user_error

    text = str(exc).strip() or type(exc).__name__
    if is_user_error(exc) or isinstance(exc, MemoryError):
        return text
    return f"{type(exc).__name__}: {text} (unexpected; the terminal shows details; please report it)."


class LayerCombo(QComboBox):
    """A picker of the viewer's layers of some types, kept in step with the layer list.

    The current layer is remembered by identity, so renaming or reordering never silently
    switches to another layer; a removed layer falls back to the newest matching one.
    """

    def __init__(self, viewer: Any, layer_types: tuple[type, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._types = layer_types
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        events = viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(events, name, None)
            if emitter is not None:
                emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.refresh()
        active = viewer.layers.selection.active
        if isinstance(active, layer_types):
            self.set_layer(active)

    def _on_layers_changed(self, event: Any = None) -> None:
        value = getattr(event, "value", None)
        if getattr(event, "type", "") == "inserted" and value is not None:
            value.events.name.connect(self._on_layers_changed)
            self.refresh()
            if isinstance(value, self._types) and self.layer() is None:
                self.set_layer(value)
            return
        self.refresh()

    def refresh(self) -> None:
        current = self.layer()
        layers = [layer for layer in self._viewer.layers if isinstance(layer, self._types)]
        self.blockSignals(True)
        self.clear()
        for layer in layers:
            self.addItem(layer.name, layer)
        self.blockSignals(False)
        if current is not None and current in layers:
            self.set_layer(current)
        elif layers:
            self.setCurrentIndex(len(layers) - 1)
            self.currentIndexChanged.emit(self.currentIndex())
        else:
            self.currentIndexChanged.emit(-1)

    def layer(self) -> Any:
        return self.currentData() if self.currentIndex() >= 0 else None

    def set_layer(self, layer: Any) -> None:
        for i in range(self.count()):
            if self.itemData(i) is layer:
                self.setCurrentIndex(i)
                return


class ModelCombo(QComboBox):
    """Registry models (imported releases, fine-tuned), extra fixed choices, and "Load from file...".

    The list is re-read whenever the popup opens, the widget is shown, or the hub says a model was
    saved; it lists file names and index cards only (metadata already cached fills the tooltips),
    so no checkpoint is opened on the GUI thread.
    """

    def __init__(
        self,
        extra: tuple[tuple[str, str], ...] = (),
        parent: QWidget | None = None,
        choose_file: Callable[[QWidget], str | None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._extra = extra  # (label, value) shown first, e.g. ("ImageNet encoder", "imagenet")
        self._files: list[str] = []
        self.registered = 0  # how many registry models the list shows
        self._last_index = 0
        self.choose_file = choose_file or _file_dialog
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        self.activated.connect(self._on_activated)
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """Re-read the registry, keeping the current choice (or selecting ``select``, a name/path)."""
        from napari_madgnet.registry import list_models

        before = self.value()
        keep = select or before
        try:
            entries = list_models(read=False)  # names only: no checkpoint is opened on the GUI thread
        except OSError as exc:
            entries = []
            notify_warning(f"Cannot read the model folder ({exc}); check MADGNET_MODELS_DIR.")
        self.blockSignals(True)
        self.clear()
        for label, value in self._extra:
            self.addItem(label, value)
        self.registered = len(entries)
        for entry in entries:
            label = entry.name if entry.available else f"{entry.name} (unusable)"
            self.addItem(label, entry.name)
            tip = entry.problem or " · ".join(
                t for t in (entry.encoder, entry.trained_on, entry.description, str(entry.path)) if t
            )
            self.setItemData(self.count() - 1, tip, Qt.ToolTipRole)
        for path in self._files:
            self.addItem(Path(path).name, path)
            self.setItemData(self.count() - 1, path, Qt.ToolTipRole)
        self.addItem(LOAD_FROM_FILE, LOAD_FROM_FILE)
        index = self.findData(keep) if keep else -1
        if index < 0 and keep:
            wanted = keep.lower()
            index = next((i for i in range(self.count()) if str(self.itemData(i)).lower() == wanted), -1)
        self.setCurrentIndex(index if index >= 0 else 0)
        self.blockSignals(False)
        self._last_index = self.currentIndex()
        if self.value() != before:  # once, whatever the refill did to the index meanwhile
            self.currentIndexChanged.emit(self.currentIndex())

    def showPopup(self) -> None:
        self.refresh()
        super().showPopup()

    def value(self) -> str | None:
        """A registry name, a checkpoint path, an extra value, or None when nothing usable is listed."""
        data = self.currentData()
        return None if data in (None, LOAD_FROM_FILE) else str(data)

    def has_models(self) -> bool:
        return any(self.itemData(i) not in (LOAD_FROM_FILE,) for i in range(self.count()))

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != LOAD_FROM_FILE:
            self._last_index = index
            return
        path = self.choose_file(self)
        if not path:
            self.setCurrentIndex(min(self._last_index, self.count() - 1))
            return
        if path not in self._files:
            self._files.append(path)
        self.refresh(select=path)


def _file_dialog(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(
        parent, "Open a MADGNet checkpoint", "", "Checkpoints (*.pth *.pt *.tar *.ckpt);;All files (*)"
    )
    return path or None


class DeviceCombo(QComboBox):
    """auto, each CUDA device, MPS, CPU; ``note`` is a label saying when the work runs on the CPU."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.addItems(available_devices())
        self.setToolTip(
            "Where the network runs: auto picks a graphics card (CUDA, Apple MPS) when there is one, "
            "else the CPU."
        )
        self.note = note_label("warning")  # one line: a long note never overlaps the next row
        self.currentIndexChanged.connect(self._update_note)
        self._update_note()

    def value(self) -> str:
        return self.currentText()

    def _update_note(self, *_: Any) -> None:
        with contextlib.suppress(ValueError):
            device = resolve_device(self.value())
            cpu = device.type == "cpu"
            self.note.setText(
                "Runs on the CPU: fine for small images and short training, slow for large stacks."
                if cpu
                else ""
            )
            self.note.setVisible(cpu)
