"""Plain image files (TIFF, PNG, JPEG, BMP, NPY, zarr) with what they say about their axes.

The file's own description wins over any guess made from the array's shape:

- TIFF (tifffile): the axes of the file's first series. ImageJ hyperstacks and OME-TIFF name
  them (``"TZCYX"``, ``"CZYX"``...); a page with photometric RGB gives its samples ``S`` as the
  channel axis C (planar ``"CYX"`` or interleaved ``"YXC"``); grey + alpha samples give the
  grey. tifffile's letters for unknown dimensions (``Q``, ``I``: a multi-page file without
  metadata) leave the axes guessed. The pixel size comes from ImageJ's metadata
  (XResolution/YResolution in its ``unit``, ``spacing`` for Z), OME's PhysicalSizeX/Y/Z, or
  XResolution/YResolution in pixels per centimetre; per inch is a print density (72 dpi), kept
  in ``metadata["dpi"]`` only.
- PNG, JPEG, BMP (Pillow): the mode. "L", "I", "I;16", "1", "F": grey "YX"; "LA": grey, alpha
  dropped; "RGB"/"RGBA": "YXC" (the segmenter drops alpha); "P" (palette): colours for images
  ("YX" when the palette is grey), the indices for label images; other modes (CMYK...) as RGB.
  The frames of an animated PNG add T.
- NPY and zarr hold no axes: they are guessed from the shape (``layout.guess_axes``) and
  ``axes_source`` says "guessed".

``kind="labels"`` reads a mask or label image: palette indices instead of colours, the grey
band of grey + alpha, and a colour axis marked in ``metadata["colour_axis"]`` for ``io`` to
check (an RGB mask is accepted only when its channels are equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_madgnet.imagefile import ImageFile, ImageReadError
from napari_madgnet.layout import guess_axes

Kind = Literal["image", "labels"]

_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_FORMAT = {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}
#: Pillow modes that are one grey band.
_GREY_MODES = ("1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
#: Length units in micrometres, to bring OME's per-axis units to one.
_UNIT_UM = {"nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
_UNIT_NAMES = {"micron": "µm", "microns": "µm", "um": "µm", "\\u00b5m": "µm", "μm": "µm", "µm": "µm"}


def read_plain(path: Path, *, lazy: bool = False, kind: Kind = "image") -> ImageFile:
    """Read a TIFF, PNG, JPEG, BMP, NPY file or a zarr array with its axes (see the module doc).

    ``lazy``: zarr arrays and .npy memory maps are returned unread. Raises ``ImageReadError``
    naming the file for anything unreadable or empty.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            image = _read_tiff(path)
        elif suffix in _PIL_SUFFIXES:
            image = _read_pil(path, kind)
        elif suffix == ".npy":
            image = _guessed(np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False))
        elif suffix == ".zarr":
            import zarr

            arr = zarr.open(str(path), mode="r")
            if not hasattr(arr, "shape"):
                raise ImageReadError(f"{path}: a zarr group, not an array; point to one array in it.")
            image = _guessed(arr if lazy else np.asarray(arr[...]))
        else:
            raise ImageReadError(f"{path}: not a plain image file ({suffix!r}).")
    except ImageReadError:
        raise
    except Exception as exc:  # every reader has its own exception types
        codec = _missing_codec(path, exc) if suffix in (".tif", ".tiff") else None
        raise ImageReadError(
            codec
            or f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}). "
            "Is the file complete and of the type its extension says?"
        ) from exc
    if 0 in image.shape:  # readers return empty arrays for some truncated files
        raise ImageReadError(
            f"{path}: cannot be read as an image: it holds no pixels (shape {image.shape}). "
            "Is the file complete and of the type its extension says?"
        )
    image.source = path
    image.format = _FORMAT.get(suffix, suffix.lstrip("."))
    return image


