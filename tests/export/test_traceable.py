"""The traceable forward pass computes MADGNet.forward; its size rules equal the network's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_madgnet.export.traceable import (
    TraceableMADGNet,
    _pad_indices,
    _pooling_matrix,
    padded_size_tensor,
)
from napari_madgnet.model import ModelConfig, padded_size
from napari_madgnet.model.attention import _pooling_matrix as network_pooling_matrix

from .conftest import reference_model


@pytest.mark.parametrize(("scale_branches", "min_resolution"), [(3, 8), (2, 8), (4, 8), (3, 2), (4, 3)])
def test_padded_size_tensor_is_the_network_rule(scale_branches: int, min_resolution: int) -> None:
    config = ModelConfig(scale_branches=scale_branches, min_resolution=min_resolution)
    heights = torch.arange(1, 1300)
    for width in (1, 33, 301, 544):
        got_h, got_w = padded_size_tensor(
            heights, torch.full_like(heights, width), scale_branches, min_resolution
        )
        expected = [padded_size(int(h), width, config) for h in heights]
        assert got_h.tolist() == [e[0] for e in expected]
        assert got_w.tolist() == [e[1] for e in expected]


def test_pooling_matrix_is_the_attention_one() -> None:
    for n_in in (1, 5, 7, 14, 20, 28, 36, 56, 111, 112, 113, 300):
        for n_out in (7, 14, 28, 56, 112):
            ours = _pooling_matrix(torch.tensor(n_in), n_out, torch.float64)
            torch.testing.assert_close(ours, network_pooling_matrix(n_in, n_out), rtol=0, atol=1e-15)


@pytest.mark.parametrize(("n", "padded"), [(5, 8), (20, 32), (10, 32), (16, 32), (1, 32), (300, 320)])
def test_pad_indices_reflect_and_replicate_like_f_pad(n: int, padded: int) -> None:
    x = torch.arange(float(n)).reshape(1, 1, n)
    n_t, p_t = torch.tensor(n), torch.tensor(padded)
    replicate = x[..., _pad_indices(n_t, p_t, torch.tensor(False))]
    assert torch.equal(replicate, F.pad(x, (0, padded - n), mode="replicate"))
    if padded - n < n:  # where MADGNet reflects
        reflect = x[..., _pad_indices(n_t, p_t, torch.tensor(True))]
        assert torch.equal(reflect, F.pad(x, (0, padded - n), mode="reflect"))


@pytest.mark.parametrize(
    ("backbone", "kwargs", "shape"),
    [
        ("resnest50", {}, (2, 3, 70, 101)),  # padded to 96 x 128; grey and RGB paths
        ("resnest50", {}, (1, 1, 20, 45)),  # padding as large as the image: replication
        ("resnet50", {"min_resolution": 2}, (1, 3, 130, 97)),  # pools every branch; 64-multiple
        ("res2net50_v1b_26w_4s", {"scale_branches": 2, "frequency_branches": 4}, (1, 3, 64, 64)),
    ],
)
def test_traceable_forward_equals_the_network(backbone: str, kwargs: dict, shape: tuple) -> None:
    model = reference_model(backbone, **kwargs)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        got = TraceableMADGNet(model)(x)
    assert got.shape == expected.shape
    assert expected.std() > 0.05  # the reference weights give an output with structure
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_traceable_refuses_an_inference_copy() -> None:
    from napari_madgnet.model import fold_batchnorm

    with pytest.raises(TypeError, match="plain model"):
        TraceableMADGNet(fold_batchnorm(reference_model("resnet50")))
