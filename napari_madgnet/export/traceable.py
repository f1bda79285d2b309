"""MADGNet's forward pass with every size-dependent decision written as tensor operations.

``MADGNet.forward`` decides several things in Python from the input's height and width: how far
to pad (:func:`~napari_madgnet.model.network.padded_size`), reflection or replication padding,
which attention scale branches average-pool their map (``branch_pools``), and the bins of the
channel attention's adaptive pooling. A tracer (``torch.jit.trace``, and the TorchScript-based
ONNX exporter built on it) records one run; those Python decisions would be frozen at the
example's size, and a graph traced at 352 x 352 would compute wrong values (or fail) at
544 x 544. :class:`TraceableMADGNet` computes the same function with sizes read as tensors
(``aten::size`` / ONNX ``Shape``) and the decisions made by ``torch.where``, so one traced graph
is right at every batch size, height and width.

It reuses the wrapped model's own sub-modules and weights (nothing is copied or folded) and
differs from ``MADGNet.forward`` only in how it computes the size-dependent steps:

- padding: gathered with index vectors (reflection where ``MADGNet._prepare`` reflects,
  replication otherwise), the same values;
- a scale branch that average-pools by ``k = 2**s`` does it as a block mean over a
  ``(B, C, H/k, k, W/k, k)`` view, with ``k`` = 1 (no pooling) when the release would not pool,
  and the branch output is always resized back (an identity when the size did not change);
- adaptive average pooling in the channel attention is two products with bin matrices built
  from ``arange`` (PyTorch's bin edges), also when the map already has the pooled size (then
  the matrices are identities);
- the encoder uses its max-pool module (``MADGNet`` uses nine strided maxima, same values).

Outputs equal ``MADGNet.forward`` within float rounding (summation order); the tests check it
at sizes that take each branch. Eval mode only (BatchNorm running statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_madgnet.model import MADGNet
from napari_madgnet.model.attention import MFMSAttention, MultiFrequencyChannelAttention
from napari_madgnet.model.decoder import DecoderStage
from napari_madgnet.model.network import STAGE_STRIDES


def _size(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Size of ``x`` along ``dim`` as a 0-dim int64 tensor: traced as a shape op, not a constant."""
    return torch._shape_as_tensor(x)[dim]


def _ceil_to(n: torch.Tensor, multiple: torch.Tensor | int) -> torch.Tensor:
    return torch.div(n + multiple - 1, multiple, rounding_mode="floor") * multiple


def _pools(height: torch.Tensor, s: int, min_resolution: int) -> torch.Tensor:
    """``branch_pools``' test for branch ``s >= 1`` on a map of this height (bool tensor)."""
    return torch.div(height, 2**s, rounding_mode="floor") >= min_resolution


