"""Keep freed host memory in the process while training on the CPU (glibc only).

glibc returns large freed blocks to the kernel: blocks above its mmap threshold (at most 32 MiB
by default) are unmapped on free, and the top of the heap is trimmed. A CPU training step frees
and re-allocates the same activations every step, so the kernel maps and zeroes the same pages
again: at 352 px this was ~50,000 page faults per batch-2 step in the engine (0.15-0.25 s of a
1.3 s step) and ~300,000 per batch-8 step (0.6 s of 4.9 s), measured on the project's machine.

``keep_freed_memory()`` raises the mmap threshold and switches trimming off for the duration of
training, so those pages stay mapped and are reused; it is what the tcmalloc/jemalloc advice in
PyTorch's CPU performance guide achieves, without replacing the allocator. On exit it sets
fixed values equal to where glibc's own dynamic thresholds settle after large frees (32 MiB and
64 MiB) and returns the free memory with ``malloc_trim``, so an interactive session (napari) does
not keep the training peak. Elsewhere (macOS, Windows, musl) it does nothing.
The gain is sure in a fresh process (CLI, src_train, benchmarks); in a long-lived one the heap's
history can still make re-allocations fault (seen in a long test session), so it may be smaller.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_WHILE_TRAINING = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
TRIM_OFF = -1  # glibc: "-1 disables trimming completely"
MMAP_THRESHOLD_AFTER = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD_AFTER = 64 << 20  # what glibc's dynamic rule sets with it (2 x the mmap threshold)

_lock = threading.Lock()
_active = [0]  # nested or concurrent trainings in this process; the last one out restores


@lru_cache(maxsize=1)
def _glibc() -> Any | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def supported() -> bool:
    """True where the allocator can be tuned (Linux with glibc)."""
    return _glibc() is not None


@contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed large blocks stay in the process; yields whether that applies."""
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        _active[0] += 1
        if _active[0] == 1:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_WHILE_TRAINING)
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_OFF)
    try:
        yield True
    finally:
        with _lock:
            _active[0] -= 1
            if _active[0] == 0:
                libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_AFTER)
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER)
                libc.malloc_trim(0)


__all__ = ["keep_freed_memory", "supported"]
