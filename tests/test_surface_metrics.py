"""HD95, ASSD and NSD: hand-checked cases, MONAI's empty-mask values, and MONAI as the oracle."""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest
from scipy import ndimage

from napari_madgnet import metrics
from napari_madgnet.errors import UserError
from napari_madgnet.surface_metrics import assd, hd95, nsd, surface, surface_distances, surface_metrics


def test_one_voxel_each_distance_uses_the_spacing() -> None:
    pred = np.zeros((6, 8), bool)
    truth = np.zeros((6, 8), bool)
    pred[0, 0] = truth[3, 4] = True
    expected = math.hypot(3 * 2.0, 4 * 0.5)  # sqrt(40) mm
    assert hd95(pred, truth, spacing=(2.0, 0.5)) == pytest.approx(expected)
    assert assd(pred, truth, spacing=(2.0, 0.5)) == pytest.approx(expected)
    assert nsd(pred, truth, 6.5, spacing=(2.0, 0.5)) == 1.0
    assert nsd(pred, truth, 6.0, spacing=(2.0, 0.5)) == 0.0
    assert hd95(pred, truth) == pytest.approx(5.0)  # no spacing: voxels


def test_segments_in_1d_show_the_percentile_and_the_pooling() -> None:
    # Surfaces: pred {2, 5}, truth {2, 7}; distances 0 and 2 voxels = 1.0 mm in each direction.
    pred = np.zeros(10, bool)
    truth = np.zeros(10, bool)
    pred[2:6] = True
    truth[2:8] = True
    assert hd95(pred, truth, spacing=0.5) == pytest.approx(0.95 * 1.0)  # linear interpolation
    assert assd(pred, truth, spacing=0.5) == pytest.approx(0.5)
    assert nsd(pred, truth, 0.9, spacing=0.5) == pytest.approx(0.5)
    assert nsd(pred, truth, 1.0, spacing=0.5) == pytest.approx(1.0)


def test_parallel_planes_in_3d_are_the_z_spacing_apart() -> None:
    pred = np.zeros((8, 5, 5), bool)
    truth = np.zeros((8, 5, 5), bool)
    truth[2] = True
    pred[5] = True
    d = surface_distances(pred, truth, spacing=(2.0, 0.5, 0.5))
    assert np.allclose(d.pred_to_truth, 6.0) and np.allclose(d.truth_to_pred, 6.0)
    got = surface_metrics(pred, truth, 6.0, spacing=(2.0, 0.5, 0.5))
    assert got == pytest.approx({"hd95": 6.0, "assd": 6.0, "nsd": 1.0})
    assert nsd(pred, truth, 5.9, spacing=(2.0, 0.5, 0.5)) == 0.0


def test_tolerance_equal_to_the_distance_up_to_rounding_counts_as_within() -> None:
    pred = np.zeros(6, bool)
    truth = np.zeros(6, bool)
    pred[0] = truth[3] = True  # 3 * 0.1 = 0.30000000000000004 in double precision
    assert nsd(pred, truth, 0.3, spacing=0.1) == 1.0


def test_identical_masks_and_surface_definition() -> None:
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    assert surface_metrics(m, m, 0.0) == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    ring = surface(m)
    assert ring.sum() == 16 and not ring[2:5, 2:5].any()
    full = np.ones((4, 5), bool)  # the array's border counts as background
    assert surface(full).sum() == 4 * 5 - 2 * 3


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_cases_are_monai_s(ndim: int) -> None:
    empty = np.zeros((5,) * ndim, bool)
    blob = empty.copy()
    blob[(slice(1, 3),) * ndim] = True
    both = surface_metrics(empty, empty, 1.0)
    assert all(math.isnan(v) for v in both.values())
    for a, b in ((empty, blob), (blob, empty)):
        one = surface_metrics(a, b, 1.0)
        assert math.isnan(one["hd95"]) and one["assd"] == math.inf and one["nsd"] == 0.0


def test_labels_count_as_foreground_and_metrics_module_re_exports() -> None:
    labels = np.zeros((5, 5), np.uint16)
    labels[1:3, 1:3] = 7
    assert metrics.hd95(labels, labels > 0) == 0.0
    assert metrics.assd is assd and metrics.nsd is nsd and metrics.hd95 is hd95


def test_bad_input_is_a_user_error() -> None:
    a = np.zeros((4, 4), bool)
    with pytest.raises(UserError, match=r"\(4, 4\).*\(4, 5\)"):
        hd95(a, np.zeros((4, 5), bool))
    with pytest.raises(UserError, match="one value per axis"):
        hd95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(UserError, match="positive"):
        assd(a, a, spacing=(1.0, 0.0))
    with pytest.raises(UserError, match="tolerance"):
        nsd(a, a, -1.0)


# ------------------------------------------------------------------------------------- MONAI oracle
def _random_mask(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    m = np.zeros(shape, bool)
    if kind == "voxel":
        m[tuple(int(rng.integers(0, s)) for s in shape)] = True
    elif kind == "blob":
        m = ndimage.binary_opening(rng.random(shape) < 0.45) | (rng.random(shape) < 0.03)
    return m


_KINDS = ("empty", "voxel", "blob")
_CASES = [(nd, kp, kt) for nd in (2, 3) for kp in _KINDS for kt in _KINDS]


@pytest.mark.parametrize(("ndim", "kind_pred", "kind_truth"), _CASES)
def test_equal_to_monai(ndim: int, kind_pred: str, kind_truth: str, request: pytest.FixtureRequest) -> None:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    rng = np.random.default_rng(zlib.crc32(request.node.callspec.id.encode()))
    shape = (9, 12, 10)[:ndim] if ndim == 3 else (23, 19)
    spacing = tuple(float(s) for s in rng.uniform(0.3, 2.5, ndim).round(3))  # anisotropic
    tolerance = float(rng.uniform(0.5, 3.0))
    pred = _random_mask(rng, shape, kind_pred)
    truth = _random_mask(rng, shape, kind_truth)

    def t(m: np.ndarray):
        return torch.as_tensor(m[None, None].astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks
        kw = {"include_background": True, "spacing": spacing}
        want = {
            "hd95": compute_hausdorff_distance(t(pred), t(truth), percentile=95, **kw).item(),
            "assd": compute_average_surface_distance(t(pred), t(truth), symmetric=True, **kw).item(),
            "nsd": compute_surface_dice(t(pred), t(truth), [tolerance], **kw).item(),
        }
    got = surface_metrics(pred, truth, tolerance, spacing)
    for name, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[name]), name
        else:  # MONAI works in float32; 1e-6 relative is its rounding
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
