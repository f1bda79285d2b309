"""The network: official key layout, reference outputs, any input size, train mode."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from napari_madgnet.model import MADGNet, ModelConfig, padded_size

from .official import BACKBONES, TOLERANCE, make_input, manifest, reference, relative_error


@pytest.mark.parametrize("backbone", BACKBONES)
def test_state_dict_matches_official_manifest(backbone: str) -> None:
    expected = {k: s for k, s in manifest(backbone).items() if ".dct_weight_" not in k}
    ours = {k: tuple(v.shape) for k, v in MADGNet(backbone).state_dict().items()}
    assert ours == expected


def test_default_build_is_the_released_one() -> None:
    model = MADGNet()
    assert model.config == ModelConfig(
        backbone="resnest50",
        num_classes=1,
        scale_branches=3,
        frequency_branches=16,
        frequency_selection="top",
        min_channel=32,
        min_resolution=8,
    )
    assert sum(p.numel() for p in model.parameters()) == 33_366_372


def test_resnest50_reference_outputs(official_model) -> None:
    model = official_model("resnest50")
    ref = reference()
    with torch.no_grad():
        errors = {
            "test/rgb256": relative_error(model(make_input((1, 3, 256, 256))), ref["resnest50/test/rgb256"])
        }
        stages = model.forward_stages(make_input((1, 3, 256, 256)))
        for i, outputs in enumerate(stages, start=1):
            for name, out in zip(("map", "distance", "boundary"), outputs, strict=True):
                key = f"resnest50/train/rgb256/stage{i}/{name}"
                errors[key] = relative_error(out, ref[key])
        gray = model(make_input((1, 1, 224, 320), seed=99))
        errors["gray224x320"] = relative_error(gray, ref["resnest50/test/gray224x320"])
        batch = model(make_input((2, 3, 352, 352), seed=7))
        errors["rgb352_batch2"] = relative_error(batch, ref["resnest50/test/rgb352_batch2"])
    assert len(errors) == 15
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("backbone", ["res2net50_v1b_26w_4s", "resnet50"])
def test_other_encoders_reference_outputs(official_model, backbone: str) -> None:
    model = official_model(backbone)
    with torch.no_grad():
        out = model(make_input((1, 3, 256, 256)))
    assert relative_error(out, reference()[f"{backbone}/test/rgb256"]) <= TOLERANCE


def test_reference_mode_agrees(official_model) -> None:
    model = official_model("resnest50")
    x = make_input((1, 3, 64, 96), seed=3)
    with torch.no_grad():
        fast = model(x)
        model.set_reference_mode(True)
        try:
            slow = model(x)
        finally:
            model.set_reference_mode(False)
    assert float((fast - slow).abs().max() / slow.std()) <= 1e-4


@pytest.mark.parametrize(
    ("size", "padded"),
    [
        ((256, 256), (256, 256)),
        ((224, 320), (224, 320)),
        ((512, 544), (512, 576)),  # height >= 512: the widest pooling needs multiples of 64
        ((544, 544), (576, 576)),
        ((300, 301), (320, 320)),
        ((33, 517), (64, 544)),
        ((1024, 96), (1024, 128)),
    ],
)
def test_padded_size(size, padded) -> None:
    assert padded_size(*size, ModelConfig()) == padded


@pytest.mark.parametrize("shape", [(1, 3, 300, 301), (1, 1, 33, 517)])
def test_odd_sizes_keep_their_size(official_model, shape) -> None:
    model = official_model("resnest50")
    with torch.no_grad():
        out = model(make_input(shape))
        stages = model.forward_stages(make_input(shape))
    assert out.shape == (shape[0], 1, *shape[2:])
    assert torch.isfinite(out).all()
    assert torch.equal(stages[-1][0], out)
    assert all(t.shape == out.shape for stage in stages for t in stage)


def test_544_works_where_the_release_fails(official_model) -> None:
    model = official_model("resnest50")
    with torch.no_grad():
        out = model(make_input((1, 1, 544, 544)))
    assert out.shape == (1, 1, 544, 544) and torch.isfinite(out).all()


def test_grey_equals_repeated_rgb(official_model) -> None:
    model = official_model("resnet50")
    grey = make_input((1, 1, 64, 64))
    with torch.no_grad():
        assert torch.equal(model(grey), model(grey.repeat(1, 3, 1, 1)))


def test_bad_inputs_are_rejected() -> None:
    model = MADGNet("resnet50").eval()
    with pytest.raises(ValueError, match="1 or 3"):
        model(torch.rand(1, 2, 64, 64))
    with pytest.raises(ValueError, match="floating"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown backbone"):
        MADGNet("vgg16")


def test_training_batch_one_works() -> None:
    """ResNeSt's split-attention BN sees one value per channel at batch 1; it falls back to its
    running statistics instead of failing like the release."""
    torch.manual_seed(0)
    model = MADGNet(num_classes=2).train()
    stages = model.forward_stages(torch.rand(1, 3, 64, 64))
    assert len(stages) == 4 and all(len(s) == 3 for s in stages)
    assert all(t.shape == (1, 2, 64, 64) for s in stages for t in s)
    sum(t.mean() for s in stages for t in s).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    bn = model.feature_encoding.layer1[0].conv2.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # not updated
    assert int(model.feature_encoding.layer1[0].bn1.num_batches_tracked) == 1  # others are
    with pytest.raises(ValueError, match="batch size >= 2"):
        model.forward_stages(torch.rand(1, 3, 32, 32))


def test_train_and_eval_agree_once_bn_is_frozen() -> None:
    model = MADGNet("resnet50").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        stages_eval = model.forward_stages(x)
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        stages_train = model.forward_stages(x)
    pairs = zip(stages_eval, stages_train, strict=True)
    assert all(torch.equal(a, b) for s, t in pairs for a, b in zip(s, t, strict=True))


def test_core_does_not_import_gui_packages() -> None:
    code = (
        "import sys, napari_madgnet.model as m; m.MADGNet('resnet50'); "
        "bad = {'qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6'}; "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("size", [(176, 176), (17, 40), (33, 33)])
def test_fast_stem_pool_equals_max_pool(size) -> None:
    from napari_madgnet.model.encoders.common import max_pool_3x3_s2

    x = torch.randn(2, 8, *size)
    assert torch.equal(max_pool_3x3_s2(x), torch.nn.functional.max_pool2d(x, 3, 2, 1))


def test_matmul_pooling_equals_adaptive_pooling() -> None:
    from napari_madgnet.model.attention import adaptive_avg_pool_matmul

    for h, w, n in [(176, 176, 112), (44, 60, 112), (22, 22, 14), (13, 9, 7)]:
        x = torch.randn(1, 4, h, w)
        ref = torch.nn.functional.adaptive_avg_pool2d(x, n)
        assert torch.allclose(adaptive_avg_pool_matmul(x, n), ref, atol=1e-6)
