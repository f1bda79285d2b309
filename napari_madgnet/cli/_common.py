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
