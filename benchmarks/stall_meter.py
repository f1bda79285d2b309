"""Measuring how long the Qt event loop stalls: a fast timer whose late ticks are the stalls.

Used by ``bench_responsiveness.py`` and the smoke test in ``tests/widgets``. A QTimer fires every
``interval_ms``; when the GUI thread is busy (or starved of the GIL) the next tick comes late.
The longest gap between ticks, minus the interval, is the longest time the user would have
waited for a repaint or a click to register.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

from qtpy.QtCore import QObject, QTimer


class StallMeter(QObject):
    """Start it, do the work with the event loop running, stop it, read ``stats()``."""

    def __init__(self, interval_ms: int = 5, parent: QObject | None = None, culprit_ms: float = 40.0) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.culprit_ms = culprit_ms
        self.gaps: list[float] = []
        self.culprits: list[dict] = []
        self._last: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self.culprits.clear()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = (now - self._last) * 1000.0
            self.gaps.append(gap)
            stall = gap - self.interval_ms
            if stall > self.culprit_ms:
                self.culprits.append({"stall_ms": round(stall, 1), "threads": _other_stacks()})
        self._last = now

    def stats(self) -> dict[str, float]:
        """Longest stall, 99th percentile and mean gap in milliseconds (stall = gap - interval)."""
        if not self.gaps:
            return {"ticks": 0, "max_stall_ms": float("nan"), "p99_gap_ms": float("nan"), "mean_gap_ms": 0.0}
        gaps = sorted(self.gaps)
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
        return {
            "ticks": len(gaps),
            "max_stall_ms": round(max(0.0, gaps[-1] - self.interval_ms), 1),
            "p99_gap_ms": round(p99, 1),
            "mean_gap_ms": round(sum(gaps) / len(gaps), 2),
        }


def _other_stacks(depth: int = 4) -> dict[str, list[str]]:
    """Where the other threads are now, just after a stall: a worker that held the GIL through the
    stall has only just let go, so its innermost frames point at the code that held it."""
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    stacks = {}
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        frames = traceback.extract_stack(frame)[-depth:]
        stacks[names.get(ident, str(ident))] = [
            f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
        ]
    return stacks
