"""The napari reader and writers (npe2 contributions): medical volumes and videos in, masks out.

Reader (``get_reader``): DICOM files and folders, NIfTI, NRRD, MetaImage and videos become Image
layers placed in physical space: ``scale`` = spacing, ``translate`` = origin, and an ``affine``
for a non-identity direction (``imagefile.napari_transform``); the geometry is kept as a plain
dict in the layer metadata under ``"madgnet_geometry"``. Videos are lazy (dask, one frame decoded
per view). Writers (``write_labels``, ``write_image``): a Labels (or Image) layer to .nii/.nii.gz,
.nrrd or .mha with the geometry of the image it belongs to: the ``"madgnet_geometry"`` record when
the layer still sits where that record says, else the layer's own scale/translate/rotate/affine.

napari is imported only inside the writers (which napari alone calls); the reader needs none of
it, so this module imports in a headless install.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.imagefile import (
    GEOMETRY_KEY,
    ImageFile,
    geometry_from_matrix,
    geometry_matches,
    napari_transform,
)

LayerData = tuple[Any, dict[str, Any], str]
#: Contrast limits for CT in HU when the file names no window: soft tissue (centre 40, width 400).
CT_CONTRAST = (-160.0, 240.0)


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: ``read_layers`` for a file or DICOM folder we read, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    from napari_madgnet.medical import format_of
    from napari_madgnet.video import is_video_path

    p = Path(path)
    try:
        ours = format_of(p) is not None or (p.is_file() and is_video_path(p))
    except OSError:
        return None
    return read_layers if ours else None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """One Image layer data tuple for ``path`` (see the module docstring)."""
    from napari_madgnet.io import image_stem, read_image_file

    if isinstance(path, (list, tuple)):
        path = path[0]
    image = read_image_file(path, lazy=True)
    return [layer_data(image, name=image_stem(path))]


def layer_data(image: ImageFile, *, name: str | None = None) -> LayerData:
    """An Image layer data tuple of ``image`` with its placement and geometry record."""
    axes = image.axes or ""
    rgb = axes.endswith("C") and image.shape[-1] in (3, 4)
    layer_axes = axes[:-1] if rgb else axes
    data = image.data
    kwargs: dict[str, Any] = {"name": name or (image.source.name if image.source else "image"), "rgb": rgb}
    if image.format == "video":
        import dask.array as da

        # One chunk per frame: napari decodes only the frame on screen.
        data = da.from_array(image.data, chunks=(1, *image.shape[1:]), asarray=True, name=False)
        kwargs["metadata"] = {"fps": image.metadata.get("fps"), "source": str(image.source)}
        return data, kwargs, "image"
    kwargs.update(napari_transform(image, layer_axes))
    if "affine" in kwargs:
        kwargs["affine"] = np.asarray(kwargs["affine"]).tolist()
    kwargs["metadata"] = {GEOMETRY_KEY: image.geometry()}
    if image.unit and not rgb and _layers_take_units():  # napari's scale bar then shows mm
        kwargs["units"] = [image.unit if a in "ZYX" else "pixel" for a in layer_axes]
    if "C" in layer_axes:  # multi-component but not RGB: one layer per component
        kwargs["channel_axis"] = layer_axes.index("C")
        kwargs.pop("units", None)
        for key in ("scale", "translate"):
            kwargs[key] = [v for i, v in enumerate(kwargs[key]) if i != kwargs["channel_axis"]]
        kwargs.pop("affine", None)
    window = _window(image)
    if window is not None and not rgb:
        kwargs["contrast_limits"] = list(window)
    return data, kwargs, "image"


def _layers_take_units() -> bool:
    """Layer ``units`` exist in newer napari only (the plugin supports napari >= 0.5)."""
    import inspect

    try:
        from napari.layers import Image
    except ImportError:
        return False
    return "units" in inspect.signature(Image.__init__).parameters


def _window(image: ImageFile) -> tuple[float, float] | None:
    """Initial contrast limits: the DICOM window when the file has one, soft tissue for HU data."""
    tags = image.metadata.get("dicom") or {}
    try:
        centre = float(str(tags["WindowCenter"]).split("\\")[0])
        width = float(str(tags["WindowWidth"]).split("\\")[0])
        if width > 0:
            return centre - width / 2.0, centre + width / 2.0
    except (KeyError, ValueError):
        pass
    if image.intensity_unit == "HU":
        return CT_CONTRAST
    return None


# ---------------------------------------------------------------------------------------------
# Writers


def layer_matrix(meta: dict[str, Any], ndim: int) -> np.ndarray:
    """A layer's data-to-world map as an (ndim+1) x (ndim+1) matrix, from its layer-data attributes.

    napari composes ``affine @ (translate + rotate @ shear @ scale)``; napari's own transform
    classes compose it, so rotate and shear count as the viewer shows them.
    """
    from napari.utils.transforms import Affine, CompositeAffine

    inner = CompositeAffine(
        scale=meta.get("scale", np.ones(ndim)),
        translate=meta.get("translate", np.zeros(ndim)),
        rotate=meta.get("rotate"),
        shear=meta.get("shear"),
        ndim=ndim,
    )
    outer_value = meta.get("affine")
    outer = (
        Affine(affine_matrix=np.asarray(outer_value, dtype=float))
        if outer_value is not None
        else Affine(ndim=ndim)
    )
    return np.asarray((outer.compose(inner)).affine_matrix, dtype=float)


def reference_for_layer(data: Any, meta: dict[str, Any]) -> ImageFile:
    """The ``ImageFile`` whose geometry a layer is written with.

    The layer's ``madgnet_geometry`` record when it covers the layer's grid and the layer still
    sits where the record says; otherwise the layer's own transform (spacing = column lengths,
    direction = normalised columns, origin = translation). Spatial axes: the last 3 (ZYX) or 2.
    """
    shape = tuple(int(s) for s in data.shape)
    ndim = len(shape)
    if ndim not in (2, 3):
        from napari_madgnet.errors import UserError

        raise UserError(
            f"Only 2-D and 3-D layers can be written as NIfTI/NRRD/MetaImage; this one has shape {shape}."
        )
    axes = "ZYX"[-ndim:]
    spacing, origin, direction = geometry_from_matrix(layer_matrix(meta, ndim))
    from_layer = {
        "axes": axes,
        "shape": list(shape),
        "spacing": list(spacing),
        "origin": list(origin),
        "direction": list(direction),
    }
    record = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if isinstance(record, dict) and record.get("axes") == axes and geometry_matches(record, from_layer):
        return ImageFile.from_geometry(data, record)
    unit = None
    units = meta.get("units")
    if units is not None:
        names = {str(u) for u in (units if isinstance(units, (list, tuple)) else [units])}
        unit = {"millimeter": "mm", "mm": "mm"}.get(names.pop()) if len(names) == 1 else None
    return ImageFile(
        data=data,
        axes=axes,
        axes_source="file",
        spacing=spacing,
        origin=origin,
        direction=direction,
        unit=unit or (record.get("unit") if isinstance(record, dict) else None),
        format="napari",
    )


def _level0(data: Any) -> Any:
    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        return data[0]
    return data


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a Labels layer as .nii/.nii.gz/.nrrd/.mha with its image's geometry.

    napari's save dialog has already confirmed replacing an existing file, so this replaces it
    (atomically). Returns the written path.
    """
    from napari_madgnet.medical import write_like

    data = np.asarray(_level0(data))
    write_like(path, data, reference_for_layer(data, meta), kind="mask", overwrite=True)
    return [str(path)]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: an Image layer (e.g. a probability map) with its geometry."""
    from napari_madgnet.errors import UserError
    from napari_madgnet.medical import write_like

    if meta.get("rgb"):
        raise UserError(
            "RGB layers cannot be written as NIfTI/NRRD/MetaImage here; save them as TIFF or PNG."
        )
    data = np.asarray(_level0(data))
    write_like(path, data, reference_for_layer(data, meta), kind="image", overwrite=True)
    return [str(path)]
