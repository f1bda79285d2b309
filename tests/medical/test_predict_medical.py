"""``madgnet predict`` on medical volumes and videos: masks in the input's family with the input's
geometry (to 1e-6, read back by SimpleITK), DICOM series chosen clearly, HU values reaching the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.cli import main
from tests.medical import scans
from tests.medical.conftest import Threshold

TOL = 1e-6


def _write_with_simpleitk(made: dict, path: Path) -> Path:
    """The rotated NIfTI converted by SimpleITK itself (an independent NRRD/MHA writer)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(made["path"])), str(path))
    return path


def _assert_same_geometry(mask_path: Path, image_path: Path) -> None:
    got, ref = scans.sitk_geometry(mask_path), scans.sitk_geometry(image_path)
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=TOL, err_msg=key)
    assert got["size"] == ref["size"], "the mask's voxel grid differs from the image's"
    assert got["pixel"] == "8-bit unsigned integer"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_volume_through_predict_comes_back_with_its_geometry(
    tmp_path: Path, madgnet_checkpoint: Path, capsys, suffix: str
) -> None:
    (tmp_path / "in").mkdir()
    # the real MRI, 5 slices, spacing (0.7, 0.7, 2.5) mm, non-zero origin, rotated
    made = scans.nifti_volume(tmp_path / "src.nii.gz", slices=5)
    image = made["path"] if suffix == ".nii.gz" else _write_with_simpleitk(made, tmp_path / f"src{suffix}")
    image = image.rename(tmp_path / "in" / f"brain{suffix}")
    out = tmp_path / "out"
    args = [
        "predict",
        str(image),
        "-m",
        str(madgnet_checkpoint),
        "-o",
        str(out),
        "-q",
        "--save-probabilities",
    ]
    args += ["--geometry", "resize"]  # one 32 px forward per slice
    assert main(args) == 0, capsys.readouterr().err
    mask = out / f"brain_mask{suffix}"
    _assert_same_geometry(mask, image)
    probs = scans.sitk_geometry(out / f"brain_probabilities{suffix}")
    assert probs["size"] == scans.sitk_geometry(image)["size"] and probs["pixel"] == "32-bit float"
    assert set(np.unique(scans.sitk_geometry(mask)["array"])) <= {0, 1}


def test_dicom_series_through_predict_to_a_nifti_with_the_series_geometry(
    tmp_path: Path, madgnet_checkpoint: Path, capsys
) -> None:
    import SimpleITK as sitk

    scans.ct_series(tmp_path / "ct_head", n=4, dz=2.5, oblique=scans.rotation((0.0, 0.0, 20.0)))
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "ct_head"), "-m", str(madgnet_checkpoint), "-o", str(out), "-q"]
    assert main([*args, "--geometry", "resize"]) == 0, capsys.readouterr().err
    mask = out / "ct_head_mask.nii.gz"
    got = scans.sitk_geometry(mask)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct_head")))
    series = reader.Execute()
    np.testing.assert_allclose(got["spacing"], series.GetSpacing(), atol=1e-5)  # NIfTI holds float32
    np.testing.assert_allclose(got["origin"], series.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(got["direction"], series.GetDirection(), atol=1e-6)
    assert got["size"] == series.GetSize() == (128, 128, 4)
    assert got["spacing"][2] == pytest.approx(2.5, abs=1e-5)


def test_folder_with_two_series_asks_for_one_then_series_picks_it(
    tmp_path: Path, madgnet_checkpoint: Path, capsys
) -> None:
    a = scans.ct_series(tmp_path / "study", n=3, dz=2.5, description="axial", seed=1)
    b = scans.ct_series(tmp_path / "study", n=2, dz=5.0, description="scout", number=2, seed=2)
    out = tmp_path / "out"
    base = ["predict", str(tmp_path / "study"), "-m", str(madgnet_checkpoint), "-o", str(out), "-q"]
    base += ["--geometry", "resize"]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "2 DICOM series" in err and a["uid"] in err and b["uid"] in err and "--series" in err
    assert not (out / "study_mask.nii.gz").exists()
    assert main([*base, "--series", a["uid"]]) == 0, capsys.readouterr().err
    assert scans.sitk_geometry(out / "study_mask.nii.gz")["size"] == (128, 128, 3)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Threshold:
    """The CLI loads this network whatever --model says (the threshold tells what it was given)."""
    model = Threshold(input_size=128)
    monkeypatch.setattr("napari_madgnet.registry.load_registered_model", lambda *a, **k: model)
    return model


@pytest.mark.parametrize("window,centre", [("ct-soft-tissue", 40.0), ("ct-bone", 400.0)])
def test_hu_values_reach_the_model_and_the_ct_window_decides(
    tmp_path: Path, stand_in: Threshold, capsys, window: str, centre: float
) -> None:
    """Through the CLI, a CT window maps HU (rescale applied) so that the window's centre is 0.5:
    the stand-in network's mask is exactly HU > centre, with HU computed by pydicom."""
    made = scans.ct_series(tmp_path / "ct", n=3, dz=2.5)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "ct"), "-m", "stand-in", "-o", str(out), "-q", "--geometry", "resize"]
    assert main([*args, "--normalization", window]) == 0, capsys.readouterr().err
    mask = scans.sitk_geometry(out / "ct_mask.nii.gz")["array"].astype(bool)
    hu = made["hu"]
    decided = np.abs(hu - centre) >= 1  # a voxel at the centre itself is a float32 tie
    np.testing.assert_array_equal(mask[decided], (hu > centre)[decided])
    assert 0.01 < mask.mean() < 0.99  # the window splits this real CT, neither all nor nothing
    assert len(stand_in.calls) == 3 and stand_in.calls[0][-2:] == (128, 128)  # plane by plane


