"""Training from the ImageNet encoder: downloaded (127.0.0.1), verified, loaded, then trained."""

from __future__ import annotations

import io
import math

import pytest
import torch

from napari_madgnet.model import pretrained
from napari_madgnet.model.encoders import build_encoder
from napari_madgnet.model.pretrained import PretrainedWeightsError, WeightFile
from napari_madgnet.training import data_from_arrays, train

from .conftest import blobs


def _classifier_file() -> tuple[bytes, dict[str, torch.Tensor]]:
    """A resnet50 ImageNet file as torchvision writes it: encoder keys plus the fc head."""
    torch.manual_seed(1)
    state = {
        k: torch.randn_like(v.float()) * 0.05
        for k, v in build_encoder("resnet50").state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    state |= {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


def test_imagenet_init_trains_from_the_downloaded_encoder(server, publish, tiny_cfg, monkeypatch) -> None:
    base, root = server
    payload, state = _classifier_file()
    name = publish(root, "resnet50", payload)
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "resnet50", WeightFile(name, base))
    cfg = tiny_cfg.replace(init="imagenet", backbone="resnet50", lr=1e-6, warmup_steps=0)
    image, labels = blobs()
    result = train(cfg, data_from_arrays(image, labels, cfg))
    trained = result.model.feature_encoding.state_dict()
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer4.2.conv3.weight"):
        # Two Adam steps of lr 1e-6 move a weight by at most ~2e-6; random init would be far off.
        torch.testing.assert_close(trained[key], state[key], rtol=0, atol=1e-5)
    assert len(result.history) == 2 and math.isfinite(result.history[-1]["loss"])
    assert result.model.checkpoint_info["provenance"]["started_from"] == "imagenet"


def test_imagenet_init_offline_fails_before_training_and_names_the_way_out(tiny_cfg, monkeypatch) -> None:
    monkeypatch.setenv("MADGNET_ALLOW_INSECURE_MIRROR", "1")  # a plain-http mirror nobody serves
    monkeypatch.setitem(
        pretrained.IMAGENET_WEIGHTS, "resnet50", WeightFile("resnet50-0676ba61.pth", "http://127.0.0.1:9/")
    )
    cfg = tiny_cfg.replace(init="imagenet", backbone="resnet50")
    image, labels = blobs()
    with pytest.raises(PretrainedWeightsError, match="--init scratch"):
        train(cfg, data_from_arrays(image, labels, cfg))
