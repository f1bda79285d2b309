"""The plugin's napari reader and writers in a real viewer (Xvfb): layers placed in physical space,
masks saved where the scan is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.imagefile import GEOMETRY_KEY, ImageFile, affine_matrix, napari_transform
from napari_madgnet.io import read_image_file, write_like
from tests.medical import scans

PLUGIN = "napari-madgnet"
TOL = 1e-6


def _itk_world(path: Path, index_zyx) -> np.ndarray:
    """SimpleITK's physical point of a voxel, in ZYX order (the oracle for napari's world)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    return np.asarray(img.TransformIndexToPhysicalPoint([int(i) for i in index_zyx[::-1]]))[::-1]


@pytest.fixture
def volumes(tmp_path: Path) -> dict[str, Path]:
    """The real anatomical MRI, rotated, as NIfTI, NRRD and MetaImage; and a real CT series."""
    made = scans.nifti_volume(tmp_path / "brain.nii.gz")
    image = read_image_file(made["path"])
    paths = {"nifti": made["path"]}
    for fmt, suffix in (("nrrd", ".nrrd"), ("metaimage", ".mha")):
        paths[fmt] = write_like(tmp_path / f"brain{suffix}", image.data, image, kind="image")
    scans.ct_series(tmp_path / "ct", n=4, dz=2.5)
    paths["dicom"] = tmp_path / "ct"
    return paths


@pytest.mark.parametrize("fmt", ["nifti", "nrrd", "metaimage", "dicom"])
def test_reader_places_each_format_in_physical_space(make_napari_viewer, volumes, fmt: str) -> None:
    viewer = make_napari_viewer()
    path = volumes[fmt]
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    image = read_image_file(path)
    np.testing.assert_array_equal(np.asarray(layer.data), image.data)
    np.testing.assert_allclose(layer.scale, image.spacing, atol=TOL)
    np.testing.assert_allclose(layer.translate, image.origin, atol=TOL)
    rotated = fmt != "dicom"
    assert np.allclose(layer.affine.affine_matrix, np.eye(4)) != rotated
    # napari's world position of voxels = SimpleITK's physical point (the reader got the composition right)
    for index in [(0, 0, 0), (1, 2, 3), tuple(s - 1 for s in image.shape)]:
        world = np.asarray(layer.data_to_world(index))
        np.testing.assert_allclose(
            world, _itk_world(path if fmt != "dicom" else _first(path), index), atol=1e-4
        )
    record = layer.metadata[GEOMETRY_KEY]
    assert record["format"] == fmt and record["shape"] == list(image.shape) and record["unit"] == "mm"
    if fmt == "dicom":
        assert tuple(layer.contrast_limits) == (-160.0, 240.0)  # CT in HU opens in a soft-tissue window


