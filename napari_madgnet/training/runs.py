"""A training run's folder: what it holds, how a run is continued, and the disk space it needs.

A fine-tuning run folder (``<model stem>_run`` beside the model by default) holds::

    run.json            what the run is: model file and name, settings, its data (file paths and
                        sha256 for the CLI, a fingerprint of the annotated planes always), status
    last_state.pt       model, optimiser, scheduler and scaler state, step, history (resume)
    best.pt             the best validated model so far
    train_log.jsonl     one line per step
    .madgnet-run.lock   while a run is writing into the folder (``locks.FileLock``)

``read_run`` tells a caller (the CLI's ``--resume``, a dock's "Continue") what is there;
``check_space`` refuses a run the disk cannot hold before its first step; ``rescue_save`` keeps the
trained weights somewhere when the final save fails.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_madgnet.errors import UserError
from napari_madgnet.training.checkpoint import BEST_MODEL, LAST_STATE

RUN_FILE = "run.json"
RUN_FORMAT = "napari-madgnet-finetune-run"
LOCK_NAME = ".madgnet-run.lock"
TRAIN_LOG = "train_log.jsonl"
#: Files that mark a folder as holding an earlier run (a new run there would mix with them).
RUN_FILES: tuple[str, ...] = (RUN_FILE, LAST_STATE, BEST_MODEL, TRAIN_LOG)


class RunFolderError(UserError):
    """A run folder that cannot be used as asked; ``run_dir`` names it."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class UnfinishedRunError(RunFolderError):
    """A new run was pointed at the folder of an earlier run that can be continued.

    A dock catches this to offer "Continue" (``training.finetune.iter_resume_finetune``).
    """

    def __init__(self, message: str, run_dir: Path, info: RunInfo | None) -> None:
        super().__init__(message, run_dir)
        self.info = info


class NoSpaceError(UserError):
    """Too little free disk space for a run; the message says how much is needed where."""


@dataclass
class RunInfo:
    """What ``read_run`` found in a run folder."""

    run_dir: Path
    manifest: dict[str, Any]
    step: int = 0  # optimiser steps in last_state.pt (0: no state yet)
    total_steps: int | None = None
    #: running (a live run holds the folder), interrupted (killed), failed, cancelled (stopped by
    #: the user), early_stopping or finished
    status: str = "unknown"
    files: list[str] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        return Path(self.manifest["model_path"])

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.model_path.stem)

    @property
    def resumable(self) -> bool:
        """More steps are planned than done (a killed, failed or stopped run, not a running one)."""
        if self.status in ("finished", "early_stopping", "running"):
            return False
        return self.total_steps is None or self.step < self.total_steps

    def describe(self) -> str:
        total = f" of {self.total_steps}" if self.total_steps else ""
        return f"{self.status} at step {self.step}{total}, model {self.model_path}"


