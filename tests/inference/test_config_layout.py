"""Config round trips and the axes/layout rules (no network needed)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from napari_madgnet.inference import InferenceConfig, PostprocessConfig, guess_axes, resolve_layout


def test_config_round_trip_through_yaml():
    cfg = InferenceConfig(
        axes="tzyx",
        normalization="ct-lung",
        geometry="tiles",
        tile_size=128,
        postprocess=PostprocessConfig(threshold=0.3, fill_holes=True, min_size=5, instances=True),
    )
    text = yaml.safe_dump(cfg.to_dict())
    back = InferenceConfig.from_dict(yaml.safe_load(text))
    assert back == cfg
    assert back.axes == "TZYX"
    assert isinstance(back.postprocess, PostprocessConfig)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"geometry": "zoom"}, "geometry"),
        ({"tile_size": 8}, "tile_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"normalization": "magic"}, "normalisation"),
        ({"batch_size": 0}, "batch_size"),
        ({"axes": "QYX"}, "Unknown axes"),
        ({"axes": "ZYZX"}, "Unknown axes"),
        ({"postprocess": {"threshold": 2}}, "threshold"),
    ],
)
def test_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ValueError, match=words):
        InferenceConfig(**kwargs)


def test_config_from_dict_rejects_typos():
    with pytest.raises(ValueError, match=r"Unknown InferenceConfig setting.*tile_sise"):
        InferenceConfig.from_dict({"tile_sise": 128})
    with pytest.raises(ValueError, match="Unknown PostprocessConfig"):
        InferenceConfig.from_dict({"postprocess": {"treshold": 0.4}})


@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((64, 80), "YX"),
        ((64, 80, 3), "YXC"),
        ((64, 80, 4), "YXC"),
        ((5, 64, 80), "ZYX"),
        ((3, 64, 80), "ZYX"),
        ((5, 64, 80, 3), "ZYXC"),
        ((2, 5, 64, 80), "TZYX"),
        ((2, 5, 64, 80, 4), "TZYXC"),
        ((2, 5, 2, 64, 80), "TZCYX"),
        ((8, 8, 3), "ZYX"),  # too small to be an RGB image
    ],
)
def test_guess_axes(shape, axes):
    assert guess_axes(shape) == axes


def test_layout_planes_and_channels():
    img = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # T C Y X
    lay = resolve_layout(img.shape, "TCYX", channel=1)
    assert lay.output_axes == "TYX" and lay.output_shape == (2, 4, 5) and lay.n_planes == 2
    plane = lay.read_plane(img, (1,))
    assert plane.shape == (4, 5, 1)
    np.testing.assert_array_equal(plane[..., 0], img[1, 1])
    rgba = np.zeros((6, 7, 4))
    rgba[..., 3] = 1
    lay = resolve_layout(rgba.shape, "YXC")
    assert lay.channels == "rgb" and lay.read_plane(rgba, ()).shape == (6, 7, 3)  # alpha dropped
    cyx = np.zeros((3, 6, 7))
    assert resolve_layout(cyx.shape, "CYX").read_plane(cyx, ()).shape == (6, 7, 3)


@pytest.mark.parametrize(
    ("shape", "axes", "channel", "words"),
    [
        ((10, 10), "QYX", None, "Unknown axes"),
        ((10, 10), "YY", None, "Unknown axes"),
        ((10, 10), "ZYX", None, "name 3 dimensions but the image has 2"),
        ((10, 10, 7), "YXC", None, "7 channels.*channel=0..6"),
        ((10, 10, 3), "YXC", 5, "channel=5.*3 channel"),
        ((10, 10), "YX", 2, "no channel axis"),
        ((0, 10), "YX", None, "zero-length"),
        ((5,), None, None, "1-D"),
    ],
)
def test_layout_errors_name_the_fix(shape, axes, channel, words):
    with pytest.raises(ValueError, match=words):
        resolve_layout(shape, axes, channel)
