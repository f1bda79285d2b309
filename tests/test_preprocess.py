"""Normalisation: the release's /255, robust percentiles, CT windows, and bad values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_madgnet.preprocess import CT_WINDOWS, Normalization, apply_range, fit_range, normalize


def test_uint8_auto_is_the_release_protocol() -> None:
    img = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(normalize(img), [[0.0, 0.2, 1.0]])
    assert fit_range(img) == (0.0, 255.0)


def test_uint16_auto_uses_robust_percentiles() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(100, 1000, size=(128, 128)).astype(np.uint16)
    img[0, 0] = 65535  # one hot pixel must not squash the rest
    out = normalize(img)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.4 < float(np.median(out)) < 0.6


def test_ct_window_maps_hounsfield_units() -> None:
    centre, width = CT_WINDOWS["ct-lung"]
    hu = np.array([[centre - width / 2, centre, centre + width / 2, 3000]], np.float32)
    np.testing.assert_allclose(normalize(hu, "ct-lung"), [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    custom = Normalization(method="ct", window=(0.0, 100.0))
    np.testing.assert_allclose(normalize(np.array([[-50.0, 0.0, 50.0]]), custom), [[0.0, 0.5, 1.0]])


def test_nan_and_inf_do_not_propagate() -> None:
    img = np.array([[np.nan, 1.0, 2.0, np.inf, -np.inf, 3.0]], np.float64)
    out = normalize(img, Normalization("minmax"))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 0.0, 1.0]])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="empty"):
        fit_range(np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="no finite values"):
        fit_range(np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="Unknown normalisation"):
        Normalization("zscore")


def test_fit_once_apply_to_tiles_matches_whole_image() -> None:
    rng = np.random.default_rng(1)
    img = rng.normal(500, 100, size=(64, 64)).astype(np.float32)
    lo, hi = fit_range(img)
    whole = apply_range(img, lo, hi)
    np.testing.assert_array_equal(apply_range(img[:32], lo, hi), whole[:32])


def test_constant_and_bool_images() -> None:
    assert np.all(normalize(np.full((4, 4), 7, np.uint16)) == 0.0)
    np.testing.assert_array_equal(normalize(np.eye(3, dtype=bool)), np.eye(3, dtype=np.float32))


def test_from_value_round_trip() -> None:
    norm = Normalization("percentile", low=2.0, high=98.0)
    assert Normalization.from_value(norm.to_dict()) == norm
    assert Normalization.from_value("scale255").method == "scale255"
