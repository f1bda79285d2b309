"""Atomic writes: a temporary file beside the target, renamed onto it when complete.

Every writer of the package (images, masks, checkpoints, tables, exports) goes through
``atomic_path`` (re-exported as ``napari_madgnet.io.atomic_path``), so a crash, a kill or a full
disk never leaves a half-written file under the final name, and an existing file is replaced only
when asked. A module of its own so that the format modules (``medical``, ``video``) can use it
without importing ``io``, which dispatches to them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _format_suffix(target: Path) -> str:
    """The suffix a writer reads the format from, compressed ones whole: ".nii.gz", ".tif"."""
    suffixes = target.suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in (".gz", ".bz2", ".xz"):
        return "".join(suffixes[-2:])
    return target.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is left as it was. The rename
    is atomic on POSIX and Windows, so readers never see a half-written file.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the whole format suffix (".nii.gz", not ".gz"): writers such as
    # SimpleITK and FFmpeg choose the format from it.
    suffix = _format_suffix(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary shared files
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable where the OS allows a directory fsync (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
