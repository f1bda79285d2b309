"""Reading and writing images and masks, safely.

One place for file formats so that ``madgnet predict``, training from folders and evaluation agree
on what an image is. Writes are atomic (temporary file, then rename) and never replace an existing
file unless asked, so a crash or a typo cannot destroy a user's data.

``read_image_file`` returns an ``imagefile.ImageFile`` (pixels, axes, geometry, format) for every
format; ``read_image`` returns only the pixels. Medical volumes (DICOM files and folders, NIfTI,
NRRD, MetaImage) need the ``medical`` extra and keep their spacing, origin and direction
(``napari_madgnet.medical``); videos need the ``video`` extra and are read frame by frame
(``napari_madgnet.video``). ``write_like`` writes a mask with the geometry of its image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.atomic import atomic_path
from napari_madgnet.imagefile import ImageFile, ImageReadError
from napari_madgnet.medical import MEDICAL_SUFFIXES, format_of, is_dicom_file, medical_suffix
from napari_madgnet.video import VIDEO_SUFFIXES, is_video_path

#: Plain image formats, read with tifffile, imageio, numpy and zarr (no extra needed).
PLAIN_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")
#: Everything ``read_image`` reads: plain images, medical volumes ([medical]) and videos ([video]).
IMAGE_SUFFIXES: tuple[str, ...] = PLAIN_SUFFIXES + tuple(MEDICAL_SUFFIXES) + VIDEO_SUFFIXES
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
_PLAIN_FORMAT = {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}


def full_suffix(path: str | os.PathLike[str]) -> str:
    """The lower-case suffix that names the format, compound ones included: "scan.nii.gz" -> ".nii.gz"."""
    p = Path(path)
    return medical_suffix(p) or p.suffix.lower()


def image_stem(path: str | os.PathLike[str]) -> str:
    """The name without its format suffix ("scan.nii.gz" -> "scan"; a DICOM folder keeps its name)."""
    p = Path(path)
    suffix = full_suffix(p)
    if suffix and p.name.lower().endswith(suffix) and len(p.name) > len(suffix):
        return p.name[: -len(suffix)]
    return p.name


def is_image_path(path: Path) -> bool:
    return full_suffix(path) in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike[str], *, lazy: bool = False) -> Any:
    """Read one image file as an array.

    ``lazy=True`` returns a zarr array for ``.zarr`` stores (and a memory map for ``.npy``, frames
    decoded on demand for videos) so that stacks larger than memory can be processed slice by
    slice; other formats are read whole. Medical volumes and videos: see ``read_image_file``, which
    also gives their axes and geometry.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or folder.")
    if format_of(p) is not None or is_video_path(p):
        image = read_image_file(p, lazy=lazy)
        return image.data if lazy else np.asarray(image.data)
    return _read_plain(p, lazy)


def read_image_file(
    path: str | os.PathLike[str], *, lazy: bool = False, series: str | None = None
) -> ImageFile:
    """Read an image with what the file says about it: axes, geometry, modality, format.

    Dispatches by suffix (compound ones like ``.nii.gz`` included) and content: a folder of DICOM
    files, or a file with DICOM's marker, is a DICOM series (``series`` picks one
    SeriesInstanceUID in a folder holding several). NIfTI/NRRD/MetaImage/DICOM come with spacing
    (mm), origin and direction in ZYX order and axes "ZYX" (see ``imagefile``); videos with lazy
    frames and axes "TYXC"; plain images with ``axes=None`` (the caller guesses) and no geometry.
    ``lazy``: zarr stores, .npy files and videos are read on demand; medical volumes are read whole.
    Raises ``ImageReadError`` (unreadable, unsupported, ambiguous DICOM folder) or
    ``imagefile.MissingExtraError`` naming the extra to install.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or folder.")
    fmt = format_of(p)
    if fmt is not None:
        from napari_madgnet.medical import read_medical

        return read_medical(p, series=series)
    if is_video_path(p):
        from napari_madgnet.video import read_video

        image = read_video(p)
        if not lazy:
            image.data = np.asarray(image.data)
        return image
    data = _read_plain(p, lazy)
    suffix = p.suffix.lower()
    return ImageFile(data=data, source=p, format=_PLAIN_FORMAT.get(suffix, suffix.lstrip(".")))


def _unsupported(p: Path) -> ImageReadError:
    if p.is_dir():
        return ImageReadError(
            f"{p}: a folder that is neither a zarr store nor a folder of DICOM files; "
            "give the image files in it (or the folder to madgnet predict, which lists them)."
        )
    return ImageReadError(
        f"{p}: unsupported file type {full_suffix(p) or p.name!r}; use one of {', '.join(IMAGE_SUFFIXES)}."
    )


def _read_plain(p: Path, lazy: bool) -> Any:
    suffix = p.suffix.lower()
    if suffix not in PLAIN_SUFFIXES:
        raise _unsupported(p)
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
    """Expand files and folders into a sorted list of images (files, zarr stores, DICOM folders).

    A folder of DICOM files is one image (a series), given as the folder; other images beside
    the DICOM files are listed too. ``recursive``: look into sub-folders (each sub-folder of DICOM
    files is one image). A folder that holds no image is an error rather than a silent no-op:
    the user asked for work.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() != ".zarr":
            files = _images_in(p, recursive)
            if not files:
                raise ImageReadError(
                    f"{p}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} and DICOM files)."
                )
            found.extend(files)
        elif p.exists():
            if not (is_image_path(p) or is_dicom_file(p)):
                raise _unsupported(p)
            found.append(p)
        else:
            raise ImageReadError(f"{p}: no such file or folder.")
    return found


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Images in ``folder``: plain/medical/video files, zarr stores, and DICOM folders as one each."""
    out: list[Path] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if d.lower().endswith(".zarr"):
                out.append(here / d)
        dirs[:] = [d for d in dirs if recursive and not d.lower().endswith(".zarr")]
        has_dicom = False
        for name in sorted(names):
            f = here / name
            if name.startswith("."):
                continue
            suffix = full_suffix(f)
            if suffix in (".dcm", ".dicom") or (suffix not in IMAGE_SUFFIXES and is_dicom_file(f)):
                has_dicom = True
            elif suffix in IMAGE_SUFFIXES:
                out.append(f)
        if has_dicom:
            out.append(here)
    return sorted(out)


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


def write_like(
    path: str | os.PathLike[str],
    array: np.ndarray,
    reference: ImageFile,
    *,
    kind: str = "mask",
    overwrite: bool = False,
) -> Path:
    """Write ``array`` with ``reference``'s geometry (.nii/.nii.gz/.nrrd/.mha); see ``medical.write_like``."""
    from napari_madgnet.medical import write_like as _write_like

    return _write_like(path, array, reference, kind=kind, overwrite=overwrite)


def write_output(
    path: str | os.PathLike[str],
    array: np.ndarray,
    reference: ImageFile,
    *,
    kind: str = "mask",
    overwrite: bool = False,
) -> Path:
    """Write a mask or probability map in the format its suffix names, with geometry where it can.

    .nii/.nii.gz/.nrrd/.mha: ``write_like`` with ``reference``'s geometry (which must have axes;
    one without geometry gives unit spacing); .tif/.png/.npy: ``write_image`` (no geometry).
    """
    from napari_madgnet.medical import write_suffix

    target = Path(path)
    if write_suffix(target) is None:
        return write_image(target, array, overwrite=overwrite)
    return write_like(target, array, reference, kind=kind, overwrite=overwrite)
