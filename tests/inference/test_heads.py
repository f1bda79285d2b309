"""The E-SDM heads at inference: watershed instances, cached head maps, TTA and the uncertainty."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_madgnet.errors import UserError
from napari_madgnet.inference import InferenceConfig, PostprocessConfig, postprocess, segment
from napari_madgnet.inference.heads import (
    OutputSpec,
    binary_entropy,
    distance_head_trained,
    forward_outputs,
)
from napari_madgnet.inference.instances import components, watershed_instances
from napari_madgnet.inference.runner import Runner
from napari_madgnet.model import MADGNet
from napari_madgnet.qc import object_scores


def two_touching_discs(shape=(64, 80), radius=12, gap=20):
    """Two discs whose centres are ``gap`` < 2 x radius apart (they overlap in a neck), their
    instance labels, and the distance and boundary maps the heads are trained to predict."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] // 2, shape[1] // 2
    left = (yy - cy) ** 2 + (xx - (cx - gap // 2)) ** 2 <= radius**2
    right = (yy - cy) ** 2 + (xx - (cx + gap // 2)) ** 2 <= radius**2
    truth = np.zeros(shape, np.int32)
    truth[left] = 1
    truth[right & ~left] = 2
    mask = left | right
    distance = ndimage.distance_transform_edt(mask)
    distance /= distance.max()
    boundary = (np.hypot(ndimage.sobel(mask * 1.0, 0), ndimage.sobel(mask * 1.0, 1)) >= 0.5).astype(float)
    return mask, distance, boundary, truth


def test_watershed_splits_two_touching_discs_that_components_merge() -> None:
    mask, distance, boundary, truth = two_touching_discs()
    merged, n_merged = components(mask)
    assert n_merged == 1
    split, n_split = watershed_instances(mask, distance, boundary)
    assert n_split == 2
    assert set(np.unique(split)) == {0, 1, 2} and np.array_equal(split > 0, mask)
    scores = object_scores(split, truth)
    assert scores["tp"] == 2 and scores["fp"] == 0 and scores["fn"] == 0 and scores["sq"] > 0.9
    # the predicted distance alone, and the mask's own distance alone (no head), split them too
    assert watershed_instances(mask, distance, boundary, head_weight=1.0)[1] == 2
    assert watershed_instances(mask, None, None, head_weight=0.0)[1] == 2
    with pytest.raises(ValueError, match="distance map"):
        watershed_instances(mask, None, None)
    assert object_scores(merged, truth)["fn"] == 1  # one blob: at most one disc is matched


def test_watershed_through_postprocess_numbers_objects_over_a_stack() -> None:
    mask, distance, boundary, _ = two_touching_discs()
    prob = np.stack([mask, mask])[None].astype(np.float32) * 0.9  # (K=1, Z=2, H, W)
    dist = np.stack([distance, distance])[None].astype(np.float32)
    bnd = np.stack([boundary, boundary])[None].astype(np.float32)
    labels = postprocess(prob, PostprocessConfig(instances="watershed"), distance=dist, boundary=bnd)
    assert labels.dtype == np.int32 and labels.max() == 4
    assert set(np.unique(labels[1])) == {0, 3, 4}
    # ``True`` means watershed when the distance map is there, components otherwise
    assert postprocess(prob, PostprocessConfig(instances=True), distance=dist).max() == 4
    assert postprocess(prob, PostprocessConfig(instances=True)).max() == 2
    with pytest.raises(UserError, match="distance map"):
        postprocess(prob, PostprocessConfig(instances="watershed"))
    no_head = postprocess(prob, PostprocessConfig(instances="watershed", head_weight=0.0))
    assert no_head.max() == 4


def test_a_piece_of_mask_without_a_peak_stays_an_object() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    mask[25:35, 25:35] = True
    distance = np.zeros(mask.shape)  # flat: no regional maximum rises 0.1 above anything
    labels, n = watershed_instances(mask, distance, None, peak_height=0.1)
    assert n == 2 and np.array_equal(labels > 0, mask)


def test_postprocess_config_checks_the_instance_method() -> None:
    assert PostprocessConfig(instances="watershed").instances == "watershed"
    for bad in ("watershd", "yes"):
        with pytest.raises(ValueError, match="instances"):
            PostprocessConfig(instances=bad)
    with pytest.raises(ValueError, match="peak_height"):
        PostprocessConfig(peak_height=2)
    with pytest.raises(ValueError, match="tta"):
        InferenceConfig(tta=3)
    with pytest.raises(ValueError, match="tta"):
        InferenceConfig(uncertainty="tta")
    with pytest.raises(ValueError, match="uncertainty"):
        InferenceConfig(uncertainty="stages+tta")
    cfg = InferenceConfig(tta=4, uncertainty="tta", postprocess=PostprocessConfig(instances=True))
    assert InferenceConfig.from_dict(cfg.to_dict()) == cfg


@pytest.fixture(scope="module")
def fast(madgnet):
    """The session model's inference copy, made once (the engine would copy it per call)."""
    from napari_madgnet.inference import fast_model

    return fast_model(madgnet)


class _Counter:
    """Counts MADGNet forward passes, in whatever copy (the runner's inference copy) they run."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        self.by_name = {"forward": 0, "forward_stages": 0}
        for name in ("forward", "forward_stages"):
            original = getattr(MADGNet, name)

            def counted(model, x, _original=original, _name=name):
                self.calls += 1
                self.by_name[_name] += 1
                return _original(model, x)

            monkeypatch.setattr(MADGNet, name, counted)


def test_engine_caches_the_heads_and_repostprocess_never_runs_the_network(fast, monkeypatch) -> None:
    counter = _Counter(monkeypatch)
    image = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    config = InferenceConfig(
        geometry="tiles", tile_size=32, postprocess=PostprocessConfig(instances="watershed")
    )
    result = segment(image, fast, config)
    assert counter.calls > 0
    for maps in (result.distance, result.boundary):
        assert maps.shape == result.probabilities.shape and maps.dtype == np.float32
        assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert result.provenance["resolved"]["instances"] == "watershed"
    counter.calls = 0
    for settings in (
        PostprocessConfig(threshold=0.3, instances="watershed", peak_height=0.05),
        PostprocessConfig(threshold=0.6, instances="components"),
        PostprocessConfig(threshold=0.5),
    ):
        again = result.repostprocess(settings)
        expected = postprocess(
            result.probabilities, settings, distance=result.distance, boundary=result.boundary
        )
        assert np.array_equal(again.mask, expected)
    assert counter.calls == 0
    assert again.distance is result.distance and again.provenance["resolved"]["instances"] is None


def test_the_default_instances_follow_how_the_model_was_trained(fast) -> None:
    image = np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)
    released = segment(image, fast, InferenceConfig(postprocess=PostprocessConfig(instances=True)))
    assert released.distance is not None and released.provenance["resolved"]["instances"] == "watershed"
    untrained = copy.copy(fast)  # shares the weights; only the metadata differs
    untrained.checkpoint_info = {
        **fast.checkpoint_info,
        "provenance": {"recipe": {"label_mode": "binary", "loss": {"distance_weight": 0.0}}},
    }
    assert distance_head_trained(untrained)[0] is False
    plain = segment(image, untrained, InferenceConfig(postprocess=PostprocessConfig(instances=True)))
    assert plain.distance is None and plain.provenance["resolved"]["instances"] == "components"
    with pytest.raises(UserError, match="distance head"):
        segment(image, untrained, InferenceConfig(postprocess=PostprocessConfig(instances="watershed")))
    mask_only = PostprocessConfig(instances="watershed", head_weight=0.0)  # needs no head
    no_head = segment(image, untrained, InferenceConfig(postprocess=mask_only))
    assert no_head.distance is None and no_head.provenance["resolved"]["instances"] == "watershed"
    with pytest.raises(UserError, match="distance map"):
        plain.repostprocess(PostprocessConfig(instances="watershed"))


def test_the_plain_runner_calls_forward_only_and_the_stack_matches_the_stages(madgnet, monkeypatch) -> None:
    counter = _Counter(monkeypatch)
    x = torch.rand(2, 3, 32, 32)
    plain = Runner(madgnet, torch.device("cpu"), batch_size=2, precision="fp32")(x)
    assert plain.shape == (2, 1, 32, 32)
    assert counter.by_name == {"forward": 1, "forward_stages": 0}  # the fast path is today's
    spec = OutputSpec(distance=True, boundary=True, uncertainty="stages")
    stack = Runner(madgnet, torch.device("cpu"), outputs=spec, batch_size=2, precision="fp32")(x)
    assert stack.shape == (2, 4, 32, 32)
    blocks = spec.split(stack, axis=1)
    with torch.inference_mode():
        stages = [[torch.sigmoid(t) for t in s] for s in madgnet.eval().forward_stages(x)]
    torch.testing.assert_close(blocks["map"], plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(blocks["map"], stages[-1][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(blocks["distance"], stages[-1][1], atol=1e-4, rtol=0)
    torch.testing.assert_close(blocks["boundary"], stages[-1][2], atol=1e-4, rtol=0)
    expected = 2 * torch.stack([s[0] for s in stages]).std(dim=0, correction=0)
    torch.testing.assert_close(blocks["uncertainty"], expected, atol=1e-4, rtol=0)


class _Pixelwise(torch.nn.Module):
    """Logits a pixel-wise function of the input (plus a left-right ramp when ``ramp``)."""

    def __init__(self, ramp: bool) -> None:
        super().__init__()
        self.ramp = ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = 6 * x[:, :1] - 3
        if self.ramp:
            logits = logits + torch.linspace(-2, 2, x.shape[-1])
        return logits


@pytest.mark.parametrize("tta", [2, 4, 8])
def test_tta_undoes_its_flips(tta: int) -> None:
    """A pixel-wise network gives the same map through every flip, so TTA changes nothing."""
    x = torch.rand(1, 1, 20, 20)
    spec = OutputSpec(tta=tta, uncertainty="tta")
    out = spec.split(forward_outputs(_Pixelwise(False), x, spec), axis=1)
    torch.testing.assert_close(out["map"], torch.sigmoid(6 * x - 3))
    assert float(out["uncertainty"].max()) < 1e-6  # every flip agrees once flipped back
    ramped = spec.split(forward_outputs(_Pixelwise(True), x, spec), axis=1)
    assert float(ramped["uncertainty"].mean()) > 0.05  # a net that is not flip-equivariant disagrees


def test_tiled_and_zarr_runs_keep_the_extra_maps(fast, tmp_path) -> None:
    image = np.random.default_rng(2).integers(0, 255, (2, 32, 44), dtype=np.uint8)
    config = InferenceConfig(
        axes="ZYX",
        geometry="tiles",
        tile_size=32,
        tta=2,
        uncertainty=True,
        output_zarr=str(tmp_path / "out.zarr"),
        postprocess=PostprocessConfig(instances="watershed"),
    )
    result = segment(image, fast, config)
    assert result.provenance["resolved"]["uncertainty"] == "entropy"
    np.testing.assert_allclose(
        np.asarray(result.uncertainty), binary_entropy(np.asarray(result.probabilities)), atol=1e-6
    )
    for name in ("probabilities", "distance", "boundary", "uncertainty"):
        array = getattr(result, name)
        assert array.shape == (1, 2, 32, 44) and type(array).__module__.startswith("zarr")
        values = np.asarray(array)
        assert values.min() >= 0.0 and values.max() <= 1.0 and values.std() > 0
    memory = segment(image, fast, InferenceConfig(**{**config.to_dict(), "output_zarr": None}))
    np.testing.assert_allclose(np.asarray(result.uncertainty), memory.uncertainty, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(result.mask), memory.mask)


def test_a_network_without_stages_gets_a_clear_error() -> None:
    image = np.zeros((32, 32), np.uint8)
    net = _Pixelwise(False)
    with pytest.raises(UserError, match="not a MADGNet"):
        segment(image, net, InferenceConfig(uncertainty="stages"))
    with pytest.raises(UserError, match="not a MADGNet"):
        segment(image, net, InferenceConfig(postprocess=PostprocessConfig(instances="watershed")))
    for measure in (True, "tta"):
        result = segment(image, net, InferenceConfig(tta=2, uncertainty=measure, normalization="minmax"))
        assert result.uncertainty.shape == (1, 32, 32)


def test_predict_writes_the_uncertainty_and_takes_the_instance_method(checkpoint, tmp_path, capsys) -> None:
    import json

    import tifffile

    from napari_madgnet.cli import main

    src = tmp_path / "blobs.tif"
    tifffile.imwrite(src, np.random.default_rng(3).integers(0, 255, (40, 36), dtype=np.uint8))
    out = tmp_path / "out"
    args = [
        "predict",
        str(src),
        "-m",
        str(checkpoint),
        "-o",
        str(out),
        "-q",
        "--tta",
        "2",
        "--save-uncertainty",
    ]
    assert main([*args, "--instances", "watershed"]) == 0, capsys.readouterr().err
    uncertainty = tifffile.imread(out / "blobs_uncertainty.tif")
    assert uncertainty.shape == (40, 36) and uncertainty.dtype == np.float32
    assert uncertainty.min() >= 0.0 and uncertainty.max() <= 1.0 and uncertainty.max() > 0
    log = json.loads(next(out.glob("madgnet-predict-*.json")).read_text())
    resolved = log["files"][0]["provenance"]["resolved"]
    assert resolved["instances"] == "watershed" and resolved["uncertainty"] == "entropy"
    assert log["config"]["tta"] == 2 and log["config"]["uncertainty"] is True
    assert tifffile.imread(out / "blobs_mask.tif").dtype == np.int32
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main([*args, "--instances", "blobs"])


def test_binary_entropy_is_a_probability_like_uncertainty() -> None:
    p = np.array([0.0, 0.5, 1.0, 0.11, 0.89], np.float32)
    h = binary_entropy(p)
    assert h.dtype == np.float32 and h[1] == pytest.approx(1.0) and max(h[0], h[2]) < 1e-9
    assert h[3] == pytest.approx(h[4]) and h[3] == pytest.approx(0.4999, abs=1e-3)