def test_axes_override_segments_other_planes_and_keeps_the_grid(
    tmp_path: Path, stand_in: Threshold, capsys
) -> None:
    made = scans.nifti_volume(tmp_path / "brain.nii.gz", slices=4)
    out = tmp_path / "out"
    z, y, _ = made["data_zyx"].shape
    args = ["predict", str(made["path"]), "-m", "stand-in", "-o", str(out), "-q", "--geometry", "resize"]
    assert main(args) == 0, capsys.readouterr().err
    assert len(stand_in.calls) == z  # default: the slice axis
    stand_in.calls.clear()
    assert main([*args, "--axes", "YZX", "--overwrite"]) == 0, capsys.readouterr().err
    assert len(stand_in.calls) == y  # planes across the stored Y axis
    _assert_same_geometry(out / "brain_mask.nii.gz", made["path"])


def test_video_through_predict_gives_frame_masks_and_an_overlay(
    tmp_path: Path, madgnet_checkpoint: Path, capsys
) -> None:
    import tifffile

    from napari_madgnet.video import VideoFrames, VideoWriter

    video = tmp_path / "in" / "colonoscopy.mp4"
    video.parent.mkdir()
    with VideoWriter(video, 12) as writer:
        for t in range(10):
            frame = np.full((48, 64, 3), 40, np.uint8)
            frame[10:30, 5 + 3 * t : 25 + 3 * t] = 220
            writer.write(frame)
    out = tmp_path / "out"
    args = ["predict", str(video.parent), "-m", str(madgnet_checkpoint), "-o", str(out), "-q"]
    assert main([*args, "--geometry", "resize"]) == 0, capsys.readouterr().err
    masks = tifffile.imread(out / "colonoscopy_mask.tif")
    assert masks.shape == (10, 48, 64)
    overlay = VideoFrames(out / "colonoscopy_overlay.mp4")
    assert overlay.shape == (10, 48, 64, 3) and overlay.fps == pytest.approx(12)
    assert len(list(overlay.iter_frames())) == 10


def test_missing_extra_is_named_per_file(
    tmp_path: Path, madgnet_checkpoint: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = scans.nifti_volume(tmp_path / "brain.nii.gz", slices=2)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    args = ["predict", str(made["path"]), "-m", str(madgnet_checkpoint), "-o", str(tmp_path / "o"), "-q"]
    code = main(args)
    assert code == 1
    assert 'pip install "napari-madgnet[medical]"' in capsys.readouterr().err
