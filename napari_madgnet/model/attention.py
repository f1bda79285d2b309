"""MADGNet's multi-frequency multi-scale attention (MFMSA) and its channel attention (MFCA)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .dct import dct_filters

# Side of the square map the channel attention pools to, keyed by the decoder block's channels
# (FcaNet's table: 7 x 2^k). Checkpoints depend on it only through the DCT filters.
POOLED_SIZE_BY_CHANNELS = {32: 112, 64: 56, 128: 28, 256: 14, 512: 7}
# Elements of the filter-product tensor the channel attention makes at once (1 Mi float32 =
# 4 MB): slices of channels that stay in cache, and bounded memory for any batch size.
PRODUCT_CHUNK = 1 << 20


@lru_cache(maxsize=64)
def _pooling_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D adaptive average pooling (PyTorch's bin edges)."""
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool_matmul(x: torch.Tensor, size: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, size)`` as two small matrix products (separable bins).

    Same bins and weights; 2-4x faster on CPU for the shapes used here, in particular when the
    map is smaller than ``size`` (adaptive pooling then upsamples). Under ``torch.compile`` the
    pooling op is kept (the compiler generates its own kernel).
    """
    if torch.compiler.is_compiling():
        return F.adaptive_avg_pool2d(x, size)
    rows = _pooling_matrix(x.shape[-2], size).to(x.device, x.dtype)
    cols = _pooling_matrix(x.shape[-1], size).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.T)


class MultiFrequencyChannelAttention(nn.Module):
    """Channel gate from DCT-weighted average, max and min pooling (MFCA).

    The input is adaptive-average-pooled to ``size x size`` and multiplied by each of the
    ``count`` fixed DCT filters; per filter, average, max and min over space give three channel
    descriptors, each averaged over the filters, passed through one shared two-layer 1x1 MLP
    (``fc``, no bias) and summed; a sigmoid of the sum scales the input channels.

    The filters are a non-persistent buffer (not in ``state_dict``). ``vectorised=False`` runs the
    released computation (adaptive pooling kernel, per-filter loop); it exists only to benchmark
    against the release.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        count: int = 16,
        selection: str = "top",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        self.size = size
        self.count = count
        self.vectorised = True
        filters = dct_filters(size, selection, count)
        self.register_buffer("filters", filters, persistent=False)
        # The average term is linear in the filters: one mean filter replaces all of them.
        self.register_buffer("mean_filter", filters.double().mean(0).float(), persistent=False)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )

    def descriptors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Filter-averaged (avg, max, min) spatial poolings of ``x * filter``, each ``(B, C)``."""
        if not self.vectorised:
            if x.shape[-2:] != (self.size, self.size):
                x = F.adaptive_avg_pool2d(x, self.size)
            return self._descriptors_loop(x)
        if x.shape[-2:] != (self.size, self.size):
            x = adaptive_avg_pool_matmul(x, self.size)
        b, c = x.shape[:2]
        avg = torch.einsum("bchw,hw->bc", x, self.mean_filter.to(x.dtype)) / (self.size * self.size)
        rows = x.reshape(b * c, 1, -1)
        filters = self.filters.to(x.dtype).reshape(self.count, -1)
        # Max and min need every product x * filter, (B*C, K, H*W) in all: made a slice of
        # channels at a time (cache-sized, any batch size), reduced by amax and amin (not
        # torch.aminmax: several times slower on CPU).
        step = max(1, PRODUCT_CHUNK // filters.numel())
        if not (torch.is_grad_enabled() and x.requires_grad):
            highs, lows = [], []
            for part in rows.split(step):
                products = part * filters
                highs.append(products.amax(dim=-1))
                lows.append(products.amin(dim=-1))
            high = torch.cat(highs).reshape(b, c, self.count)
            low = torch.cat(lows).reshape(b, c, self.count)
            return avg, high.mean(dim=-1), low.mean(dim=-1)
        # Training: find the extreme positions without autograd, then rebuild just those
        # products, so backward does not keep the products (like the release's max pooling,
        # the gradient goes to one position per filter).
        with torch.no_grad():
            where_max, where_min = [], []
            for part in rows.detach().split(step):
                products = part * filters
                where_max.append(products.argmax(dim=-1))
                where_min.append(products.argmin(dim=-1))
            del products
        k = torch.arange(self.count, device=x.device)

        def pick(where: torch.Tensor) -> torch.Tensor:  # where: (B*C, K) flat positions
            values = rows.squeeze(1).gather(-1, where) * filters[k, where]
            return values.reshape(b, c, self.count).mean(dim=-1)

        return avg, pick(torch.cat(where_max)), pick(torch.cat(where_min))

    def _descriptors_loop(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The released computation, one filter at a time (benchmark reference only)."""
        avg = high = low = 0
        for k in range(self.count):
            weighted = x * self.filters[k].to(x.dtype).expand(x.shape[1], -1, -1)
            avg = avg + F.adaptive_avg_pool2d(weighted, 1)
            high = high + F.adaptive_max_pool2d(weighted, 1)
            low = low - F.adaptive_max_pool2d(-weighted, 1)
        b, c = x.shape[:2]
        return tuple(t.reshape(b, c) / self.count for t in (avg, high, low))  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        avg, high, low = self.descriptors(x)
        if self.vectorised:
            # The shared MLP once on the three descriptors stacked along the batch axis.
            stacked = torch.cat([avg, high, low]).reshape(3 * b, c, 1, 1)
            logits = self.fc(stacked).reshape(3, b, c).sum(dim=0)
        else:
            logits = sum(self.fc(d.reshape(b, c, 1, 1)) for d in (avg, high, low)).reshape(b, c)
        return x * torch.sigmoid(logits).reshape(b, c, 1, 1)


