"""Normalisation: the release's /255, robust percentiles, CT windows, and bad values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_madgnet import preprocess
from napari_madgnet.layout import resolve_layout
from napari_madgnet.preprocess import (
    CT_WINDOWS,
    Normalization,
    apply_range,
    check_image_dtype,
    fit_intensity,
    fit_range,
    fit_ranges,
    noise_sigma,
    normalize,
)


def test_uint8_auto_is_the_release_protocol() -> None:
    img = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(normalize(img), [[0.0, 0.2, 1.0]])
    assert fit_range(img) == (0.0, 255.0)


def test_uint16_auto_uses_robust_percentiles() -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(100, 1000, 128)[None, :] + rng.normal(0, 5, size=(128, 128))  # signal, some noise
    img = ramp.astype(np.uint16)
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


# ----------------------------------------------------------------------------- no signal (issue 12.4)
@pytest.mark.parametrize(
    ("value", "dtype"), [(1e20, np.float32), (1e300, np.float64), (-3e38, np.float32), (0.0, np.float32)]
)
def test_constant_images_of_any_magnitude(value, dtype) -> None:
    img = np.full((16, 16), value, dtype)
    fitted = fit_intensity(img)
    assert not fitted.stretched and "constant" in fitted.note
    assert fitted.hi > fitted.lo and np.isfinite(fitted.hi)
    out = normalize(img)
    assert out.dtype == np.float32 and np.all(out == 0.0)


def test_float64_beyond_float32_range_is_scaled_not_saturated() -> None:
    ramp = np.linspace(1e300, 2e300, 64 * 64).reshape(64, 64)
    out = normalize(ramp, "minmax")
    assert np.isfinite(out).all() and out.min() == 0.0 and out.max() == 1.0
    assert abs(float(out[32, 0]) - 0.5) < 0.02


def _noise_tiles() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {
        "uint16 1000-1002": rng.integers(1000, 1003, size=(256, 256)).astype(np.uint16),
        "poisson 100": rng.poisson(100, size=(256, 256)).astype(np.uint16),
        "gauss float": rng.normal(0.3, 0.01, size=(256, 256)).astype(np.float32),
        "gauss stack": rng.normal(500, 20, size=(4, 128, 128)).astype(np.float32),
    }


@pytest.mark.parametrize("name", list(_noise_tiles()))
@pytest.mark.parametrize("method", ["percentile", "minmax"])
def test_noise_is_not_stretched(name, method) -> None:
    tile = _noise_tiles()[name]
    fitted = fit_intensity(tile, method)
    assert not fitted.stretched and "too narrow to hold a signal" in fitted.note
    out = fitted.apply(tile)
    assert float(out.max()) <= 1 / preprocess.FLAT_HEADROOM + 1e-6  # a dark, nearly flat field
    assert float(np.median(out)) < 0.15


def test_noise_sigma_is_the_gaussian_sigma() -> None:
    rng = np.random.default_rng(5)
    smooth = np.add.outer(np.linspace(0, 500, 200), np.linspace(0, 300, 200))  # ramps cancel
    for sigma in (0.5, 3.0, 40.0):
        est = noise_sigma(smooth + rng.normal(0, sigma, smooth.shape))
        assert est == pytest.approx(sigma, rel=0.1)
    assert noise_sigma(np.zeros((2, 50))) is None


def test_real_images_are_stretched() -> None:
    from napari_madgnet.sample_data import load_nuclei

    image, _ = load_nuclei()
    fitted = fit_intensity(image)  # uint16 nuclei: about 40 noise sigmas between the percentiles
    assert fitted.stretched and fitted.note == ""
    out = fitted.apply(image)
    assert out.max() == 1.0 and float(np.percentile(out, 99)) > 0.5
    dim = (image // 8).astype(np.uint16)  # a dimmer exposure of the same field still holds signal
    assert fit_intensity(dim).stretched


def test_the_minimum_can_be_lowered_or_turned_off() -> None:
    tile = _noise_tiles()["poisson 100"]
    assert fit_intensity(tile, Normalization("percentile", min_snr=0)).stretched
    assert normalize(tile, Normalization("percentile", min_snr=0)).max() == 1.0
    assert Normalization.from_value({"method": "percentile", "min_snr": 2}).min_snr == 2
    with pytest.raises(ValueError, match="min_snr"):
        Normalization("percentile", min_snr=-1)
    with pytest.raises(ValueError, match="Unknown normalisation setting"):
        Normalization.from_value({"method": "percentile", "hgih": 99})


def test_stack_ranges_per_image_or_per_plane() -> None:
    rng = np.random.default_rng(6)
    stack = rng.normal(1000, 3, size=(3, 64, 64)).astype(np.float32)
    stack[0, 16:48, 16:48] += 400  # plane 0 holds an object; planes 1 and 2 are blank
    layout = resolve_layout(stack.shape, "ZYX")
    whole = fit_ranges(stack, layout, "percentile", "image")
    assert whole.whole is not None and whole.whole.stretched and whole.notes == []
    blank_in_stack = whole.read(stack, (1,))
    assert float(blank_in_stack.max()) < 0.1  # a blank plane stays at the stack's background
    per_plane = fit_ranges(stack, layout, "percentile", "plane")
    assert per_plane.whole is None
    object_plane = per_plane.read(stack, (0,))
    assert object_plane.max() == 1.0
    blank_alone = per_plane.read(stack, (2,))
    assert float(blank_alone.max()) <= 1 / preprocess.FLAT_HEADROOM + 1e-6
    assert len(per_plane.notes) == 1 and per_plane.notes[0].startswith("Plane Z=2:")
    record = per_plane.to_dict()
    assert record["per"] == "plane" and record["planes_not_stretched"] == [[2]]
    with pytest.raises(ValueError, match="range_per"):
        fit_ranges(stack, layout, "percentile", "slice")


def test_one_dtype_policy() -> None:
    from napari_madgnet.errors import UserError

    assert check_image_dtype(np.uint16) == np.uint16
    with pytest.raises(UserError, match=r"complex .*numpy\.abs"):
        check_image_dtype(np.complex64)
    with pytest.raises(UserError, match="dtype <U1"):
        check_image_dtype(np.dtype("<U1"))