def _missing_codec(path: Path, exc: Exception) -> str | None:
    """A message naming the compression and the fix when tifffile lacks a codec; else None.

    LZW, JPEG, zstd, JPEG 2000, WebP... TIFFs (what Fiji, slide scanners and microscopes often
    write) are decoded by the ``imagecodecs`` package, a dependency; a partial install lacks it.
    """
    text = f"{type(exc).__name__}: {exc}"
    if not (isinstance(exc, ImportError) or "imagecodecs" in text):
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            compression = tif.pages[0].compression
        name = getattr(compression, "name", str(compression))
    except Exception:
        name = "a compression scheme"
    return (
        f"{path}: the image is compressed with {name} and the codec that decodes it is missing "
        f"({text}). Install it with `pip install imagecodecs` (napari-madgnet depends on it; a partial "
        "install can lack it), or save the image without compression."
    )


def _guessed(data: Any, **kwargs: Any) -> ImageFile:
    """An ImageFile whose axes are guessed from the shape (None when no guess fits)."""
    try:
        axes: str | None = guess_axes(tuple(data.shape))
    except ValueError:
        axes = None  # 1-D or > 5-D: the segmenter says what it expects
    return ImageFile(data=data, axes=axes, axes_source="guessed", **kwargs)


# ----------------------------------------------------------------------------------------------- TIFF
def tiff_axes(letters: str) -> str | None:
    """tifffile's axes letters in the TZCYX vocabulary, or None when they name unknown dimensions.

    ``S`` (samples of an RGB pixel) is the channel axis C; ``Q``, ``I`` (and the letters of
    dimensions the segmenter has no use for, e.g. ``A`` angle) mean the file does not say.
    """
    if "S" in letters and "C" in letters:
        return None  # channels of RGB samples: no one C axis
    axes = letters.upper().replace("S", "C")
    if set(axes) - set("TZCYX") or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        return None
    return axes


