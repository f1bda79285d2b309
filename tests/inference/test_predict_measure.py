"""``madgnet predict --measure``: the per-object table beside each mask, in the file's units."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # a 3-plane volume through the CLI: about 30 s on 2 cores
def test_predict_measure_writes_the_table_in_the_volume_s_millimetres(checkpoint, tmp_path, capsys) -> None:
    nib = pytest.importorskip("nibabel")
    from napari_madgnet.cli import main

    rng = np.random.default_rng(0)
    xyz = rng.integers(0, 200, (36, 40, 3)).astype(np.float32)  # NIfTI order: X, Y, Z
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(xyz, np.diag([0.7, 0.5, 2.5, 1.0])), src)
    out = tmp_path / "out"
    # Threshold 0: every voxel is object, so the one object is the whole volume.
    args = ["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q", "--threshold", "0", "--measure"]
    assert main(args) == 0, capsys.readouterr().err
    table = out / "scan_measurements.csv"
    rows = _rows(table)
    assert len(rows) == 1
    row = rows[0]
    voxels = 36 * 40 * 3
    assert int(row["voxels"]) == voxels
    assert float(row["volume_mm3"]) == pytest.approx(voxels * 0.7 * 0.5 * 2.5)
    assert float(row["equivalent_diameter_mm"]) == pytest.approx((6 * voxels * 0.875 / math.pi) ** (1 / 3))
    assert float(row["centroid_z_mm"]) == pytest.approx(1.0 * 2.5)  # planes 0..2: the middle one
    assert float(row["centroid_x_mm"]) == pytest.approx(17.5 * 0.7)
    assert float(row["mean_intensity"]) == pytest.approx(float(xyz.mean()), rel=1e-5)
    assert float(row["max_intensity"]) == xyz.max()
    log = next(out.glob("madgnet-predict-*.json")).read_text()
    assert "scan_measurements.csv" in log
    # The table is an output like the mask: an existing one is refused (before the model loads).
    table.unlink()
    (out / "scan_mask.nii.gz").unlink()
    table.write_text("keep me")
    assert main(args) == 2
    assert "scan_measurements.csv" in capsys.readouterr().err and table.read_text() == "keep me"


def test_predict_measure_of_a_plain_image_is_in_pixels(checkpoint, tmp_path, capsys) -> None:
    import tifffile

    from napari_madgnet.cli import main

    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, np.random.default_rng(1).integers(0, 255, (40, 36), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q", "--threshold", "0", "--measure"]
    assert main(args) == 0, capsys.readouterr().err
    rows = _rows(out / "cells_measurements.csv")
    assert [int(r["pixels"]) for r in rows] == [40 * 36]
    assert float(rows[0]["area_px"]) == 40 * 36
    assert float(rows[0]["centroid_y_px"]) == pytest.approx(19.5)
