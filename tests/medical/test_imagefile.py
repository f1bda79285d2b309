"""The geometry arithmetic of ``imagefile``: matrices, their inverse, plane reordering."""

from __future__ import annotations

import numpy as np
import pytest

from napari_madgnet.errors import UserError
from napari_madgnet.imagefile import (
    ImageFile,
    affine_matrix,
    geometry_from_matrix,
    geometry_matches,
    is_identity,
    planes_last,
)
from tests.medical import scans


def test_matrix_and_its_decomposition_are_inverse() -> None:
    rot = scans.rotation((10.0, 20.0, 30.0))
    m = affine_matrix((2.5, 0.7, 0.7), (1.0, -2.0, 3.0), rot)
    spacing, origin, direction = geometry_from_matrix(m)
    np.testing.assert_allclose(spacing, (2.5, 0.7, 0.7))
    np.testing.assert_allclose(origin, (1.0, -2.0, 3.0))
    np.testing.assert_allclose(np.reshape(direction, (3, 3)), rot, atol=1e-12)
    assert not is_identity(direction) and is_identity(np.eye(3))


def test_shear_and_collapsed_axes_are_refused() -> None:
    sheared = affine_matrix((1.0, 1.0), (0.0, 0.0), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(UserError, match="shear"):
        geometry_from_matrix(sheared)
    with pytest.raises(UserError, match="zero scale"):
        geometry_from_matrix(np.diag([1.0, 0.0, 1.0]))


def test_geometry_records_compare_by_position_not_by_numbers() -> None:
    image = ImageFile(
        np.zeros((2, 3, 4)), axes="ZYX", spacing=(2, 1, 1), origin=(0, 0, 0), direction=np.eye(3)
    )
    record = image.geometry()
    assert geometry_matches(record, dict(record, spacing=[2.0, 1.0, 1.0 + 1e-9]))
    assert not geometry_matches(record, dict(record, origin=[0.0, 0.1, 0.0]))
    assert not geometry_matches(record, dict(record, shape=[2, 3, 5]))
    again = ImageFile.from_geometry(np.zeros((2, 3, 4)), record)
    assert again.geometry() == record


def test_image_file_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="axes"):
        ImageFile(np.zeros((2, 3)), axes="ZYX")
    with pytest.raises(ValueError, match="spacing"):
        ImageFile(np.zeros((2, 3)), axes="YX", spacing=(1.0, 1.0, 1.0))
    video = ImageFile(np.zeros((5, 4, 6, 3)), axes="tyxc")
    assert video.axes == "TYXC" and video.spatial_axes == "YX" and video.spatial_shape == (4, 6)


@pytest.mark.parametrize(
    "axes,perm,after",
    [
        ("ZYX", (0, 1, 2), "ZYX"),
        ("YXC", (0, 1, 2), "YXC"),
        ("YZX", (1, 0, 2), "ZYX"),
        ("XZY", (1, 2, 0), "ZYX"),
        ("TYZX", (0, 2, 1, 3), "TZYX"),
        ("YXZ", (2, 0, 1), "ZYX"),
    ],
)
def test_planes_last(axes: str, perm: tuple[int, ...], after: str) -> None:
    assert planes_last(axes) == (perm, after)
    arr = np.zeros(tuple(range(2, 2 + len(axes))))
    moved = np.transpose(arr, perm)
    assert [moved.shape[after.index(a)] for a in axes] == list(arr.shape)  # each axis kept its length


def test_planes_last_needs_y_and_x() -> None:
    with pytest.raises(UserError, match="Y and X"):
        planes_last("ZY")
