"""Pieces the training sub-commands share: a tqdm progress bar over ``jobs.Progress`` events."""

from __future__ import annotations

from collections.abc import Callable

from napari_madgnet.jobs import Progress


def tqdm_callback(desc: str) -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """A callback that moves a tqdm bar (percent) and a function that closes it."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", leave=True, dynamic_ncols=True)

    def update(event: Progress) -> None:
        bar.n = int(event.fraction * 1000)
        bar.set_postfix_str(event.message, refresh=False)
        bar.refresh()

    return update, bar.close


def user_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Turn the errors a user can fix (bad data, paths, settings) into one line and exit code 2."""
    import functools
    import sys

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
            print(f"madgnet: error: {exc}", file=sys.stderr)
            return 2

    return wrapper
