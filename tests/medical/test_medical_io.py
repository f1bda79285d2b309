"""Medical volumes: geometry read right (checked against nibabel and pydicom), written back exactly
(checked by reading the file with SimpleITK itself), DICOM series chosen and sorted, HU values."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.imagefile import ImageFile, MissingExtraError
from napari_madgnet.io import (
    ImageReadError,
    atomic_path,
    find_images,
    image_stem,
    read_image,
    read_image_file,
    write_like,
)
from tests.medical import scans

TOL = 1e-6


def _xyz(values) -> np.ndarray:
    return np.asarray(values, dtype=float)[::-1]


def _itk_direction(image: ImageFile) -> np.ndarray:
    return image.direction_matrix()[::-1, ::-1].ravel()


@pytest.fixture
def nifti(tmp_path: Path) -> dict:
    return scans.nifti_volume(tmp_path / "anatomical_rotated.nii.gz")


def test_nifti_geometry_matches_nibabels_affine(nifti: dict) -> None:
    image = read_image_file(nifti["path"])
    assert image.format == "nifti" and image.axes == "ZYX" and image.axes_source == "file"
    assert image.unit == "mm"
    np.testing.assert_array_equal(image.data, nifti["data_zyx"])
    # NIfTI stores its geometry in float32: equal to what was asked within float32 precision.
    np.testing.assert_allclose(image.spacing, nifti["spacing_zyx"], rtol=1e-6)
    np.testing.assert_allclose(image.origin, nifti["origin_zyx"], atol=1e-5)
    np.testing.assert_allclose(image.direction_matrix(), nifti["direction_zyx"], atol=1e-6)
    assert image.spacing[0] == pytest.approx(2.5)  # Z is the 2.5 mm slice axis
    # read_image keeps returning the pixels alone
    np.testing.assert_array_equal(read_image(nifti["path"]), image.data)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_mask_written_with_the_images_geometry(tmp_path: Path, nifti: dict, suffix: str) -> None:
    """Input in one format, mask in the same: SimpleITK reads back identical geometry (1e-6)."""
    import SimpleITK as sitk

    source = read_image_file(nifti["path"])
    image_path = tmp_path / f"scan{suffix}"
    write_like(image_path, source.data, source, kind="image")  # the scan itself in this format
    image = read_image_file(image_path)
    mask = (image.data > np.percentile(image.data, 70)).astype(np.uint8) * 3
    out = write_like(tmp_path / f"scan_mask{suffix}", mask, image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [nifti["path"].name, image_path.name, out.name]
    ), "a temporary file was left behind"
    ref, got = scans.sitk_geometry(image_path), scans.sitk_geometry(out)
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=TOL, err_msg=key)
    assert got["size"] == ref["size"]
    assert got["pixel"] == "8-bit unsigned integer"
    np.testing.assert_array_equal(got["array"], mask)
    # and the geometry is the source's, not only self-consistent
    np.testing.assert_allclose(got["spacing"], _xyz(source.spacing), atol=TOL)
    np.testing.assert_allclose(got["origin"], _xyz(source.origin), atol=TOL)
    np.testing.assert_allclose(got["direction"], _itk_direction(source), atol=TOL)
    assert sitk.ReadImage(str(out)).GetDimension() == 3


def test_nii_gz_is_compressed_and_nii_is_not(tmp_path: Path, nifti: dict) -> None:
    image = read_image_file(nifti["path"])
    mask = np.zeros(image.shape, np.uint8)
    gz = write_like(tmp_path / "m.nii.gz", mask, image)
    raw = write_like(tmp_path / "m.nii", mask, image)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert raw.read_bytes()[:2] != b"\x1f\x8b"
    with gzip.open(gz) as fh:
        assert len(fh.read()) > 352  # a real NIfTI header and data inside


def test_labels_get_the_smallest_integer_type_and_floats_are_refused(tmp_path: Path, nifti: dict) -> None:
    image = read_image_file(nifti["path"])
    labels = np.zeros(image.shape, np.int64)
    labels[0, 0, 0] = 300
    write_like(tmp_path / "m16.nrrd", labels, image)
    assert scans.sitk_geometry(tmp_path / "m16.nrrd")["pixel"] == "16-bit unsigned integer"
    labels[0, 0, 1] = 70000
    write_like(tmp_path / "m32.nrrd", labels, image)
    assert scans.sitk_geometry(tmp_path / "m32.nrrd")["pixel"] == "32-bit signed integer"
    with pytest.raises(ValueError, match="integer labels"):
        write_like(tmp_path / "bad.nrrd", labels.astype(np.float32), image)
    assert not (tmp_path / "bad.nrrd").exists()


def test_probabilities_with_classes_are_written_as_components(tmp_path: Path, nifti: dict) -> None:
    image = read_image_file(nifti["path"])
    probs = np.random.default_rng(0).random((2, *image.shape)).astype(np.float32)
    out = write_like(tmp_path / "p.mha", probs, image, kind="image")
    got = scans.sitk_geometry(out)
    np.testing.assert_allclose(got["array"], np.moveaxis(probs, 0, -1))
    np.testing.assert_allclose(got["direction"], _itk_direction(image), atol=TOL)
    one = write_like(tmp_path / "p1.nii.gz", probs[:1], image, kind="image")
    assert scans.sitk_geometry(one)["array"].shape == image.shape


def test_mask_of_another_shape_is_refused_and_nothing_is_overwritten(tmp_path: Path, nifti: dict) -> None:
    image = read_image_file(nifti["path"])
    with pytest.raises(ValueError, match="voxel grid"):
        write_like(tmp_path / "m.nii.gz", np.zeros(image.shape[1:], np.uint8), image)
    target = write_like(tmp_path / "m.nii.gz", np.ones(image.shape, np.uint8), image)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_like(target, np.zeros(image.shape, np.uint8), image)
    assert scans.sitk_geometry(target)["array"].max() == 1
    write_like(target, np.zeros(image.shape, np.uint8), image, overwrite=True)
    assert scans.sitk_geometry(target)["array"].max() == 0
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_like(tmp_path / "m.tif", np.zeros(image.shape, np.uint8), image)


def test_atomic_path_keeps_the_compound_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "scan_mask.nii.gz") as tmp:
        assert tmp.name.endswith(".tmp.nii.gz")
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "mask.tif") as tmp:
        assert tmp.name.endswith(".tmp.tif")
        tmp.write_bytes(b"x")


def test_four_d_nifti_keeps_time_and_space(tmp_path: Path) -> None:
    import SimpleITK as sitk

    data = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    img = sitk.GetImageFromArray(data, isVector=False)
    img.SetSpacing((0.5, 0.6, 2.0, 1.5))
    img.SetOrigin((1.0, -2.0, 3.0, 0.0))
    sitk.WriteImage(img, str(tmp_path / "t.nii.gz"))
    image = read_image_file(tmp_path / "t.nii.gz")
    assert image.axes == "TZYX"
    assert image.spacing == pytest.approx((2.0, 0.6, 0.5))
    out = write_like(tmp_path / "t_mask.nii.gz", (image.data > 50).astype(np.uint8), image)
    back = sitk.ReadImage(str(out))
    np.testing.assert_allclose(back.GetSpacing(), (0.5, 0.6, 2.0, 1.5), atol=TOL)
    np.testing.assert_allclose(back.GetOrigin(), (1.0, -2.0, 3.0, 0.0), atol=TOL)


# ------------------------------------------------------------------------------------------------
# DICOM


def test_dicom_series_from_real_slices(tmp_path: Path) -> None:
    made = scans.ct_series(tmp_path / "ct", n=5, dz=2.5)
    image = read_image_file(tmp_path / "ct")
    assert image.format == "dicom" and image.axes == "ZYX" and image.shape == (5, 128, 128)
    assert image.modality == "CT" and image.intensity_unit == "HU"
    assert image.spacing == pytest.approx((2.5, *made["pixel_spacing"]), abs=TOL)
    np.testing.assert_allclose(image.origin, made["origin"][::-1], atol=TOL)
    np.testing.assert_allclose(image.direction_matrix(), np.eye(3), atol=TOL)
    # HU: pydicom's rescaled pixels, slices in position order whatever the file names
    np.testing.assert_array_equal(image.data, made["hu"])
    assert image.data.min() < -800  # air: the rescale intercept (-1024) was applied
    assert image.metadata["series_uid"] == made["uid"]
    assert "PatientName" not in str(image.metadata) and "PatientID" not in str(image.metadata)


def test_one_file_of_a_series_reads_the_whole_series(tmp_path: Path) -> None:
    made = scans.ct_series(tmp_path / "ct", n=3, dz=1.25)
    image = read_image_file(made["files"][1])
    assert image.shape == (3, 128, 128)
    assert image.spacing[0] == pytest.approx(1.25)


def test_oblique_series_direction(tmp_path: Path) -> None:
    rot = scans.rotation((0.0, 0.0, 25.0))  # tilted about x
    made = scans.ct_series(tmp_path / "oblique", n=4, dz=3.0, oblique=rot)
    image = read_image_file(tmp_path / "oblique")
    np.testing.assert_allclose(image.direction_matrix(), made["direction"][::-1, ::-1], atol=1e-5)
    assert image.spacing[0] == pytest.approx(3.0, abs=1e-4)
    out = write_like(tmp_path / "mask.nii.gz", np.zeros(image.shape, np.uint8), image)
    got = scans.sitk_geometry(out)
    np.testing.assert_allclose(got["direction"], made["direction"].ravel(), atol=1e-5)
    np.testing.assert_allclose(got["origin"], made["origin"], atol=1e-4)


def test_extensionless_dicom_files_are_found_by_their_marker(tmp_path: Path) -> None:
    scans.ct_series(tmp_path / "plain", n=3, extensions=False)
    assert find_images([tmp_path / "plain"]) == [tmp_path / "plain"]
    assert read_image_file(tmp_path / "plain").shape == (3, 128, 128)


def test_folder_with_two_series_lists_them_and_series_picks_one(tmp_path: Path) -> None:
    a = scans.ct_series(tmp_path / "mixed", n=4, dz=2.5, description="thick", number=1, seed=1)
    b = scans.ct_series(tmp_path / "mixed", n=3, dz=1.0, description="thin", number=2, seed=2)
    with pytest.raises(ImageReadError) as info:
        read_image_file(tmp_path / "mixed")
    message = str(info.value)
    assert "2 DICOM series" in message and a["uid"] in message and b["uid"] in message
    assert "thick" in message and "thin" in message and "--series" in message
    picked = read_image_file(tmp_path / "mixed", series=b["uid"])
    assert picked.shape[0] == 3 and picked.spacing[0] == pytest.approx(1.0)
    other = read_image_file(tmp_path / "mixed", series=a["uid"])
    assert other.shape[0] == 4 and other.spacing[0] == pytest.approx(2.5)
    np.testing.assert_array_equal(other.data, a["hu"])
    with pytest.raises(ImageReadError, match=r"no DICOM series '1\.2\.3'"):
        read_image_file(tmp_path / "mixed", series="1.2.3")
    # the folder is one input for find_images; the choice is made when it is read
    assert find_images([tmp_path / "mixed"]) == [tmp_path / "mixed"]


def test_single_mr_file(tmp_path: Path) -> None:
    import pydicom

    image = read_image_file(scans.mr_slice_path())
    assert image.modality == "MR" and image.intensity_unit is None
    assert image.shape == (1, 64, 64)
    np.testing.assert_array_equal(image.data[0], pydicom.dcmread(scans.mr_slice_path()).pixel_array)
    assert image.spacing[1:] == pytest.approx((0.3125, 0.3125))


def test_find_images_lists_medical_files_dicom_folders_and_plain_images(tmp_path: Path, nifti: dict) -> None:
    from napari_madgnet.io import write_image

    scans.ct_series(tmp_path / "study" / "ct", n=2)
    write_image(tmp_path / "study" / "photo.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    nifti["path"].rename(tmp_path / "study" / "brain.nii.gz")
    assert find_images([tmp_path / "study"]) == [
        tmp_path / "study" / "brain.nii.gz",
        tmp_path / "study" / "photo.png",
    ]
    assert find_images([tmp_path / "study"], recursive=True) == [
        tmp_path / "study" / "brain.nii.gz",
        tmp_path / "study" / "ct",
        tmp_path / "study" / "photo.png",
    ]
    assert image_stem(tmp_path / "study" / "brain.nii.gz") == "brain"
    assert image_stem(tmp_path / "study" / "ct") == "ct"
    assert image_stem(Path("a.b.tif")) == "a.b"


def test_broken_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ImageReadError, match=r"broken\.nii\.gz.*nifti"):
        read_image_file(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="neither a zarr store nor a folder of DICOM"):
        read_image_file(empty)


def test_without_simpleitk_the_error_names_the_extra(
    tmp_path: Path, nifti: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import SimpleITK now raises ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "napari-madgnet\[medical\]"'):
        read_image_file(nifti["path"])
    with pytest.raises(MissingExtraError, match="medical"):
        read_image(nifti["path"])
    # plain formats keep working
    from napari_madgnet.io import write_image

    write_image(tmp_path / "x.tif", np.ones((3, 3), np.uint8))
    assert read_image_file(tmp_path / "x.tif").format == "tiff"
