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

import dataclasses
import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_madgnet.atomic import atomic_path

# the cleaning of what killed writers left lives beside atomic_path; re-exported for callers
from napari_madgnet.atomic import remove_stale_temp_files as remove_stale_temp_files
from napari_madgnet.atomic import temp_sibling as temp_sibling
from napari_madgnet.imagefile import ImageFile, ImageReadError, in_millimetres
from napari_madgnet.medical import MEDICAL_SUFFIXES, format_of, is_dicom_file, medical_suffix
from napari_madgnet.plain import read_plain
from napari_madgnet.video import VIDEO_SUFFIXES, is_video_path

#: Plain image formats, read with tifffile, imageio, numpy and zarr (no extra needed).
PLAIN_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")
#: Everything ``read_image`` reads: plain images, medical volumes ([medical]) and videos ([video]).
IMAGE_SUFFIXES: tuple[str, ...] = PLAIN_SUFFIXES + tuple(MEDICAL_SUFFIXES) + VIDEO_SUFFIXES
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")


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
    """Read one image file as an array (``read_image_file(path).data``).

    ``lazy=True`` returns a zarr array for ``.zarr`` stores (and a memory map for ``.npy``, frames
    decoded on demand for videos) so that stacks larger than memory can be processed slice by
    slice; other formats are read whole. ``read_image_file`` also gives the axes, pixel size and
    geometry; ``read_mask`` reads masks as their label values.
    """
    image = read_image_file(path, lazy=lazy)
    return image.data if lazy else np.asarray(image.data)


def read_image_file(
    path: str | os.PathLike[str],
    *,
    lazy: bool = False,
    series: str | None = None,
    kind: Literal["image", "labels"] = "image",
) -> ImageFile:
    """Read an image with what the file says about it: axes, pixel size or geometry, format.

    Dispatches by suffix (compound ones like ``.nii.gz`` included) and content: a folder of DICOM
    files, or a file with DICOM's marker, is a DICOM series (``series`` picks one
    SeriesInstanceUID in a folder holding several). NIfTI/NRRD/MetaImage/DICOM come with spacing
    (mm), origin and direction in ZYX order and axes "ZYX" (see ``imagefile``); videos with lazy
    frames and axes "TYXC". TIFF, PNG, JPEG, BMP, NPY and zarr: see ``napari_madgnet.plain``
    (axes from tifffile's series, ImageJ and OME metadata, Pillow's mode; guessed for NPY and zarr,
    ``axes_source == "guessed"``). ``kind="labels"``: a mask, see ``read_mask`` (the returned
    image has no colour axis). ``lazy``: zarr stores, .npy files and videos are read on demand;
    medical volumes and the other formats are read whole. Raises ``ImageReadError`` (unreadable,
    unsupported, ambiguous DICOM folder, a colour-coded mask) or ``imagefile.MissingExtraError``
    naming the extra to install.
    """
    p = Path(path)
    if not p.exists():
        raise missing_path_error(p)
    fmt = format_of(p)
    if fmt is not None:
        from napari_madgnet.medical import read_medical

        image = read_medical(p, series=series)
    elif is_video_path(p):
        from napari_madgnet.video import read_video

        image = read_video(p)
        if not lazy:
            image.data = np.asarray(image.data)
    elif p.suffix.lower() in PLAIN_SUFFIXES:
        image = read_plain(p, lazy=lazy, kind=kind)
    else:
        raise _unsupported(p)
    return labels_image(image) if kind == "labels" else image