def _first(folder: Path) -> Path:
    """A CT series' geometry as SimpleITK reads the whole series."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    out = folder.parent / "series_as_read.nrrd"
    if not out.exists():
        sitk.WriteImage(reader.Execute(), str(out))
    return out


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_labels_saved_through_napari_reopen_with_the_scans_geometry(
    make_napari_viewer, volumes, tmp_path: Path, suffix: str
) -> None:
    viewer = make_napari_viewer()
    scan = viewer.open(volumes["nifti"], plugin=PLUGIN)[0]
    mask = (np.asarray(scan.data) > np.percentile(scan.data, 80)).astype(np.uint8)
    labels = viewer.add_labels(
        mask,
        name="brain mask",
        scale=scan.scale,
        translate=scan.translate,
        affine=scan.affine,
        metadata={GEOMETRY_KEY: scan.metadata[GEOMETRY_KEY]},
    )
    out = tmp_path / f"brain_mask{suffix}"
    viewer.layers.selection = {labels}
    written = viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    assert written == [str(out)]
    ref, got = scans.sitk_geometry(volumes["nifti"]), scans.sitk_geometry(out)
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(got[key], ref[key], atol=TOL, err_msg=key)
    np.testing.assert_array_equal(got["array"], mask)
    again = viewer.open(out, plugin=PLUGIN)[0]
    np.testing.assert_allclose(again.scale, scan.scale, atol=TOL)
    np.testing.assert_allclose(again.translate, scan.translate, atol=TOL)
    np.testing.assert_allclose(again.affine.affine_matrix, scan.affine.affine_matrix, atol=TOL)


def test_labels_without_a_record_are_saved_where_napari_shows_them(
    make_napari_viewer, tmp_path: Path
) -> None:
    """A Labels layer drawn by hand, placed with scale/translate/rotate: its own transform is saved."""
    viewer = make_napari_viewer()
    labels = viewer.add_labels(
        np.zeros((3, 8, 9), np.uint16), scale=(2.0, 0.5, 0.25), translate=(5.0, -3.0, 1.0), rotate=30.0
    )
    labels.data[1, 2:4, 3:6] = 7
    out = tmp_path / "drawn.nrrd"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    for index in [(0, 0, 0), (2, 7, 8), (1, 3, 4)]:
        np.testing.assert_allclose(_itk_world(out, index), labels.data_to_world(index), atol=1e-6)
    assert scans.sitk_geometry(out)["array"].max() == 7


def test_moved_layer_is_saved_where_it_now_is(make_napari_viewer, volumes, tmp_path: Path) -> None:
    """A stale geometry record (the user moved the layer) does not win over what the viewer shows."""
    viewer = make_napari_viewer()
    scan = viewer.open(volumes["dicom"], plugin=PLUGIN)[0]
    labels = viewer.add_labels(
        np.zeros(scan.data.shape, np.uint8),
        scale=scan.scale,
        translate=np.asarray(scan.translate) + np.array([0.0, 10.0, 0.0]),
        metadata={GEOMETRY_KEY: scan.metadata[GEOMETRY_KEY]},
    )
    out = tmp_path / "moved.nii.gz"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    np.testing.assert_allclose(_itk_world(out, (0, 0, 0)), labels.data_to_world((0, 0, 0)), atol=1e-4)


def test_video_opens_lazily_as_rgb_frames(make_napari_viewer, tmp_path: Path) -> None:
    from napari_madgnet.video import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 10) as writer:
        for t in range(12):
            writer.write(np.full((32, 48, 3), 20 * t, np.uint8))
    viewer = make_napari_viewer()
    layer = viewer.open(path, plugin=PLUGIN)[0]
    assert layer.rgb and layer.data.shape == (12, 32, 48, 3)
    assert abs(int(np.asarray(layer.data[5]).mean()) - 100) <= 3
    assert layer.metadata["fps"] == pytest.approx(10)


def test_reader_declines_other_files(tmp_path: Path) -> None:
    from napari_madgnet.napari_io import get_reader

    (tmp_path / "a.tif").write_bytes(b"II*\x00")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "a.tif")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


def test_napari_transform_composes_to_the_physical_position() -> None:
    """napari maps index -> affine @ (scale * index + translate); that must be origin + D @ (s * index)."""
    rot = scans.rotation((15.0, -40.0, 70.0))
    image = ImageFile(
        data=np.zeros((4, 5, 6)),
        axes="ZYX",
        spacing=(2.5, 0.7, 0.7),
        origin=(7.8, -45.6, 12.3),
        direction=rot,
    )
    t = napari_transform(image)
    m = affine_matrix(image.spacing, image.origin, rot)
    for index in [(0, 0, 0), (3, 4, 5), (1, 0, 2)]:
        inner = np.asarray(t["scale"]) * index + np.asarray(t["translate"])
        world = t["affine"][:3, :3] @ inner + t["affine"][:3, 3]
        np.testing.assert_allclose(world, (m @ [*index, 1.0])[:3], atol=1e-12)
    plain = napari_transform(ImageFile(data=np.zeros((2, 3)), axes="YX", spacing=(1.5, 2.0), origin=(1, 2)))
    assert "affine" not in plain and plain["scale"] == [1.5, 2.0]
    video = ImageFile(
        data=np.zeros((2, 4, 5)), axes="TYX", spacing=(0.5, 0.5), origin=(0, 0), direction=np.eye(2)
    )
    assert napari_transform(video)["scale"] == [1.0, 0.5, 0.5]
