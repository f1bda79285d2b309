"""Inference-only speed-ups that keep the released numerics (within float rounding).

``fold_batchnorm`` returns a copy of a model with every eval-mode BatchNorm folded into the
convolution before it: ~120 fewer passes over the feature maps per forward. The copy is for
inference only (its weights no longer follow the official key layout; ``save_model`` refuses
it); keep the original for training and saving.

``pack_convolutions`` turns the copy's convolutions into :class:`PackedConv2d`: on the CPU,
oneDNN (mkldnn) otherwise reorders every weight into its blocked layout on every call, which
for this network's 200 convolutions costs about a tenth of a batch-1 forward; a packed
convolution reorders once per input shape and fuses the ReLU that follows it. It uses the two
oneDNN operators torch's own compiler (inductor) emits for CPU convolutions; where they are
missing or disagree with ``F.conv2d`` the plain convolution runs. ``inference_copy`` does both,
or ``torch.compile`` on request.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .encoders.common import Encoder
from .encoders.res2net import Res2NetBottleneck
from .encoders.resnest import ResNeStBottleneck, SplitAttentionConv
from .encoders.resnet import ResNetBottleneck
from .network import MADGNet

# (conv attribute, BN attribute) pairs where the BN directly follows the conv in forward().
_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    Encoder: (("conv1", "bn1"),),
    ResNeStBottleneck: (("conv1", "bn1"), ("conv3", "bn3")),
    SplitAttentionConv: (("conv", "bn0"), ("fc1", "bn1")),
    ResNetBottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    Res2NetBottleneck: (("conv1", "bn1"), ("conv3", "bn3")),
}


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    if isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    return module if isinstance(module, nn.Conv2d) else None


def fold_batchnorm(model: MADGNet) -> MADGNet:
    """An eval-mode copy of ``model`` with BatchNorms folded into the preceding convolutions.

    Outputs equal ``model.eval()``'s up to float rounding (~1e-6 relative). Meant for
    inference: the copy has no gradients, and its parameters are not an official state dict.
    """
    fused = copy.deepcopy(model).eval().requires_grad_(False)
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    _fold(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        for cls, pairs in _PAIRS.items():
            if not isinstance(module, cls):
                continue
            for conv_name, bn_name in pairs:
                conv = _last_conv(getattr(module, conv_name))
                bn = getattr(module, bn_name)
                if conv is not None and isinstance(bn, nn.BatchNorm2d):
                    _fold(conv, bn)
                    setattr(module, bn_name, nn.Identity())
        if isinstance(module, Res2NetBottleneck):
            for i, (conv, bn) in enumerate(zip(module.convs, module.bns, strict=True)):
                if isinstance(bn, nn.BatchNorm2d):
                    _fold(conv, bn)
                    module.bns[i] = nn.Identity()
    fused.bn_folded = True
    return fused


@lru_cache(maxsize=2)
def packing_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's packed convolution runs here in ``dtype`` (float32 or bfloat16) and matches
    ``F.conv2d`` (checked once per dtype)."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or ops is None:
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=gen) for s in ((1, 8, 12, 10), (16, 4, 3, 3), (16,)))
        want = F.relu(F.conv2d(x, w, b, padding=2, dilation=2, groups=2))
        x, w, b = x.to(dtype), w.to(dtype), b.to(dtype)
        packed = ops._reorder_convolution_weight(w, [2, 2], [1, 1], [2, 2], 2, list(x.shape))
        with torch.no_grad():
            got = ops._convolution_pointwise(x, packed, b, [2, 2], [1, 1], [2, 2], 2, "relu", [], "")
        tol = 1e-4 if dtype == torch.float32 else 1e-2  # bf16 keeps 8 bits of mantissa
        return bool((got.float() - want).abs().max() <= tol * want.abs().max())
    except Exception:  # an older or newer torch without these operators: plain convolutions
        return False


class PackedConv2d(nn.Conv2d):
    """A ``Conv2d`` (optionally + ReLU) whose weight oneDNN reorders once per input shape.

    Inference only: when gradients are on, or the input is not a float32 (or, under CPU bf16
    autocast, bfloat16) CPU tensor, or packing is unavailable, it runs as a plain ``Conv2d``
    (+ ReLU). Under ``torch.autocast("cpu", torch.bfloat16)`` it runs in bf16 with a bf16 packed
    weight, as autocast would run a convolution. Same parameters and state dict; an in-place
    change of the weight is noticed (its version counter) and repacked; moving or casting the
    module drops the packed weight, a ``.to()`` that changes nothing keeps it.
    """

    def __init__(self, *args: object, relu: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.relu = relu
        self._packed: torch.Tensor | None = None
        self._packed_for: tuple[object, ...] | None = None
        self._bias: torch.Tensor | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, relu: bool = False) -> PackedConv2d:
        """The same convolution, sharing ``conv``'s weight and bias (nothing copied)."""
        packed = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
            relu=relu,
        )
        packed.weight, packed.bias = conv.weight, conv.bias
        return packed

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        def where(t: torch.Tensor) -> tuple[object, ...]:
            return (t.device, t.dtype, t.data_ptr())

        before = where(self.weight)
        out = super()._apply(fn, *args, **kwargs)
        if where(self.weight) != before:
            # moved or cast (.to(device/dtype)): pack again; a no-op .to() keeps the packed weight,
            # so a runner that calls .to(device) per image does not repack 174 convolutions.
            self._packed, self._packed_for, self._bias = None, None, None
        return out

    def __getstate__(self) -> dict[str, object]:
        state = dict(super().__getstate__())  # copy.deepcopy: oneDNN's opaque packed tensor stays behind
        state.update(_packed=None, _packed_for=None, _bias=None)
        return state

    def _fast_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The dtype the packed path runs in (float32, or bfloat16 under CPU bf16 autocast or for
        bf16 input), or None for the plain convolution."""
        if not (
            x.device.type == "cpu"
            and x.dim() == 4
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and self.weight.dtype == torch.float32
            and packing_available()
        ):
            return None
        if x.dtype == torch.bfloat16 or (
            x.dtype == torch.float32
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        ):
            return torch.bfloat16 if packing_available(torch.bfloat16) else None
        return torch.float32 if x.dtype == torch.float32 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._fast_dtype(x)
        if dtype is None:
            y = super().forward(x)
            return F.relu(y) if self.relu else y
        # Under autocast this custom operator is not cast for us: cast as autocast would for a conv.
        x = x.to(dtype)
        key = (*x.shape, dtype, self.weight._version)
        if self._packed_for != key:  # the blocked layout oneDNN picks depends on the input shape
            self._packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.detach().to(dtype),
                list(self.padding),
                list(self.stride),
                list(self.dilation),
                self.groups,
                list(x.shape),
            )
            self._bias = None if self.bias is None else self.bias.detach().to(dtype)
            self._packed_for = key
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self._packed,
            self._bias,
            list(self.padding),
            list(self.stride),
            list(self.dilation),
            self.groups,
            "relu" if self.relu else "none",
            [],
            "",
        )


def pack_convolutions(model: nn.Module) -> nn.Module:
    """Replace ``model``'s convolutions by :class:`PackedConv2d` in place, fusing a following ReLU
    (``Conv, [Identity], ReLU`` in a ``Sequential``, the shape BatchNorm folding leaves). Returns it.
    """
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            layers = list(module)
            for i, layer in enumerate(layers):
                if type(layer) is not nn.Conv2d:
                    continue
                j = i + 1
                while j < len(layers) and isinstance(layers[j], nn.Identity):
                    j += 1
                relu = j < len(layers) and isinstance(layers[j], nn.ReLU)
                module[i] = PackedConv2d.from_conv(layer, relu=relu)
                if relu:
                    module[j] = nn.Identity()
        for name, child in list(module.named_children()):
            if type(child) is nn.Conv2d:
                setattr(module, name, PackedConv2d.from_conv(child))
    return model


def inference_copy(model: MADGNet, compile: bool = False) -> torch.nn.Module:
    """A fast, eval-only copy of ``model``: BatchNorm folded and convolutions packed
    (:func:`pack_convolutions`), or BatchNorm folded and ``torch.compile``d.

    ``compile=True`` uses inductor with weight freezing (``options={"freezing": True}``): on
    a 2-core CPU about 1.3-1.5x faster than eager, outputs within ~2e-4 relative, but it needs
    a C++ compiler, compiles again for every new input shape (a minute or two on 2 cores the
    first time) and must be called under ``torch.no_grad()``/``torch.inference_mode()``. Worth
    it for long jobs at one tile size, not for a single image.
    """
    fast = fold_batchnorm(model)
    if compile:
        return torch.compile(fast, options={"freezing": True})
    return pack_convolutions(fast)
