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
import re
import shutil
import tempfile
import time
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
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{_temp_owner()}-", suffix=".tmp" + suffix, dir=target.parent
    )
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


def _temp_owner() -> str:
    """``<host tag>-<pid>``: the part of a temporary name that says who writes it."""
    from napari_madgnet.locks import host_tag

    return f"{host_tag()}-{os.getpid()}"


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path`` for a folder written in place (a zarr store), in the
    pattern ``remove_stale_temp_files`` knows: ``.<name>.<host>-<pid>-<random>.tmp``."""
    target = Path(path)
    return target.with_name(f".{target.name}.{_temp_owner()}-{os.urandom(4).hex()}.tmp")


# ``.<name>.<host tag>-<pid>-<random>.tmp<suffix>``: atomic_path's files and temp_sibling's folders;
# ``.<name>.<random>.tmp<suffix>`` and ``.<name>.<time_ns>.tmp``: earlier versions' (no owner).
_OWNED_TEMP = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[A-Za-z0-9_]{8}\.tmp(?P<rest>.*)$"
)
_OLD_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}|\d{16,20})\.tmp(?P<rest>.*)$")
#: Temporary files of no known owner (earlier versions, other hosts) are left alone this long.
UNOWNED_TEMP_AGE_S = 24 * 3600.0


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers of this package left in ``folder``.

    A write interrupted by kill -9 (or a power cut) leaves its hidden temporary file behind.
    Only this package's pattern is touched: a temporary file of this host whose process is gone,
    or one without an owner (older versions, another host) untouched for a day. Files being
    written by a live process, on any host, are kept. Returns what was removed.
    """
    from napari_madgnet.locks import host_tag, pid_alive

    root = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    here, now = host_tag(), time.time()
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        owned = _OWNED_TEMP.match(entry.name)
        match = owned or _OLD_TEMP.match(entry.name)
        # the part after ".tmp" is the target's format suffix (or nothing): the name atomic_path gave
        if match is None or match["rest"] not in (
            "",
            Path(match["name"]).suffix,
            _format_suffix(Path(match["name"])),
        ):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if owned and owned["host"] == here:
            stale = not pid_alive(int(owned["pid"]))
        else:
            stale = age > UNOWNED_TEMP_AGE_S
        if not stale:
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


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