def padded_size_tensor(
    height: torch.Tensor, width: torch.Tensor, scale_branches: int, min_resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`napari_madgnet.model.network.padded_size` on int64 tensors.

    The release's rule loops, raising the padding multiple to the largest ``stride * 2**s`` a
    pooling branch needs until it no longer grows. Each raise goes to a larger candidate, so as
    many unrolled rounds as there are candidates reach the fixed point; a round at the fixed
    point changes nothing.
    """
    candidates = {32} | {stride * 2**s for stride in STAGE_STRIDES for s in range(1, scale_branches)}
    multiple = torch.full_like(height, 32)
    for _ in range(len(candidates)):
        padded_h = _ceil_to(height, multiple)
        required = torch.full_like(height, 32)
        for stride in STAGE_STRIDES:
            map_height = torch.div(padded_h, stride, rounding_mode="floor")
            for s in range(1, scale_branches):
                need = torch.full_like(height, stride * 2**s)
                required = torch.where(
                    _pools(map_height, s, min_resolution), torch.maximum(required, need), required
                )
        multiple = torch.maximum(multiple, required)
    return _ceil_to(height, multiple), _ceil_to(width, multiple)


def _pad_indices(n: torch.Tensor, padded: torch.Tensor, reflect: torch.Tensor) -> torch.Tensor:
    """Source index of each of ``padded`` positions when padding ``n`` at the end.

    Reflection (``F.pad(mode="reflect")``: ``n-2, n-3, ...``) or replication (``n-1, n-1, ...``);
    the reflected index is clamped so that it stays valid where replication is chosen.
    """
    i = torch.arange(padded)
    last = n - 1
    mirrored = torch.where(i > last, 2 * last - i, i).clamp(min=0)
    return torch.where(reflect, mirrored, torch.minimum(i, last))


def _block_mean(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, k)`` for sides divisible by ``k``, with ``k`` a tensor (1: identity)."""
    b, c, h, w = (_size(x, d) for d in range(4))
    blocks = x.reshape(
        b, c, torch.div(h, k, rounding_mode="floor"), k, torch.div(w, k, rounding_mode="floor"), k
    )
    return blocks.mean(dim=(3, 5))


def _pooling_matrix(n_in: torch.Tensor, n_out: int, dtype: torch.dtype) -> torch.Tensor:
    """``(n_out, n_in)`` matrix of 1-D adaptive average pooling, PyTorch's bins
    (``attention._pooling_matrix`` with tensor sizes)."""
    i = torch.arange(n_out, dtype=torch.int64)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    j = torch.arange(n_in)
    inside = (j.unsqueeze(0) >= start.unsqueeze(1)) & (j.unsqueeze(0) < end.unsqueeze(1))
    return inside.to(dtype) / (end - start).to(dtype).unsqueeze(1)


def _channel_attention(m: MultiFrequencyChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """``MultiFrequencyChannelAttention.forward`` (vectorised form) with traceable pooling."""
    rows = _pooling_matrix(_size(x, 2), m.size, x.dtype)
    cols = _pooling_matrix(_size(x, 3), m.size, x.dtype)
    pooled = torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
    c = x.shape[1]  # fixed by the weights
    flat = pooled.flatten(2)  # (B, C, S*S)
    avg = torch.matmul(flat, m.mean_filter.to(x.dtype).reshape(-1, 1)).squeeze(-1) / (m.size * m.size)
    # Every product x * filter: (B, C, K, S*S); max and min over space, then mean over filters.
    products = flat.unsqueeze(2) * m.filters.to(x.dtype).reshape(1, 1, m.count, -1)
    high = products.amax(dim=-1).mean(dim=-1)
    low = products.amin(dim=-1).mean(dim=-1)
    stacked = torch.stack([avg, high, low]).reshape(-1, c, 1, 1)
    logits = m.fc(stacked).reshape(3, -1, c).sum(dim=0)
    return x * torch.sigmoid(logits).reshape(-1, c, 1, 1)


def _attention(m: MFMSAttention, x: torch.Tensor) -> torch.Tensor:
    """``MFMSAttention.forward`` with the per-branch pooling decided by tensor ops."""
    height, width = _size(x, 2), _size(x, 3)
    branches: list[torch.Tensor] = []
    for s in range(m.scale_branches):
        if s == 0:
            f = x
        else:
            k = torch.where(_pools(height, s, m.min_resolution), 2**s, 1).to(torch.int64)
            f = _block_mean(x, k)
        f = m.multi_scale_branches[s](f)
        if m.use_frequency:
            f = _channel_attention(m.multi_frequency_branches[s][0], f)
        gate = m.multi_frequency_branches_conv1[s](f)
        f = f * ((1 - gate) * m.alpha_list[s] + gate * m.beta_list[s])
        f = m.multi_frequency_branches_conv2[s](f)
        if s > 0:  # resize back; an identity where the branch did not pool
            f = F.interpolate(f, size=(height, width), mode="bilinear", align_corners=False)
        branches.append(f)
    total = branches[0]
    for f in branches[1:]:
        total = total + f
    return total / m.scale_branches + x


def _decoder_stage(stage: DecoderStage, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, size=(_size(skip, 2), _size(skip, 3)), mode="bilinear", align_corners=False)
    x = stage.conv1(torch.cat([x, skip], dim=1))
    return stage.conv2(_attention(stage.attention_layer, x))


class TraceableMADGNet(nn.Module):
    """``MADGNet.forward`` (finest map logits) written so that tracing records it for every size.

    Input: float32 ``(B, C, H, W)``, ``C`` 1 or 3 (1 is repeated to 3), scaled to [0, 1], any
    H, W >= 1. Output: ``(B, num_classes, H, W)`` logits. Wraps ``model`` (shares its weights);
    ``model`` must be a plain :class:`~napari_madgnet.model.MADGNet` (not a BatchNorm-folded or
    packed inference copy) in eval mode. See the module docstring for what differs.
    """

    def __init__(self, model: MADGNet) -> None:
        super().__init__()
        if not isinstance(model, MADGNet):
            raise TypeError(f"expected a MADGNet, got {type(model).__name__}")
        if getattr(model, "bn_folded", False):
            raise TypeError("export the plain model, not an inference copy (folded BatchNorm)")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.model
        config = net.config
        # Grey to RGB as MADGNet._prepare does; a no-op for 3 channels, so the graph takes both.
        x = x.expand(-1, 3, -1, -1)
        height, width = _size(x, 2), _size(x, 3)
        padded_h, padded_w = padded_size_tensor(height, width, config.scale_branches, config.min_resolution)
        # MADGNet._prepare reflects unless the padding is as large as the image.
        reflect = (padded_h - height < height) & (padded_w - width < width)
        x = x.index_select(2, _pad_indices(height, padded_h, reflect))
        x = x.index_select(3, _pad_indices(width, padded_w, reflect))

        enc = net.feature_encoding
        stem = enc.relu(enc.bn1(enc.conv1(x)))
        f1 = enc.layer1(enc.maxpool(stem))
        f2 = enc.layer2(f1)
        f3 = enc.layer3(f2)
        out = enc.layer4(f3)
        for i, skip in enumerate((f3, f2, f1, stem), start=1):
            skip = getattr(net, f"skip_connection{i}")(skip)
            out = _decoder_stage(getattr(net, f"decoder_stage{i}"), out, skip)
        seg, _, _ = net.sub_decoder_stage4(out, (padded_h, padded_w))
        return seg[:, :, :height, :width]
