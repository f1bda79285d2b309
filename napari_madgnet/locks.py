"""Lock files that say who holds them: one run per output name, per model file, per run folder.

A lock is a small JSON file created with ``O_CREAT | O_EXCL`` (only one process can create it)
that names its owner: process id, host, start time and what it is doing, so a refused run can
say which run holds the name. On POSIX the owner also holds an ``flock`` on it for its whole
life; the kernel drops that lock when the process dies, even on kill -9, so a lock file left
behind by a dead run is recognised (no ``flock`` holder, and on this host its PID is gone) and
taken over with a note. A lock from another host is never taken over: the message names the
file to delete once that run is known to be gone.

Also here: ``pid_alive`` and ``host_tag``, which ``io`` uses to tell stale temporary files
(from a killed process on this host) from ones being written right now.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from napari_madgnet.errors import UserError

try:  # POSIX: the kernel's advisory lock dies with its process
    import fcntl
except ImportError:  # Windows: the lock file and the PID check only
    fcntl = None  # type: ignore[assignment]


class LockedError(UserError):
    """Another run holds the lock; ``owner`` is what it wrote into the lock file."""

    def __init__(self, message: str, path: Path, owner: dict[str, Any]) -> None:
        super().__init__(message)
        self.path = path
        self.owner = owner


def host_name() -> str:
    return socket.gethostname() or "localhost"


def host_tag() -> str:
    """Six hex digits naming this host, short enough for temporary file names."""
    return hashlib.sha1(host_name().encode()).hexdigest()[:6]


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (conservatively True where unknown)."""
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def describe_owner(owner: dict[str, Any]) -> str:
    """'fine-tuning 'x' (PID 12, host h, started 2024-...)' from a lock file's content."""
    what = owner.get("what") or "another run"
    bits = [f"PID {owner.get('pid', '?')}", f"host {owner.get('host', '?')}"]
    if owner.get("started"):
        bits.append(f"started {owner['started']}")
    return f"{what} ({', '.join(bits)})"


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _try_flock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return True  # a file system without flock: the PID check decides
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """The open lock is still the file at ``path`` (not one a releasing owner just unlinked)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _owner_gone(owner: dict[str, Any]) -> bool:
    """The owner ran on this host and its process no longer exists."""
    try:
        pid = int(owner.get("pid", 0))
    except (TypeError, ValueError):
        return False
    return owner.get("host") == host_name() and not pid_alive(pid)


def lock_holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the live run holding the lock file ``path`` wrote into it; None when nobody holds it."""
    p = Path(path)
    owner = _read_owner(p)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return None
    try:
        if not _try_flock(fd):
            return owner or {"what": "another run"}
    finally:
        os.close(fd)  # closing drops the flock we may have just taken
    if fcntl is None and owner and not _owner_gone(owner):
        return owner
    return None


class FileLock:
    """An exclusive lock file at ``path`` holding ``info`` (plus PID, host, start time).

    ``acquire()`` raises ``LockedError`` when another live run holds it, and returns a note
    (or None) when it took over the lock of a run that died; ``release()`` removes the file.
    Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], resource: str, holder: str, **info: Any) -> None:
        self.path = Path(path)
        self.resource = resource  # what the lock guards, for messages: "The model name 'x'"
        self.holder = holder  # what the holder is doing, written into the file: "fine-tuning 'x'"
        self.info = info
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner(self) -> dict[str, Any]:
        return {
            "what": self.holder,
            "pid": os.getpid(),
            "host": host_name(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            **self.info,
        }

    def acquire(self) -> str | None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this lock object")
        note = None
        for _attempt in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                fd, note = self._take_over()
                if fd is None:
                    continue
            else:
                if fcntl is not None:
                    # blocks at most while a run that found the file half-written looks at it
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                            os.close(fd)
                            raise
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(self.owner(), indent=1) + "\n").encode())
            os.fsync(fd)
            self._fd = fd
            return note
        raise LockedError(
            f"Could not take the lock {self.path}: it keeps changing hands. Try again.", self.path, {}
        )

    def _take_over(self) -> tuple[int | None, str | None]:
        """Open an existing lock file; hold it if its owner is gone. (None, None): look again."""
        owner = _read_owner(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None, None  # released meanwhile: create it afresh
        if not _try_flock(fd):
            os.close(fd)
            raise self._refusal(owner)
        if not _same_file(fd, self.path):
            os.close(fd)  # the owner released it between our open and our flock
            return None, None
        if not owner:
            age = time.time() - os.fstat(fd).st_mtime
            os.close(fd)
            if age < 5.0:  # being created right now: its owner writes it in a moment
                time.sleep(0.05)
                return None, None
            raise self._refusal(owner)
        if not _owner_gone(owner):
            os.close(fd)
            raise self._refusal(owner)
        note = (
            f"Took over the lock {self.path.name} of {describe_owner(owner)}, which ended without "
            "releasing it (killed or crashed)."
        )
        return fd, note

    def _refusal(self, owner: dict[str, Any]) -> LockedError:
        owner = owner or _read_owner(self.path)
        who = describe_owner(owner) if owner else "another run"
        return LockedError(
            f"{self.resource} is in use by {who}. Wait for that run to end, or choose another name or "
            f"folder. If that run is gone (another machine, or a reused PID), delete {self.path}.",
            self.path,
            owner,
        )

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # drops the flock after the file is gone

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["FileLock", "LockedError", "describe_owner", "host_name", "host_tag", "lock_holder", "pid_alive"]
