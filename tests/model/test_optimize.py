"""Inference-only BatchNorm folding keeps the outputs and cannot be saved by mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_madgnet.model import fold_batchnorm, save_model

from .official import BACKBONES, make_input


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
