"""A read-only table of the core's tables (measurements, per-slice and per-object rows).

``fill`` takes either form of ``napari_madgnet.tables.Table`` (a dict of columns or a list of
row dicts), shows numbers at a readable precision (the CSV export keeps full precision) and
remembers each row's position in the table it came from, so a click maps back to its data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from napari_madgnet.tables import Table, table_rows


def format_value(value: Any) -> str:
    """Integers as they are, floats to 4 significant digits, nan as '-', infinities as 'inf'."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


class TableView(QTableWidget):
    """A compact, read-only, row-selecting table; ``row_clicked(i)`` runs with the data row ``i``."""

    def __init__(self, parent: QWidget | None = None, max_height: int = 220) -> None:
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setMaximumHeight(max_height)
        self.on_row: Callable[[int], None] | None = None
        self.cellClicked.connect(self._clicked)

    def fill(self, table: Table, columns: list[str] | None = None) -> None:
        """Show ``table`` (only ``columns``, in that order, when given)."""
        header, rows = table_rows(table)
        keep = [header.index(c) for c in columns if c in header] if columns else list(range(len(header)))
        self.clear()
        self.setColumnCount(len(keep))
        self.setRowCount(len(rows))
        self.setHorizontalHeaderLabels([header[k] for k in keep])
        for r, row in enumerate(rows):
            for c, k in enumerate(keep):
                item = QTableWidgetItem(format_value(row[k]))
                item.setData(Qt.ItemDataRole.UserRole, r)
                self.setItem(r, c, item)

    def header(self) -> list[str]:
        return [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]

    def cell_text(self, row: int, column: str) -> str:
        return self.item(row, self.header().index(column)).text()

    def _clicked(self, row: int, _column: int) -> None:
        if self.on_row is not None:
            self.on_row(row)