def _conv_bn_relu(
    in_ch: int, out_ch: int, kernel: int, dilation: int = 1, groups: int = 1
) -> list[nn.Module]:
    pad = dilation * (kernel // 2)
    return [
        nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def branch_pools(height: int, scale_branches: int, min_resolution: int) -> list[bool]:
    """Which scale branches average-pool a map of this height (branch s pools by 2^s).

    The release decides from the height only: branch s pools when ``height // 2**s >=
    min_resolution``; branch 0 "pools" by 1, a no-op.
    """
    return [s > 0 and height // 2**s >= min_resolution for s in range(scale_branches)]


class MFMSAttention(nn.Module):
    """Multi-frequency multi-scale attention block; output = mean of the branches + input.

    Branch s: average pool by 2^s (see :func:`branch_pools`), grouped dilated 3x3 conv + BN +
    ReLU, 1x1 conv to ``max(C / 2^s, min_channel)`` + BN + ReLU, MFCA, spatial gate
    ``a = sigmoid(1x1 conv)``, mix ``f * ((1 - a) * alpha_s + a * beta_s)``, 3x3 conv back to C
    + BN + ReLU, bilinear upsampling back to the input size. The map's sides must be divisible by
    2^s wherever branch s pools (the network's padding guarantees it).
    """

    def __init__(
        self,
        channels: int,
        scale_branches: int = 3,
        frequency_branches: int = 16,
        frequency_selection: str = "top",
        min_channel: int = 32,
        min_resolution: int = 8,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.scale_branches = scale_branches
        self.min_resolution = min_resolution
        self.use_frequency = frequency_branches > 0
        size = POOLED_SIZE_BY_CHANNELS[channels]
        inner = [max(channels // 2**s, min_channel) for s in range(scale_branches)]

        self.multi_scale_branches = nn.ModuleList(
            nn.Sequential(
                *_conv_bn_relu(channels, channels, 3, dilation=1 + s, groups=groups),
                *_conv_bn_relu(channels, inner[s], 1),
            )
            for s in range(scale_branches)
        )
        self.multi_frequency_branches = nn.ModuleList(
            nn.Sequential(MultiFrequencyChannelAttention(ch, size, frequency_branches, frequency_selection))
            for ch in (inner if self.use_frequency else [])
        )
        self.multi_frequency_branches_conv1 = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, 1, 1, bias=False), nn.Sigmoid()) for ch in inner
        )
        self.multi_frequency_branches_conv2 = nn.ModuleList(
            nn.Sequential(*_conv_bn_relu(ch, channels, 3)) for ch in inner
        )
        self.alpha_list = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in inner)
        self.beta_list = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pools = branch_pools(size[0], self.scale_branches, self.min_resolution)
        branches: list[torch.Tensor] = []
        for s in range(self.scale_branches):
            f = F.avg_pool2d(x, 2**s) if pools[s] else x
            f = self.multi_scale_branches[s](f)
            if self.use_frequency:
                f = self.multi_frequency_branches[s](f)
            gate = self.multi_frequency_branches_conv1[s](f)
            f = f * ((1 - gate) * self.alpha_list[s] + gate * self.beta_list[s])
            f = self.multi_frequency_branches_conv2[s](f)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            branches.append(f)
        # Branch outputs may be saved for backward (in-place ReLU results): the first sum makes
        # a new tensor, which the rest may then update in place.
        total = branches[0] + branches[1] if len(branches) > 1 else branches[0].clone()
        for f in branches[2:]:
            total += f
        return total.div_(self.scale_branches).add_(x)
