"""One long job at a time, off the GUI thread: a core generator in a napari thread worker.

The core's engines yield ``jobs.Progress`` and return their result; ``Job`` runs such a generator
in ``napari.qt.threading.create_worker``, mirrors each report in a napari progress bar, and calls
back on the GUI thread when the job yields, returns, is cancelled or fails. Cancelling sets the
core's ``CancelToken``, which the engines poll between tiles, planes and steps.

The last word is the job's: once a job has returned, failed or been cancelled, a progress report
still being handled (napari's progress bar can process events, so the end may be handled inside a
report's handler) no longer reaches the widget, so the final status always shows last. When the
widget's window closes (or the dock is removed) the job stops as Stop stops it, the callbacks are
detached (they would touch deleted widgets), and the closing waits for the job to end, so a
training run keeps its model and nothing runs on after the window is gone (``Job.shutdown``).

While a job runs, the objects that exist when it starts (napari's, in the hundreds of thousands)
are frozen out of Python's garbage collector: a full collection triggered by the worker's
allocations would otherwise scan them all while holding the GIL, freezing the window for
0.2-0.4 s (measured by ``benchmarks/bench_responsiveness.py``). They are unfrozen when it ends.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import traceback
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress as napari_progress

from napari_madgnet.jobs import Cancelled, CancelToken, Progress

STEPS = 1000  # resolution of the napari progress bar


class _GcFreeze:
    """``gc.freeze()`` while at least one job runs, ``gc.unfreeze()`` when the last one ends.

    gc.freeze/unfreeze are process-wide and do not nest: a second job (e.g. Fine-tune's "segment
    when done", started before the first job's cleanup) must not unfreeze for the first. One
    counter per window-less process is the minimum state this needs; it is only touched on the
    GUI thread.
    """

    def __init__(self) -> None:
        self.depth = 0

    def enter(self) -> None:
        if self.depth == 0:
            gc.freeze()
        self.depth += 1

    def exit(self) -> None:
        if self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            gc.unfreeze()


GC_FREEZE = _GcFreeze()

#: How long closing a window waits for a stopping job (a training step, a validation pass and
#: saving the model on a slow CPU); after that the job is left to finish on its own, detached.
SHUTDOWN_WAIT_S = 300.0


class _StopLikeStop(GeneratorWorker):
    """A generator worker whose ``quit()`` (what napari calls on its tasks when a window closes)
    stops the job through its ``CancelToken`` like Stop, instead of abandoning the generator at
    its next yield (which would skip saving the model)."""

    job: Job | None = None

    def quit(self) -> None:
        job = self.job
        if job is not None:
            job.shutdown()
        else:  # pragma: no cover - a worker without its job
            super().quit()


def _run_to_end(done: threading.Event, func: Callable[..., Generator[Progress, None, Any]], *args: Any):
    """The job's generator; ``done`` is set when it has ended, however it ended."""
    try:
        return (yield from func(*args))
    finally:
        done.set()


class Job:
    """A running job: ``cancel()`` asks it to stop; callbacks run on the GUI thread.

    ``func(token, *args)`` must be a generator function; it yields ``Progress`` and returns the
    result. ``on_done(result)``, ``on_cancelled()``, ``on_error(exc)`` and ``on_progress(p)`` are
    optional; ``on_finally()`` always runs last.
    """

    def __init__(
        self,
        func: Callable[..., Generator[Progress, None, Any]],
        *args: Any,
        description: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_finally: Callable[[], None] | None = None,
    ) -> None:
        self.token = CancelToken()
        self.description = description
        self._on_progress = on_progress
        self._on_done = on_done
        self._on_cancelled = on_cancelled
        self._on_error = on_error
        self._on_finally = on_finally
        self._bar: Any = None
        self._done_steps = 0
        self.running = False
        self.ended = False  # returned, failed or cancelled: no progress report is shown after that
        self.detached = False  # the widget is gone: no callback is called any more
        self.done = threading.Event()  # the generator has ended (set in the worker thread)
        self.worker = create_worker(
            _run_to_end,
            self.done,
            func,
            self.token,
            *args,
            _start_thread=False,
            _ignore_errors=True,
            _worker_class=_StopLikeStop,
        )
        self.worker.job = self
        self.worker.yielded.connect(self._yielded)
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(self._finished)

    def start(self) -> Job:
        self._bar = napari_progress(total=STEPS, desc=self.description)
        self.running = True
        GC_FREEZE.enter()
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next check point; the callbacks still arrive."""
        self.token.cancel()

    def detach(self) -> None:
        """No callback reaches the widget any more (its window is closing or gone)."""
        self.detached = True

    def shutdown(self, timeout: float = SHUTDOWN_WAIT_S) -> bool:
        """Stop like Stop, detach the callbacks, and wait up to ``timeout`` s for the job to end
        (a training run saves its best model meanwhile). True when it ended in time."""
        self.detach()
        self.token.cancel()
        if self.done.is_set() or not self.running:
            return True
        print(f"napari-madgnet: stopping '{self.description}' before closing...", file=sys.stderr, flush=True)
        ended = self.done.wait(timeout)
        if not ended:
            print(
                f"napari-madgnet: '{self.description}' did not stop within {timeout:.0f} s; "
                "it ends on its own after its current step.",
                file=sys.stderr,
                flush=True,
            )
        return ended

    def _yielded(self, report: Any) -> None:
        if not isinstance(report, Progress) or self.ended or self.detached:
            return
        bar = self._bar  # updating the bar may process events, and the job may finish meanwhile
        if bar is not None:
            target = round(max(0.0, min(1.0, report.fraction)) * STEPS)
            if target > self._done_steps:
                self._done_steps, step = target, target - self._done_steps
                bar.update(step)
            if report.message:
                bar.set_description(f"{self.description}: {report.message}")
        # the job may have ended while the bar processed events: its final word stays on screen
        if self._on_progress is not None and not (self.ended or self.detached):
            self._on_progress(report)

    def _returned(self, result: Any) -> None:
        self.ended = True
        if self.detached:
            return
        if self.token.cancelled and result is None:
            if self._on_cancelled:
                self._on_cancelled()
            return
        if self._on_done is not None:
            self._on_done(result)

    def _errored(self, exc: BaseException) -> None:
        self.ended = True
        if isinstance(exc, Cancelled):
            if self._on_cancelled and not self.detached:
                self._on_cancelled()
            return
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        if self._on_error is not None and not self.detached:
            self._on_error(exc)

    def _finished(self) -> None:
        self.running = False
        self.ended = True
        GC_FREEZE.exit()
        if self._bar is not None:
            with contextlib.suppress(Exception):
                self._bar.close()
            self._bar = None
        if self._on_finally is not None and not self.detached:
            self._on_finally()


def stop_with_owner(owner: Any, jobs: Callable[[], list[Job | None]]) -> None:
    """Stop ``owner``'s jobs when it is destroyed (its window closed): ``jobs()`` lists them.

    Connected to ``destroyed``, whose handler must not touch the widget's Qt side (it is being
    deleted): ``jobs`` reads plain Python attributes only.
    """

    def on_destroyed(*_: Any) -> None:
        for job in jobs():
            if job is not None and job.running:
                job.shutdown()

    owner.destroyed.connect(on_destroyed)
