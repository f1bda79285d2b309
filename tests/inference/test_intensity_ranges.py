"""Segmenting images with no signal, constant images at any magnitude, and ranges per plane
(issue 12.4, issue 16.11): the engine uses the shared range rule and says what it did."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import rng_image

from napari_madgnet.inference import InferenceConfig, segment
from napari_madgnet.jobs import run_to_end


def _run(image, model, config=None):
    from napari_madgnet.inference import iter_segment

    events = []
    result = run_to_end(iter_segment(image, model, config), events.append)
    return result, [e.message for e in events if e.details.get("warning")]


@pytest.mark.parametrize(("value", "dtype"), [(1e20, np.float32), (1e300, np.float64)])
def test_constant_images_of_large_magnitude_segment(madgnet, value, dtype) -> None:
    result, warnings = _run(np.full((40, 48), value, dtype), madgnet)  # was "float division by zero"
    assert np.isfinite(result.probabilities).all()
    assert any("constant" in w for w in warnings)
    assert result.provenance["resolved"]["normalization"]["stretched"] is False


def test_a_noise_tile_is_not_stretched_and_the_user_is_told(madgnet) -> None:
    tile = np.random.default_rng(0).integers(1000, 1003, size=(40, 48)).astype(np.uint16)
    result, warnings = _run(tile, madgnet)
    assert len(warnings) == 1 and "too narrow to hold a signal" in warnings[0]
    norm = result.provenance["resolved"]["normalization"]
    assert norm["per"] == "image" and norm["stretched"] is False and norm["noise"] > 0
    assert result.provenance["resolved"]["warnings"] == warnings
    _, none = _run(rng_image((40, 48), np.uint16), madgnet)  # an image with structure: nothing to say
    assert none == []


def test_range_per_plane_comes_from_the_config_or_the_checkpoint(madgnet) -> None:
    stack = rng_image((3, 40, 48), np.uint16)
    stack[1] = 5000  # a blank plane in the middle
    # fp32: bf16 rounding (the "auto" precision on bf16 CPUs) can hide a small change of range in a
    # random network's nearly flat output, and this test is about the range
    fp32 = InferenceConfig(precision="fp32")
    per_plane, warnings = _run(stack, madgnet, InferenceConfig(range_per="plane", precision="fp32"))
    norm = per_plane.provenance["resolved"]["normalization"]
    assert norm["per"] == "plane" and norm["planes_not_stretched"] == [[1]]
    assert len(warnings) == 1 and warnings[0].startswith("Plane Z=1:")
    whole = segment(stack, madgnet, fp32)
    assert whole.provenance["resolved"]["normalization"]["per"] == "image"
    assert not np.allclose(per_plane.probabilities[:, 0], whole.probabilities[:, 0])  # plane 0's own range
    madgnet.checkpoint_info["preprocessing"]["range_per"] = "plane"  # as a model trained per plane says
    try:
        from_ckpt = segment(stack, madgnet, fp32)
    finally:
        del madgnet.checkpoint_info["preprocessing"]["range_per"]
    assert from_ckpt.provenance["resolved"]["normalization"]["per"] == "plane"
    np.testing.assert_allclose(from_ckpt.probabilities, per_plane.probabilities, atol=1e-6)


def test_complex_images_are_refused(madgnet) -> None:
    from napari_madgnet.errors import UserError

    with pytest.raises(UserError, match="complex numbers"):
        segment(np.zeros((40, 48), np.complex128), madgnet)
