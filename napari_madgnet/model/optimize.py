"""Inference-only speed-ups that keep the released numerics (within float rounding).

``fold_batchnorm`` returns a copy of a model with every eval-mode BatchNorm folded into the
convolution before it: ~120 fewer passes over the feature maps per forward. The copy is for
inference only (its weights no longer follow the official key layout; ``save_model`` refuses
it); keep the original for training and saving. ``inference_copy`` adds ``torch.compile`` on
request.
"""

from __future__ import annotations

import copy

import torch
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


def inference_copy(model: MADGNet, compile: bool = False) -> torch.nn.Module:
    """A fast, eval-only copy of ``model``: BatchNorm folded; optionally ``torch.compile``d.

    ``compile=True`` uses inductor with weight freezing (``options={"freezing": True}``): on
    a 2-core CPU about 1.3-1.5x faster than eager, outputs within ~2e-4 relative, but it needs
    a C++ compiler, compiles again for every new input shape (a minute or two on 2 cores the
    first time) and must be called under ``torch.no_grad()``/``torch.inference_mode()``. Worth
    it for long jobs at one tile size, not for a single image.
    """
    fast = fold_batchnorm(model)
    if compile:
        return torch.compile(fast, options={"freezing": True})
    return fast