def link_problem(path: Path) -> str | None:
    """What is wrong with a symbolic link that leads nowhere (a loop, a missing target), or None."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (
                "a loop of symbolic links (it leads back to itself); point the link at the real file or "
                "remove it"
            )
        return (
            f"a symbolic link to {os.readlink(path)}, which does not exist (moved or deleted?); fix or "
            "remove it"
        )
    return None


def missing_path_error(path: Path) -> ImageReadError:
    """Why ``path`` cannot be opened although it was named: no such file, a link to nothing, or a
    loop of symbolic links (which ``Path.exists`` reports as missing)."""
    problem = link_problem(path)
    return ImageReadError(f"{path}: {problem or 'no such file or folder'}.")


def read_mask(path: str | os.PathLike[str], *, series: str | None = None) -> np.ndarray:
    """Read a mask or label image as its label values (integers, or as stored).

    What an annotation tool saved is read as labels, not as a picture: a palette (indexed) PNG
    gives its indices, a grey + alpha PNG its grey band, and an RGB(A) mask is accepted only when
    its colour channels are equal (grey saved as RGB), giving that grey. A colour-coded mask
    (classes drawn in different colours) raises ``ImageReadError`` saying how to convert it.
    Used wherever a mask is read: training from folders, ``evaluate``, ``madgnet finetune
    --labels``, ``madgnet compare``.
    """
    return np.asarray(read_image_file(path, series=series, kind="labels").data)


#: Grey levels by which the channels of a JPEG mask may differ (lossy compression, 8-bit).
JPEG_MASK_TOLERANCE = 16


def labels_image(image: ImageFile) -> ImageFile:
    """``image`` without its colour axis, when the channels are equal; else a clear error.

    The colour axis is the one a reader marked (``metadata["colour_axis"]``: RGB(A) PNG, JPEG,
    BMP, photometric-RGB TIFF) or, for arrays whose axes were guessed (NPY, zarr), a guessed C of
    3 or 4; other channel axes (an ImageJ hyperstack's C) are left as they are. Alpha is ignored.
    JPEG masks (lossy) may differ by up to ``JPEG_MASK_TOLERANCE`` grey levels between channels
    and give their mean; other formats must be equal to the level and give the first channel.
    """
    axis = image.metadata.get("colour_axis")
    c = (image.axes or "").find("C")
    if axis is None and image.axes_source == "guessed" and c >= 0 and image.shape[c] in (3, 4):
        axis = c
    if axis is None:
        return image
    data = np.asarray(image.data)
    colours = np.take(data, range(min(3, data.shape[axis])), axis=axis)
    first = np.take(colours, [0], axis=axis)
    lossy = image.format == "jpeg" and colours.dtype == np.uint8
    if lossy:  # compression noise around grey edges is not a colour
        spread = colours.max(axis=axis).astype(np.int16) - colours.min(axis=axis)
        differ = np.expand_dims(spread > JPEG_MASK_TOLERANCE, axis)
    else:
        differ = colours != first
    if differ.any():
        where = np.argwhere(differ.any(axis=axis))[0]
        pixel = _pixel(data, axis, where)
        name = image.source.name if image.source is not None else "the mask"
        raise ImageReadError(
            f"{name}: a colour-coded mask (RGB whose channels differ, e.g. {pixel} at pixel "
            f"{tuple(int(i) for i in where)}); "
            "a mask must be a label image whose values are the classes or objects (0 = background). "
            "Convert it to an index/label image (e.g. in Fiji: Image > Type > 8-bit Color, then check "
            "that the background is 0; or export the label image itself from the annotation tool), or "
            "save the one channel that holds the labels as its own file."
        )
    kept = image.axes[:axis] + image.axes[axis + 1 :] if image.axes else None
    metadata = {k: v for k, v in image.metadata.items() if k != "colour_axis"}
    grey = np.round(colours.mean(axis=axis)).astype(data.dtype) if lossy else np.take(data, 0, axis=axis)
    return dataclasses.replace(image, data=grey, axes=kept, metadata=metadata)


def _pixel(data: np.ndarray, axis: int, where: np.ndarray) -> tuple[int, ...]:
    """The colour of the pixel at ``where`` (an index without the colour axis)."""
    index = [int(i) for i in where]
    index.insert(axis, slice(None))
    return tuple(int(v) for v in data[tuple(index)][:3])


def _unsupported(p: Path) -> ImageReadError:
    if p.is_dir():
        return ImageReadError(
            f"{p}: a folder that is neither a zarr store nor a folder of DICOM files; "
            "give the image files in it (or the folder to madgnet predict, which lists them)."
        )
    return ImageReadError(
        f"{p}: unsupported file type {_shown_suffix(p)!r}; use one of {', '.join(IMAGE_SUFFIXES)}."
    )


#: Compression suffixes: "scan.tif.gz" is a compressed ".tif.gz", not a ".gz" of unknown kind.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def _shown_suffix(p: Path) -> str:
    """The suffix an error names: compound ones whole (".nii.gz", ".tif.gz"), else the last."""
    suffixes = [s.lower() for s in p.suffixes]
    if medical_suffix(p) is None and len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED:
        return "".join(suffixes[-2:])
    return full_suffix(p) or p.name


def find_images(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    exclude: Callable[[Path], str | None] | None = None,
    skipped: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Expand files and folders into a sorted list of images (files, zarr stores, DICOM folders).

    A folder of DICOM files is one image (a series), given as the folder; other images beside
    the DICOM files are listed too. ``recursive``: look into sub-folders (each sub-folder of DICOM
    files is one image), symbolic links to folders included; a folder reached a second time (a
    link back to a parent: a loop) is searched once. ``exclude(path)``: a reason to leave out a
    file or folder found inside a folder (the caller's output folder, its own earlier outputs), or
    None; paths named in ``inputs`` are never left out. ``skipped`` receives ``(path, reason)``
    for everything left out: excluded paths, repeated folders, broken links, unreadable folders.
    A folder that holds no image is an error rather than a silent no-op: the user asked for work.
    """
    found: list[Path] = []
    left_out: list[tuple[Path, str]] = skipped if skipped is not None else []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() != ".zarr":
            before = len(left_out)
            files = _images_in(p, recursive, exclude, left_out)
            if not files:
                why = "".join(f"; left out {q} ({reason})" for q, reason in left_out[before:][:3])
                raise ImageReadError(
                    f"{p}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} and DICOM files){why}."
                )
            found.extend(files)
        elif p.exists():
            if not (is_image_path(p) or is_dicom_file(p)):
                raise _unsupported(p)
            found.append(p)
        else:
            raise missing_path_error(p)
    return found


def _images_in(
    folder: Path,
    recursive: bool,
    exclude: Callable[[Path], str | None] | None = None,
    skipped: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Images in ``folder``: plain/medical/video files, zarr stores, and DICOM folders as one each
    (and, ``recursive``, those below it, linked folders followed once)."""
    out: list[Path] = []
    skipped = skipped if skipped is not None else []
    seen: dict[tuple[int, int], Path] = {}
    try:
        st = os.stat(folder)
        seen[(st.st_dev, st.st_ino)] = folder
    except OSError:
        pass

    def unreadable(exc: OSError) -> None:
        skipped.append((Path(exc.filename or folder), f"cannot be read ({exc.strerror or exc})"))

    for root, dirs, names in os.walk(folder, onerror=unreadable, followlinks=recursive):
        here = Path(root)
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if d.startswith("."):
                continue
            reason = exclude(sub) if exclude is not None else None
            if reason:
                skipped.append((sub, reason))
            elif d.lower().endswith(".zarr"):
                out.append(sub)
            elif recursive:
                try:
                    st = os.stat(sub)
                except OSError as exc:
                    skipped.append((sub, f"cannot be read ({exc.strerror or exc})"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    skipped.append(
                        (sub, f"the folder {seen[key]} again, through a symbolic link: searched once")
                    )
                    continue
                seen[key] = sub
                keep.append(d)
        dirs[:] = keep
        has_dicom = False
        for name in sorted(names):
            if name.startswith("."):
                continue
            f = here / name
            problem = link_problem(f)
            if problem:
                skipped.append((f, problem))
                continue
            suffix = full_suffix(f)
            if suffix in (".dcm", ".dicom") or (suffix not in IMAGE_SUFFIXES and is_dicom_file(f)):
                has_dicom = True
            elif suffix in IMAGE_SUFFIXES:
                reason = exclude(f) if exclude is not None else None
                if reason:
                    skipped.append((f, reason))
                else:
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

            # Grey levels: a stack of 3 or 4 planes must not be tagged RGB (tifffile's default).
            tifffile.imwrite(tmp, arr, photometric="minisblack", compression="zlib")
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
    """Write ``array`` with ``reference``'s geometry (.nii/.nii.gz/.nrrd/.mha); see ``medical.write_like``.

    A reference whose pixel size is in another length unit (a TIFF's µm) is converted to the mm
    these formats store (``imagefile.in_millimetres``).
    """
    from napari_madgnet.medical import write_like as _write_like

    return _write_like(path, array, in_millimetres(reference), kind=kind, overwrite=overwrite)


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