# ------------------------------------------------------------------------------------- run.json
def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Path, size and full sha256 of an input file, as ``run.json`` stores it."""
    from napari_madgnet.hashing import sha256_file

    p = Path(path).expanduser().resolve()
    return {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def check_file_record(record: dict[str, Any], given: str | os.PathLike[str] | None, role: str) -> Path:
    """The file to read for ``role`` ("image", "labels") on resume: ``given`` or the stored path,
    which must have the sha256 the run started with. Raises ``RunFolderError``."""
    path = Path(given).expanduser() if given else Path(record["path"])
    if not path.is_file():
        raise UserError(
            f"The run's {role} {path} is not there any more; pass it with --{role} (same content, any path)."
        )
    from napari_madgnet.hashing import sha256_file

    digest = sha256_file(path)
    if digest != record.get("sha256"):
        raise UserError(
            f"{path} is not the {role} this run started with (sha256 {digest[:12]}... instead of "
            f"{str(record.get('sha256'))[:12]}...; it was {record['path']}). Resuming needs the same "
            "image and labels; start a new run for changed data."
        )
    return path


def data_fingerprint(data: Any) -> str:
    """sha256 over the annotated planes a run trains and validates on (images, targets, masks)."""
    digest = hashlib.sha256()
    for part, items in (("train", data.train), ("val", data.val)):
        digest.update(part.encode())
        for item in items:
            it = item.load()
            for arr in (it.image, it.target, it.valid):
                digest.update(str((arr.shape, str(arr.dtype))).encode())
                digest.update(memoryview(arr.tobytes()))
    return digest.hexdigest()


def write_run_file(run_dir: Path, manifest: dict[str, Any]) -> Path:
    from napari_madgnet.io import atomic_path

    path = run_dir / RUN_FILE
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return path


def update_run_file(run_dir: Path, **changes: Any) -> None:
    """Merge ``changes`` into ``run.json`` (no-op when the folder holds none)."""
    path = run_dir / RUN_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    manifest.update(changes, updated_at=now())
    write_run_file(run_dir, manifest)


def read_run(run_dir: str | os.PathLike[str], *, lock_held_here: bool = False) -> RunInfo:
    """What a fine-tuning run folder holds: its ``run.json``, the step of its state, its status
    ("running" while a live run holds the folder's lock; ``lock_held_here``: the caller holds it).

    Raises ``RunFolderError`` when the folder is missing or holds no fine-tuning run.
    """
    root = Path(run_dir).expanduser()
    if not root.is_dir():
        raise RunFolderError(f"{root}: no such run folder.", root)
    try:
        manifest = json.loads((root / RUN_FILE).read_text())
    except FileNotFoundError:
        raise RunFolderError(
            f"{root} holds no {RUN_FILE}: it is not the run folder of a fine-tuning run (a `madgnet train` "
            "folder continues with `madgnet train --resume`).",
            root,
        ) from None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{root / RUN_FILE} cannot be read ({exc}).", root) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{root / RUN_FILE} is not a napari-madgnet run description.", root)
    info = RunInfo(root, manifest, status=str(manifest.get("status", "unknown")))
    info.total_steps = manifest.get("total_steps")
    info.files = sorted(f for f in RUN_FILES if (root / f).exists())
    if (root / LAST_STATE).is_file():
        import torch

        try:
            state = torch.load(root / LAST_STATE, map_location="cpu", weights_only=True, mmap=True)
            info.step = int(state.get("step", 0))
        except Exception as exc:
            raise RunFolderError(
                f"{root / LAST_STATE} cannot be read ({type(exc).__name__}: {exc}); this run cannot be "
                "continued. Start a new one.",
                root,
            ) from exc
    from napari_madgnet.locks import lock_holder

    if not lock_held_here and lock_holder(root / LOCK_NAME) is not None:
        info.status = "running"
    elif info.status == "running":
        info.status = "interrupted"  # it said running, but nobody holds the folder's lock: killed
    return info


def check_new_run_folder(run_dir: Path) -> None:
    """Refuse a folder that holds an earlier run's files: a new run would mix its log and states
    with them. Raises ``UnfinishedRunError`` (continuable) or ``RunFolderError``."""
    found = [f for f in RUN_FILES if (run_dir / f).exists()]
    if not found:
        return
    try:
        info: RunInfo | None = read_run(run_dir, lock_held_here=True)  # the new run holds it
    except RunFolderError:
        info = None
    if info is not None and info.resumable:
        raise UnfinishedRunError(
            f"{run_dir} holds an earlier run ({info.describe()}). Continue it (CLI: madgnet finetune "
            f"--resume {run_dir}), or delete the folder to start afresh.",
            run_dir,
            info,
        )
    what = info.describe() if info is not None else ", ".join(found)
    raise RunFolderError(
        f"{run_dir} holds an earlier run ({what}); choose another name or run folder, or delete it.",
        run_dir,
    )


# ------------------------------------------------------------------------------------ disk space
def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (what ``disk_usage`` and ``stat`` can look at)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _mb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def state_sizes(net: Any) -> tuple[int, int]:
    """(bytes of a training state, bytes of a saved model) for a network trained with Adam.

    A state holds the weights and Adam's two moment estimates per parameter (3x the parameters)
    plus the buffers; a model file holds parameters and buffers once.
    """
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    return 3 * params + buffers, params + buffers


def check_space(net: Any, out: Path | None, model_path: Path | None) -> None:
    """Refuse (``NoSpaceError``) a run whose checkpoints and model will not fit on the disk.

    Needed in the run folder: one training state, a second while it is replaced (the atomic
    write keeps the old one until the new one is complete), and the best model with its own
    temporary copy; beside the model: the model. Files already there (a resumed run) count as
    space that is reused. Folders on one file system share its free space.
    """
    state, model = state_sizes(net)
    slack = 16 * 2**20  # logs, run.json, file-system overhead
    needs: dict[Path, int] = {}
    if out is not None:
        need = state + model + slack
        need += 0 if (out / LAST_STATE).is_file() else state
        need += 0 if (out / BEST_MODEL).is_file() else model
        needs[out] = need
    if model_path is not None:
        needs[model_path.parent] = needs.get(model_path.parent, 0) + model + slack
    by_device: dict[int, tuple[Path, int, list[Path]]] = {}
    for folder, need in needs.items():
        base = _existing(folder)
        try:
            dev = os.stat(base).st_dev
        except OSError:
            continue
        first, total, folders = by_device.get(dev, (base, 0, []))
        by_device[dev] = (first, total + need, [*folders, folder])
    for base, need, folders in by_device.values():
        try:
            free = shutil.disk_usage(base).free
        except OSError:
            continue
        if free < need:
            where = " and ".join(str(f) for f in folders)
            raise NoSpaceError(
                f"Not enough free disk space for this run: it needs about {_mb(need)} in {where} (training "
                f"states of {_mb(state)} and models of {_mb(model)}), and {_mb(free)} are free. Free some "
                "space, or choose a folder on another disk (--out)."
            )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def rescue_save(
    save: Callable[[Path], Path], wanted: Path, places: list[Path], error: OSError
) -> tuple[Path | None, str]:
    """The final model could not be written to ``wanted``: try ``places`` (folders) in turn.

    ``save(path)`` writes the model (atomically). Returns (where it was saved or None, the
    message for the user, which names the place or says that nothing worked).
    """
    why = error.strerror or str(error)
    tried = []
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for folder in [*places, Path(tempfile.gettempdir())]:
        target = folder / f"{wanted.stem}-rescued-{stamp}{wanted.suffix or '.pt'}"
        try:
            saved = save(target)
        except OSError as exc:
            tried.append(f"{folder} ({exc.strerror or exc})")
            continue
        return saved, (
            f"The model could not be written to {wanted} ({why}); it was kept at {saved} instead. Free "
            f"some space and move it: mv '{saved}' '{wanted}'."
        )
    return None, (
        f"The model could not be written to {wanted} ({why}), nor to {'; '.join(tried)}. Free some space;"
    )


__all__ = [
    "RUN_FILE",
    "NoSpaceError",
    "RunFolderError",
    "RunInfo",
    "UnfinishedRunError",
    "check_new_run_folder",
    "check_space",
    "data_fingerprint",
    "file_record",
    "read_run",
    "rescue_save",
]