def _read_tiff(path: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        page = series.keyframe
        metadata: dict[str, Any] = {"tiff_axes": series.axes, "photometric": page.photometric.name}
        if len(tif.series) > 1:
            metadata["series"] = len(tif.series)  # only the first is read
        axes = tiff_axes(series.axes) if data.ndim == len(series.axes) else None
        if axes is not None and "S" in series.axes:
            if page.photometric.name in ("RGB", "YCBCR", "CIELAB", "ICCLAB", "ITULAB", "SEPARATED"):
                metadata["colour_axis"] = axes.index("C")
            elif page.extrasamples and all(int(e) in (1, 2) for e in page.extrasamples):
                # grey + alpha: the grey sample, as for a PNG of mode "LA"
                data = np.take(data, 0, axis=axes.index("C"))
                axes = axes.replace("C", "")
                metadata["alpha_dropped"] = True
        sizes, unit = _tiff_pixel_size(tif, page, metadata)
    if axes is None:
        image = _guessed(data, metadata=metadata)
    else:
        image = ImageFile(data=data, axes=axes, axes_source="file", metadata=metadata)
    if sizes:
        metadata["pixel_size"] = {**sizes, "unit": unit}
        spatial = image.spatial_axes
        if spatial and all(a in sizes for a in spatial):
            image.spacing = tuple(sizes[a] for a in spatial)
            image.unit = unit
    return image


def _tiff_pixel_size(tif: Any, page: Any, metadata: dict[str, Any]) -> tuple[dict[str, float], str | None]:
    """{"Y": dy, "X": dx[, "Z": dz]} and their unit, from ImageJ, OME or the resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        return _ome_pixel_size(tif.ome_metadata)
    res = _resolution(page)
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        unit = _unit(ij.get("unit"))
        if "finterval" in ij:
            metadata["time_interval"] = ij["finterval"]
        if unit is None or res is None:
            return {}, None  # ImageJ without a calibration: sizes in pixels
        # ImageJ's voxel depth defaults to 1 unit when the file gives no spacing.
        return {"Y": res[0], "X": res[1], "Z": float(ij.get("spacing", 1.0))}, unit
    unit_tag = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    if res is None or unit_tag == 1:  # NONE: no unit, no size
        return {}, None
    if unit_tag == 2:  # INCH: a print density (72 or 300 dpi), not the size of what was imaged
        metadata["dpi"] = (1.0 / res[0], 1.0 / res[1])
        return {}, None
    return {"Y": res[0] * 1e4, "X": res[1] * 1e4}, "µm"  # CENTIMETER


def _resolution(page: Any) -> tuple[float, float] | None:
    """(dy, dx): the size of a pixel in the resolution unit, from Y/XResolution (pixels per unit)."""
    out = []
    for name in ("YResolution", "XResolution"):
        tag = page.tags.get(name)
        if tag is None:
            return None
        num, den = tag.value
        if not num or not den:
            return None
        out.append(den / num)
    return out[0], out[1]


def _unit(name: Any) -> str | None:
    """ImageJ's unit name in the usual spelling ("micron" -> "µm"); None for none or pixels."""
    if not name:
        return None
    text = str(name).strip()
    if text.lower() in ("pixel", "pixels", "px", ""):
        return None
    return _UNIT_NAMES.get(text.lower(), text)


def _ome_pixel_size(xml: str) -> tuple[dict[str, float], str | None]:
    """PhysicalSizeX/Y/Z of the first OME image, in one unit (OME's default is µm)."""
    import tifffile

    ome = tifffile.xml2dict(xml).get("OME", {})
    images = ome.get("Image") or {}
    pixels = (images[0] if isinstance(images, list) else images).get("Pixels", {})
    sizes: dict[str, float] = {}
    units: dict[str, str] = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if value is not None and float(value) > 0:
            sizes[axis] = float(value)
            units[axis] = _unit(pixels.get(f"PhysicalSize{axis}Unit", "µm")) or "µm"
    if not {"X", "Y"} <= set(sizes):
        return {}, None
    unit = units["X"]
    if any(u != unit for u in units.values()):
        if not all(u in _UNIT_UM for u in units.values()):
            return {}, None
        sizes = {a: v * _UNIT_UM[units[a]] / _UNIT_UM[unit] for a, v in sizes.items()}
    return sizes, unit


# ------------------------------------------------------------------------------------ PNG, JPEG, BMP
def _read_pil(path: Path, kind: Kind) -> ImageFile:
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        # Animated PNG frames are a time series; other formats' extra frames (an MPO JPEG's
        # preview) are not part of the picture.
        n = getattr(im, "n_frames", 1) if path.suffix.lower() == ".png" else 1
        frames = []
        for i in range(n):
            im.seek(i)
            frames.append(_pil_frame(im, kind))
    arrays = [f[0] for f in frames]
    axes, notes = frames[0][1], frames[0][2]
    data = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    if len(arrays) > 1:
        axes = "T" + axes
    metadata: dict[str, Any] = {"mode": mode, **notes}
    if axes.endswith("C") and notes.get("colour"):
        metadata["colour_axis"] = len(axes) - 1
    metadata.pop("colour", None)
    return ImageFile(data=data, axes=axes, axes_source="file", metadata=metadata)


def _pil_frame(im: Any, kind: Kind) -> tuple[np.ndarray, str, dict[str, Any]]:
    """One frame as (array, axes, notes) by its mode (see the module doc)."""
    mode = im.mode
    if mode in _GREY_MODES:
        return np.asarray(im), "YX", {}
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0)), "YX", {"alpha_dropped": True}
    if mode in ("P", "PA"):
        if kind == "labels":  # the indices are the labels; the palette only colours them
            return np.asarray(im.getchannel(0)), "YX", {"palette": True}
        palette = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        if palette.size and (palette == palette[:, :1]).all() and "transparency" not in im.info:
            return np.asarray(im.convert("L")), "YX", {"palette": True}
        rgba = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if rgba else "RGB")), "YXC", {"palette": True, "colour": True}
    if mode in ("RGB", "RGBA"):
        return np.asarray(im), "YXC", {"colour": True}
    target = "RGBA" if "A" in mode or "a" in mode else "RGB"  # RGBa, RGBX, CMYK, YCbCr, LAB, HSV
    return np.asarray(im.convert(target)), "YXC", {"colour": True, "converted_from": mode}
