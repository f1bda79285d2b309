"""Pieces the sub-commands share: progress bars, user errors, and stopping on Ctrl-C / SIGTERM."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from napari_madgnet.jobs import CancelToken, Progress


def tqdm_callback(
    desc: str, *, unit: str = "step", disable: bool = False
) -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """A callback that moves a tqdm bar over training steps (or other units), and a function that
    closes it.

    The bar counts ``details["step"]`` of ``details["total_steps"]`` ("step 12/400, 1.4 s/step,
    ETA"); its postfix is the loss and validation Dice when the event has a loss, else the
    event's message (validating, a file's score). Warnings are printed on their own line, also
    when ``disable`` hides the bar. The bar appears with the first event, so a run refused
    before its work (a name in use, a bad folder) prints only its error.
    """
    from tqdm import tqdm

    bar = None

    def update(event: Progress) -> None:
        nonlocal bar
        details = event.details
        if details.get("warning"):
            tqdm.write(f"note: {event.message}", file=sys.stderr)
            return
        if bar is None:
            bar = tqdm(
                total=None,
                desc=desc,
                unit=unit,
                leave=True,
                dynamic_ncols=True,
                file=sys.stderr,
                disable=disable,
            )
        if "step" in details:
            total = details.get("total_steps")
            if total and bar.total != total:
                bar.total = total
            bar.n = int(details["step"])
        if "loss" in details:
            val = details.get("val", {}).get("dice") if isinstance(details.get("val"), dict) else None
            post = f"loss {details['loss']:.4f}"
            bar.set_postfix_str(post + (f", val Dice {val:.3f}" if val is not None else ""), refresh=False)
        else:
            bar.set_postfix_str(event.message, refresh=False)
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def user_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Print the errors a user can fix (``errors.is_user_error``) as one line and exit 2."""
    from napari_madgnet.errors import is_user_error

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            print(f"madgnet: error: {exc}", file=sys.stderr)
            return 2

    return wrapper


@contextlib.contextmanager
def stop_on_signals(
    token: CancelToken, what: str = "training", *, note: str | None = None
) -> Iterator[CancelToken]:
    """While the body runs, the first Ctrl-C (SIGINT) or SIGTERM asks ``token`` to stop (the job
    ends after its current step and keeps what Stop keeps); a second Ctrl-C interrupts at once.
    ``note``: what the user is told instead of the training message (e.g. for ``predict``).

    Handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield token
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        text = note or (
            f"stopping {what} after the current step and keeping the best model so far "
            "(press Ctrl-C again to abort at once, keeping nothing new)."
        )
        print(f"\n{name}: {text}", file=sys.stderr, flush=True)
        token.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield token
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: Exit status of a run stopped by the user (128 + SIGINT), as shells report Ctrl-C.
EXIT_STOPPED = 130
