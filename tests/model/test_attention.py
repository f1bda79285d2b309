"""The vectorised channel attention equals the released per-filter loop, values and gradients."""

from __future__ import annotations

import pytest
import torch

from napari_madgnet.model.attention import MultiFrequencyChannelAttention
from napari_madgnet.model.dct import dct_filters, frequency_indices


@pytest.mark.parametrize(("channels", "size", "height"), [(32, 112, 88), (64, 56, 56), (256, 14, 11)])
def test_vectorised_matches_loop(channels: int, size: int, height: int) -> None:
    torch.manual_seed(channels)
    module = MultiFrequencyChannelAttention(channels, size)
    x = torch.randn(2, channels, height, height + 3).relu().requires_grad_(True)
    fast = module(x)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), x)
    with torch.no_grad():
        inference = module(x)
    module.vectorised = False
    slow = module(x)
    (grad_slow,) = torch.autograd.grad(slow.square().sum(), x)
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    assert torch.allclose(inference, slow, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad_fast, grad_slow, rtol=1e-4, atol=1e-6)


def test_dct_filters_are_orthonormal_and_scaled() -> None:
    filters = dct_filters(14, "top", 16)
    assert filters.shape == (16, 14, 14)
    gram = torch.einsum("khw,lhw->kl", filters.double(), filters.double())
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-6)
    assert frequency_indices("top", 4) == [(0, 0), (0, 1), (6, 0), (0, 5)]
    # DC filter is constant 1/N; the table's (6, 0) becomes (12, 0) at size 14.
    assert torch.allclose(filters[0], torch.full((14, 14), 1 / 14))
    with pytest.raises(ValueError):
        dct_filters(14, "middle", 16)


def test_channel_slicing_gives_identical_results(monkeypatch) -> None:
    from napari_madgnet.model import attention

    torch.manual_seed(0)
    module = MultiFrequencyChannelAttention(64, 56)
    x = torch.randn(5, 64, 40, 30).relu()
    with torch.no_grad():
        sliced = module(x)
    grad_input = x.clone().requires_grad_(True)
    (grad_sliced,) = torch.autograd.grad(module(grad_input).sum(), grad_input)
    monkeypatch.setattr(attention, "PRODUCT_CHUNK", 1 << 30)  # everything at once
    with torch.no_grad():
        whole = module(x)
    grad_input = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module(grad_input).sum(), grad_input)
    assert torch.equal(whole, sliced)
    assert torch.equal(grad, grad_sliced)
