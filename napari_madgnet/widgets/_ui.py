"""Qt building blocks both docks use so that they fit a laptop screen and read plainly.

- ``ScrollDock``: a dock's controls inside a vertical scroll area, so a dock never needs more
  height than the window has (both docks together fit 1366 x 768).
- ``ElidedLabel`` and ``StatusLine``: messages take one line, cut with "..." when long; the
  full text is in the tooltip and, for the status, in a details box the user can open. A long
  message therefore never pushes rows over each other.
- ``Section``: a titled group of form rows that can fold away (the "Advanced" settings).
- ``tip``: a tooltip in plain words on a control and on its row's label.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

#: Colours of message levels (napari's dark theme; readable on the light one too).
LEVEL_COLOURS = {
    "info": "",
    "ok": "color: #7cc47c;",
    "warning": "color: #e0a040;",
    "error": "color: #e06060;",
}


class ScrollDock(QWidget):
    """Mixin base of a dock widget: ``self.body`` (a QVBoxLayout) sits in a vertical scroll area.

    The dock itself stays as small as napari lets it be; its controls scroll when the window is
    too short, and follow the dock's width (no horizontal scrolling).
    """

    def _make_body(self) -> QVBoxLayout:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        inner = QWidget()
        inner.setObjectName("madgnet-dock-body")
        self.scroll.setWidget(inner)
        outer.addWidget(self.scroll)
        body = QVBoxLayout(inner)
        body.setContentsMargins(4, 4, 4, 4)
        return body

    #: The height a dock asks for when docked: napari shares the dock area by the docks' hints,
    #: so two docks with modest hints split it evenly; their controls scroll in what they get.
    hint_height = 380

    def sizeHint(self) -> Any:
        hint = super().sizeHint()
        hint.setHeight(min(hint.height(), self.hint_height))
        return hint

    def fit_width(self) -> None:
        """Keep the dock at least as wide as its controls need (a scroll area would otherwise let
        napari make it narrower and clip them on the right). Call after building and whenever a
        section unfolds."""
        inner = self.scroll.widget()
        need = inner.minimumSizeHint().width() + self.scroll.verticalScrollBar().sizeHint().width() + 2
        self.scroll.setMinimumWidth(need)
        for section in inner.findChildren(Section):
            if section.toggle is not None and not getattr(section, "_fits", False):
                section.toggle.toggled.connect(lambda _on: self.fit_width())
                section._fits = True


class ElidedLabel(QLabel):
    """A one-line label that shows as much of its text as fits, with the whole in its tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.setMinimumWidth(20)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.setText(text)

    def setText(self, text: str) -> None:
        self._full = str(text or "")
        self._elide()

    def text(self) -> str:
        """The whole text, not the part on screen."""
        return self._full

    def shown_text(self) -> str:
        """The part on screen (ends in an ellipsis when cut)."""
        return super().text()

    def is_elided(self) -> bool:
        return self.shown_text() != self._full.replace("\n", " ")

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        one_line = self._full.replace("\n", " ")
        width = max(10, self.width() - 4)
        shown = self.fontMetrics().elidedText(one_line, Qt.ElideRight, width)
        QLabel.setText(self, shown)
        self.setToolTip(self._full if shown != one_line else "")


class StatusLine(QWidget):
    """A status message: one elided line, a "details" button when it is cut, and a details box
    with the whole text (selectable, word-wrapped). ``text()`` is the whole message."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = ElidedLabel()
        self.more = QToolButton()
        self.more.setText("details")
        self.more.setCheckable(True)
        self.more.setAutoRaise(True)
        self.more.setToolTip("Show the whole message")
        self.more.toggled.connect(self._toggle)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.details.setFrameShape(QFrame.StyledPanel)
        self.details.setVisible(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.more)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.details)
        self.level = "info"
        self._details: str | None = None
        self._refresh_button()

    def setText(self, text: str, level: str = "info", details: str | None = None) -> None:
        """Show ``text`` on the line; ``details`` (default: ``text``) is the whole message."""
        self.level = level
        self._details = details
        self.label.setText(text)
        self.label.setStyleSheet(LEVEL_COLOURS.get(level, ""))
        self.details.setText(details or text)
        if details:
            self.label.setToolTip(details)
        self._refresh_button()

    def text(self) -> str:
        """The whole message (the details when the line is a summary of them)."""
        return self._details or self.label.text()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._refresh_button()

    def _refresh_button(self) -> None:
        cut = bool(self.label.text()) and (self.label.is_elided() or bool(self._details))
        self.more.setVisible(cut or self.more.isChecked())

    def _toggle(self, on: bool) -> None:
        self.details.setVisible(on)
        self.more.setText("hide" if on else "details")


class Section(QGroupBox):
    """A titled group of form rows; ``foldable`` sections (e.g. "Advanced") start folded."""

    def __init__(self, title: str, *, foldable: bool = False, parent: QWidget | None = None) -> None:
        super().__init__("" if foldable else title, parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        self.toggle: QToolButton | None = None
        if foldable:
            self.toggle = QToolButton()
            self.toggle.setText(title)
            self.toggle.setCheckable(True)
            self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
            self.toggle.setArrowType(Qt.RightArrow)
            self.toggle.setAutoRaise(True)
            self.toggle.toggled.connect(self.set_expanded)
            outer.addWidget(self.toggle)
        self.content = QWidget()
        self.form = QFormLayout(self.content)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        outer.addWidget(self.content)
        if foldable:
            self.set_expanded(False)

    def set_expanded(self, on: bool) -> None:
        self.content.setVisible(on)
        if self.toggle is not None:
            self.toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
            if self.toggle.isChecked() != on:
                self.toggle.setChecked(on)

    def add_row(self, label: str | None, field: Any, help_text: str = "") -> None:
        """A row ``label: field`` (or the field alone) with ``help_text`` as both's tooltip."""
        if label is None:
            if isinstance(field, QWidget):
                self.form.addRow(field)
            else:
                self.form.addRow(field)
            if help_text and isinstance(field, QWidget):
                field.setToolTip(help_text)
            return
        name = QLabel(label)
        if help_text:
            name.setToolTip(help_text)
            tip(field, help_text)
        self.form.addRow(name, field)


def tip(field: Any, text: str) -> None:
    """Put ``text`` on a control (and every widget of a row layout) as its tooltip."""
    if isinstance(field, QWidget):
        if not field.toolTip():
            field.setToolTip(text)
        return
    if hasattr(field, "count"):  # a layout: its widgets
        for i in range(field.count()):
            widget = field.itemAt(i).widget()
            if widget is not None and not widget.toolTip():
                widget.setToolTip(text)


def note_label(level: str = "warning") -> ElidedLabel:
    """A one-line coloured note (e.g. "running on the CPU"), its full text in the tooltip."""
    label = ElidedLabel()
    label.setStyleSheet(LEVEL_COLOURS.get(level, ""))
    return label
