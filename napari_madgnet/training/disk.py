"""What a fine-tuning run leaves on disk, and saying how much is kept where.

A run folder holds the training state (``last_state.pt``: weights, optimiser moments, history;
about four times the model's size), the best model so far (``best.pt``, the same weights as the
saved model) and the log (``train_log.jsonl``, a few KB). After a successful run the saved model
holds everything needed to use it and to repeat the run (its metadata records the recipe), so by
default (``keep_run="none"``) the state and checkpoints go and the log stays; ``"resume"`` keeps
what continuing the run needs; ``"all"`` keeps the folder as it is. A stopped run keeps
everything (it is the run to resume). A run that failed before writing anything leaves no folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from napari_madgnet.errors import ConfigError
from napari_madgnet.training import checkpoint as ckpt

#: Choices of ``keep_run``: what stays in the run folder after a successful run.
KEEP_RUN: tuple[str, ...] = ("none", "resume", "all")
#: Files resuming needs (the best model is reloaded at the end of a resumed run).
RESUME_FILES: tuple[str, ...] = (ckpt.LAST_STATE, ckpt.BEST_MODEL)
LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class DiskUse:
    """Bytes kept and removed by ``tidy_run_dir`` for the model file and its run folder."""

    model_path: Path | None
    model_bytes: int
    run_dir: Path | None
    run_bytes: int
    removed_bytes: int
    policy: str

    def describe(self) -> str:
        """E.g. "On disk: the model, 128 MB, at M; its run folder R keeps the log (4 KB); 510 MB of
        training state removed (keep it with keep-run 'resume')."."""
        parts = []
        if self.model_path is not None:
            parts.append(f"the model, {format_bytes(self.model_bytes)}, at {self.model_path}")
        if self.run_dir is not None and self.run_dir.is_dir():
            resumable = (self.run_dir / ckpt.LAST_STATE).is_file()
            what = "keeps the training state to continue the run" if resumable else "keeps the log"
            parts.append(f"its run folder {self.run_dir} {what} ({format_bytes(self.run_bytes)})")
        text = "On disk: " + "; ".join(parts) if parts else "Nothing was kept on disk"
        if self.removed_bytes:
            text += (
                f"; {format_bytes(self.removed_bytes)} of training state removed "
                "(keep it next time with keep-run 'resume' to continue a run)"
            )
        return text + "."


def format_bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (powers of 1000, as file managers show sizes)."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} GB"


def check_keep_run(policy: str) -> str:
    """Return ``policy`` if it is one of ``KEEP_RUN``; raise ``ConfigError`` otherwise."""
    if policy not in KEEP_RUN:
        raise ConfigError(f"keep_run {policy!r}: choose one of {', '.join(KEEP_RUN)}.")
    return policy


def folder_bytes(folder: Path | None) -> int:
    if folder is None or not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def tidy_run_dir(
    run_dir: Path | None, model_path: Path | None, policy: str, stopped: str = "finished"
) -> DiskUse:
    """Apply ``policy`` to the run folder of a run that ended as ``stopped``; report what is kept.

    Only a finished or early-stopped run is tidied ("cancelled" keeps all: it is resumable). Only
    the engine's own files are removed (never anything else a user put in the folder).
    """
    check_keep_run(policy)
    removed = 0
    if run_dir is not None and run_dir.is_dir() and stopped != "cancelled" and policy != "all":
        keep = {LOG_FILE} | (set(RESUME_FILES) if policy == "resume" else set())
        for name in (*RESUME_FILES, LOG_FILE):
            f = run_dir / name
            if name not in keep and f.is_file():
                removed += f.stat().st_size
                f.unlink()
    model_bytes = model_path.stat().st_size if model_path is not None and model_path.is_file() else 0
    return DiskUse(model_path, model_bytes, run_dir, folder_bytes(run_dir), removed, policy)


def remove_if_empty(folder: Path | None, existed: bool) -> None:
    """Remove ``folder`` after a failed run when this run created it and left nothing in it."""
    if folder is None or existed or not folder.is_dir():
        return
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty


__all__ = ["KEEP_RUN", "DiskUse", "check_keep_run", "format_bytes", "remove_if_empty", "tidy_run_dir"]
