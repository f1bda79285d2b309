"""A live plot of training loss and validation Dice for the Fine-tune dock.

Points arrive with every training step; drawing a matplotlib figure takes tens of milliseconds,
so points are only stored on arrival and the figure is redrawn at most every ``interval_ms``.
"""

from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget


class TrainingPlot(QWidget):
    """Loss (left axis, log scale) and validation Dice (right axis, 0..1) against the step."""

    def __init__(self, parent: QWidget | None = None, interval_ms: int = 400) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.dices: list[float] = []
        self.draws = 0
        self.figure = Figure(figsize=(3.2, 2.0), dpi=90, tight_layout=True)
        self.figure.patch.set_facecolor("#262930")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        for ax in (self.ax, self.ax2):
            ax.set_facecolor("#262930")
            ax.tick_params(colors="#d0d0d0", labelsize=7)
            for spine in ax.spines.values():
                spine.set_color("#808080")
        self.ax.set_xlabel("step", color="#d0d0d0", fontsize=8)
        self.ax.set_ylabel("training loss", color="#4fa3e0", fontsize=8)
        self.ax2.set_ylabel("validation Dice", color="#f0a030", fontsize=8)
        self.ax2.set_ylim(0.0, 1.0)
        (self._loss_line,) = self.ax.plot([], [], color="#4fa3e0", lw=1.2)
        (self._dice_line,) = self.ax2.plot([], [], color="#f0a030", lw=1.5, marker="o", ms=3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._redraw_if_dirty)
        self._timer.start()

    def clear(self) -> None:
        self.steps.clear()
        self.losses.clear()
        self.val_steps.clear()
        self.dices.clear()
        self._dirty = True

    def add(self, step: int, loss: float | None, dice: float | None = None) -> None:
        """Store one step's values; the figure is redrawn on the next timer tick."""
        if loss is not None and math.isfinite(loss):
            self.steps.append(step)
            self.losses.append(loss)
        if dice is not None and math.isfinite(dice):
            self.val_steps.append(step)
            self.dices.append(dice)
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.isVisible():
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        self._loss_line.set_data(self.steps, self.losses)
        self._dice_line.set_data(self.val_steps, self.dices)
        if self.steps:
            self.ax.set_xlim(0, max(self.steps[-1], 1) * 1.05)
            lo, hi = min(self.losses), max(self.losses)
            pad = (hi - lo) * 0.1 or max(abs(hi), 1e-3) * 0.1
            self.ax.set_ylim(lo - pad, hi + pad)
        self.canvas.draw_idle()
        self.draws += 1
