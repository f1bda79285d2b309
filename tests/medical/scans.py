"""Test scans built from real data that ships in registry packages (no one here wrote the pixels).

- ``ct_series``: copies of pydicom's ``CT_small.dcm`` (a real 128 x 128 CT slice, in HU after
  rescale) as a multi-slice series with a known slice spacing, new UIDs and, optionally, an
  oblique orientation.
- ``nifti_volume``: nibabel's ``anatomical.nii`` (a real 33 x 41 x 25 MRI) written again by
  nibabel with a chosen spacing, origin and rotation, so the geometry is known independently of
  SimpleITK (nibabel's affine is RAS; ITK's LPS = diag(-1, -1, 1) @ RAS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
SPACING_XYZ = (0.7, 0.7, 2.5)
ORIGIN_RAS = (-12.3, 45.6, 7.8)


def rotation(degrees_zyx=(30.0, 10.0, -20.0)) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("zyx", degrees_zyx, degrees=True).as_matrix()


def ct_slice_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def mr_slice_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm"))


def ct_hu() -> np.ndarray:
    """The real CT slice in HU, computed by pydicom (an oracle independent of SimpleITK)."""
    import pydicom

    ds = pydicom.dcmread(ct_slice_path())
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def ct_series(
    folder: Path,
    n: int = 4,
    dz: float = 2.5,
    *,
    oblique: np.ndarray | None = None,
    description: str = "test series",
    number: int = 1,
    extensions: bool = True,
    seed: int = 0,
) -> dict:
    """Write ``n`` slices of the real CT as one series into ``folder``; returns what was written.

    The pixels of slice i are the real slice rolled down by i rows, so the slices differ and
    their order can be checked. File names are shuffled against the slice order, so a reader
    must sort by position.
    ``oblique``: a 3x3 rotation whose first two columns become ImageOrientationPatient's row and
    column directions (LPS). Returns {"uid", "files", "spacing_z", "origin", "direction",
    "pixel_spacing", "hu"} with direction as an (x, y, z) matrix whose columns are the axes.
    """
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(ct_slice_path())
    uid = generate_uid()
    rot = np.eye(3) if oblique is None else np.asarray(oblique, dtype=float)
    row, col = rot[:, 0], rot[:, 1]
    normal = np.cross(row, col)
    origin = np.asarray([float(v) for v in src.ImagePositionPatient])
    hu0 = ct_hu()
    files = []
    order = np.random.default_rng(seed).permutation(n)
    for i in range(n):
        ds = pydicom.dcmread(ct_slice_path())
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = number
        ds.SeriesDescription = description
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        pos = origin + i * dz * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.SliceLocation = f"{float(pos @ normal):.6f}"
        pixels = np.roll(ds.pixel_array, i, axis=0)
        ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
        name = f"S{number}IM{order[i]:04d}" + (".dcm" if extensions else "")
        ds.save_as(folder / name)
        files.append(folder / name)
    hu = np.stack([np.roll(hu0, i, axis=0) for i in range(n)])
    direction = np.stack([row, col, normal], axis=1)
    px = [float(v) for v in src.PixelSpacing]  # (row spacing = along Y, column spacing = along X)
    return {
        "uid": uid,
        "files": files,
        "spacing_z": dz,
        "origin": np.round(origin, 6),
        "direction": direction,
        "pixel_spacing": px,
        "hu": hu,
    }


def nifti_volume(
    path: Path,
    *,
    rot: np.ndarray | None = None,
    spacing_xyz=SPACING_XYZ,
    origin_ras=ORIGIN_RAS,
    slices: int | None = None,
) -> dict:
    """nibabel's real anatomical MRI written by nibabel with a known geometry.

    ``slices``: keep only the first slices (along the file's third axis, our Z) for short runs.
    Returns {"path", "data_zyx" (the voxels in ZYX order), "spacing_zyx", "origin_zyx" and
    "direction_zyx" (LPS, as SimpleITK and napari-madgnet report them)}.
    """
    import nibabel as nib
    from nibabel.testing import data_path

    src = nib.load(str(Path(data_path) / "anatomical.nii"))
    data_xyz = np.asarray(src.dataobj)
    if slices is not None:
        data_xyz = data_xyz[:, :, :slices]
    r = rotation() if rot is None else np.asarray(rot, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = r @ np.diag(spacing_xyz)
    affine[:3, 3] = origin_ras
    img = nib.Nifti1Image(data_xyz, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    d_lps = LPS_FROM_RAS @ r
    o_lps = LPS_FROM_RAS @ np.asarray(origin_ras, dtype=float)
    return {
        "path": path,
        "data_zyx": np.transpose(data_xyz, (2, 1, 0)),
        "spacing_zyx": tuple(spacing_xyz[::-1]),
        "origin_zyx": tuple(o_lps[::-1]),
        "direction_zyx": d_lps[::-1, ::-1],
    }


def sitk_geometry(path: Path) -> dict:
    """Geometry of a file as SimpleITK itself reads it, in its own (x, y, z) order."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    return {
        "spacing": np.asarray(img.GetSpacing()),
        "origin": np.asarray(img.GetOrigin()),
        "direction": np.asarray(img.GetDirection()),
        "size": img.GetSize(),
        "pixel": img.GetPixelIDTypeAsString(),
        "array": sitk.GetArrayFromImage(img),
    }
