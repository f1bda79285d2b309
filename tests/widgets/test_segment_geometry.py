"""A scan opened through the plugin's reader, segmented in the dock, saved with File > Save Selected
Layers through the plugin's writer: the mask NIfTI lines up with the scan (real napari, Xvfb)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_madgnet.imagefile import GEOMETRY_KEY
from napari_madgnet.io import read_image_file, write_like
from tests.medical import scans

PLUGIN = "napari-madgnet"


def test_segment_widget_mask_saves_as_nifti_on_the_scans_grid(
    make_napari_viewer, tmp_path: Path, tiny_model, wait_job, errors
) -> None:
    made = scans.nifti_volume(tmp_path / "full.nii.gz")
    full = read_image_file(made["path"])
    # three slices of the real MRI keep the run short; the geometry is the rotated one of the file
    small = write_like(tmp_path / "brain.nii.gz", full.data[:3], _first_slices(full, 3), kind="image")
    viewer = make_napari_viewer()
    scan = viewer.open(small, plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.scope.setCurrentText("whole stack")
    widget.threshold.setValue(0.5)
    widget.run()
    wait_job(widget)
    assert errors == []
    mask = viewer.layers["brain mask"]
    assert mask.metadata[GEOMETRY_KEY] == scan.metadata[GEOMETRY_KEY]
    np.testing.assert_allclose(mask.affine.affine_matrix, scan.affine.affine_matrix)
    out = tmp_path / "brain_mask.nii.gz"
    viewer.layers.selection = {mask}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    ref, got = scans.sitk_geometry(small), scans.sitk_geometry(out)
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(got[key], ref[key], atol=1e-6, err_msg=key)
    assert got["size"] == ref["size"]
    np.testing.assert_array_equal(got["array"], np.asarray(mask.data))


def _first_slices(image, n):
    from dataclasses import replace

    return replace(image, data=image.data[:n])
