"""Inference-only copies (BatchNorm folded, convolutions packed) keep the released outputs and
cannot be saved by mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_madgnet.model import fold_batchnorm, inference_copy, save_model
from napari_madgnet.model.optimize import PackedConv2d, pack_convolutions, packing_available

from .official import BACKBONES, TOLERANCE, make_input, reference, relative_error


@pytest.mark.parametrize("backbone", BACKBONES)
def test_folded_model_gives_the_same_outputs(official_model, backbone: str) -> None:
    model = official_model(backbone)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original intact
    x = make_input((1, 3, 96, 64), seed=5)
    with torch.no_grad():
        ref, out = model(x), folded(x)
        stages_ref, stages_out = model.forward_stages(x), folded.forward_stages(x)
    assert float((out - ref).abs().max() / ref.std()) <= 1e-4
    for a, b in zip(stages_ref, stages_out, strict=True):
        for t_ref, t_out in zip(a, b, strict=True):
            assert float((t_out - t_ref).abs().max() / t_ref.std()) <= 1e-4


def test_folded_model_is_not_saved(official_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fold"):
        save_model(fold_batchnorm(official_model("resnet50")), tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_inference_copy_without_compile(official_model) -> None:
    from napari_madgnet.model import inference_copy

    model = official_model("resnet50")
    fast = inference_copy(model)
    x = make_input((1, 1, 64, 64))
    with torch.inference_mode():
        assert float((fast(x) - model(x)).abs().max() / model(x).std()) <= 1e-4
    assert not fast.training


@pytest.mark.parametrize("backbone", BACKBONES)
def test_inference_copy_matches_the_reference_outputs(official_model, backbone: str) -> None:
    model = official_model(backbone)
    fast = inference_copy(model)
    packed = [m for m in fast.modules() if isinstance(m, PackedConv2d)]
    assert len(packed) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert sum(m.relu for m in packed) > 50  # conv + (folded BN) + ReLU fused
    with torch.inference_mode():
        out = fast(make_input((1, 3, 256, 256)))
    assert relative_error(out, reference()[f"{backbone}/test/rgb256"]) <= TOLERANCE


def test_packing_is_available_on_this_cpu() -> None:
    """The speed-up is real only if oneDNN's operators run; where torch has oneDNN they must."""
    assert packing_available() or not torch.backends.mkldnn.is_available()


@pytest.mark.parametrize(
    ("kwargs", "relu"),
    [
        ({"kernel_size": 3, "padding": 1}, True),
        ({"kernel_size": 3, "padding": 2, "dilation": 2, "groups": 4}, False),
        ({"kernel_size": 1, "bias": False}, True),
        ({"kernel_size": 3, "stride": 2, "padding": 1}, False),
    ],
)
def test_packed_convolution_equals_conv2d(kwargs, relu: bool) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, **kwargs)
    packed = pack_convolutions(torch.nn.Sequential(conv, torch.nn.ReLU() if relu else torch.nn.Identity()))
    assert isinstance(packed[0], PackedConv2d) and packed[0].weight is conv.weight

    def plain(x: torch.Tensor) -> torch.Tensor:
        y = conv(x)
        return torch.relu(y) if relu else y

    with torch.no_grad():
        for shape in ((1, 8, 20, 18), (3, 8, 11, 16), (1, 8, 20, 18)):  # repacked per shape
            x = torch.randn(shape)
            torch.testing.assert_close(packed(x), plain(x), rtol=1e-4, atol=1e-5)
        conv.weight.mul_(2)  # an in-place change is noticed
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-4, atol=1e-5)
        packed.to(torch.float64).to(torch.float32)  # moving drops the packed copy
        assert packed[0]._packed is None
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-4, atol=1e-5)


def test_packed_convolution_keeps_gradients() -> None:
    """With gradients on it is a plain convolution, so it can still be trained."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    packed = PackedConv2d.from_conv(conv, relu=True)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    packed(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
