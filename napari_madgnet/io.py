"""Reading and writing images and masks, safely.

One place for file formats so that ``madgnet predict``, training from folders and evaluation agree
on what an image is. Writes are atomic (temporary file, then rename) and never replace an existing
file unless asked, so a crash or a typo cannot destroy a user's data.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.errors import UserError

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")


class ImageReadError(UserError):
    """A file could not be read as an image; the message names the file and what to do."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike[str], *, lazy: bool = False) -> Any:
    """Read one image file as an array.

    ``lazy=True`` returns a zarr array for ``.zarr`` stores (and a memory map for ``.npy``) so that
    stacks larger than memory can be processed slice by slice; other formats are read whole.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or folder.")
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            f"{p}: unsupported file type {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}."
        )
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return _not_empty(p, tifffile.imread(p))
        if suffix == ".npy":
            return np.load(p, mmap_mode="r" if lazy else None, allow_pickle=False)
        if suffix == ".zarr":
            import zarr

            arr = zarr.open(str(p), mode="r")
            if not hasattr(arr, "shape"):
                raise ImageReadError(f"{p}: a zarr group, not an array; point to one array in it.")
            return arr if lazy else np.asarray(arr[...])
        import imageio.v3 as iio

        return _not_empty(p, np.asarray(iio.imread(p)))
    except ImageReadError:
        raise
    except Exception as exc:  # every reader has its own exception types
        raise ImageReadError(
            f"{p}: cannot be read as an image ({type(exc).__name__}: {exc}). "
            "Is the file complete and of the type its extension says?"
        ) from exc


def _not_empty(path: Path, arr: Any) -> Any:
    """Readers return empty arrays for some truncated files; that is a broken file, not an image."""
    if 0 in tuple(arr.shape):
        raise ImageReadError(
            f"{path}: cannot be read as an image: it holds no pixels (shape {tuple(arr.shape)}). "
            "Is the file complete and of the type its extension says?"
        )
    return arr


def find_images(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    A folder that holds no image is an error rather than a silent no-op: the user asked for work.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() != ".zarr":
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if is_image_path(f) and not f.name.startswith("."))
            if not files:
                raise ImageReadError(f"{p}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}).")
            found.extend(files)
        elif p.exists():
            if not is_image_path(p):
                raise ImageReadError(
                    f"{p}: unsupported file type {p.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}."
                )
            found.append(p)
        else:
            raise ImageReadError(f"{p}: no such file or folder.")
    return found


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
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent
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


def write_image(path: str | os.PathLike[str], array: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a mask or probability map as .tif/.tiff (any dtype), .png (uint8/uint16) or .npy."""
    target = Path(path)
    suffix = target.suffix.lower()
    arr = np.asarray(array)
    if suffix not in MASK_SUFFIXES:
        raise ValueError(f"{target}: cannot write {suffix!r}; use one of {', '.join(MASK_SUFFIXES)}.")
    if suffix == ".png":
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.dtype not in (np.uint8, np.uint16):
            if arr.size and (arr.min() < 0 or arr.max() > 65535 or not np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(
                    f"{target}: PNG holds only 8/16-bit integers, this array is {arr.dtype} "
                    f"with range [{arr.min()}, {arr.max()}]; write .tif instead."
                )
            arr = arr.astype(np.uint16 if arr.max(initial=0) > 255 else np.uint8)
    with atomic_path(target, overwrite=overwrite) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, arr, compression="zlib")
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, arr, extension=".png")
    return target
