"""What long jobs (inference, training) share: progress reports and cooperative cancellation.

The engines are generators that yield ``Progress`` events; a plain function drives them for
scripts and the CLI, and napari's ``thread_worker`` drives the same generator in the widgets.
A ``CancelToken`` lets any thread ask a job to stop at its next check point (between tiles,
slices or training steps); the job then raises ``Cancelled`` and leaves no partial result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """The job was cancelled by the user; nothing partial was returned or written."""


@dataclass(frozen=True)
class Progress:
    """One progress report: ``fraction`` in [0, 1], a human message, and job-specific details."""

    fraction: float
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Thread-safe flag that a job polls; ``cancel()`` may be called from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled by the user.")


def check_cancelled(token: CancelToken | None) -> None:
    """Raise ``Cancelled`` if ``token`` was cancelled; a ``None`` token never cancels."""
    if token is not None:
        token.raise_if_cancelled()


def run_to_end(job: Generator[Progress, None, T], callback: ProgressCallback | None = None) -> T:
    """Drive a job generator to its end, passing each report to ``callback``; return its result.

    The one driver behind ``segment``, ``train`` and ``finetune``: scripts and the CLI call these,
    while the widgets run the same generators in napari thread workers.
    """
    while True:
        try:
            report = next(job)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(report)
