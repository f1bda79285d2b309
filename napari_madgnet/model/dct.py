"""Fixed 2-D DCT-II filters for the multi-frequency channel attention (FcaNet-style).

The filters depend only on the architecture (pooled size and frequency choice), so they are
rebuilt here instead of being stored in checkpoints.
"""

from __future__ import annotations

import math

import torch

# FcaNet's ranking of the 7x7 DCT frequencies for each selection rule: digit i of the first
# string is u, of the second v, of the i-th pair. Published numbers (Qin et al., "FcaNet", ICCV
# 2021), used by MADGNet's release.
_FREQUENCY_DIGITS: dict[str, tuple[str, str]] = {
    "top": ("00600114513000324635526553342261", "01052020060463526333511242113053"),
    "low": ("00110221203401301234501234561234", "01012012230043154321065432106543"),
    "bot": ("61332412445146256162243355625536", "64466314456522514350311242115333"),
}

FREQUENCY_SELECTIONS = tuple(_FREQUENCY_DIGITS)
FREQUENCY_COUNTS = (1, 2, 4, 8, 16, 32)


def frequency_indices(selection: str, count: int) -> list[tuple[int, int]]:
    """The first ``count`` (u, v) frequency pairs of a 7x7 grid under a selection rule."""
    if selection not in _FREQUENCY_DIGITS:
        raise ValueError(f"frequency_selection must be in {FREQUENCY_SELECTIONS}: {selection!r}")
    if count not in FREQUENCY_COUNTS:
        raise ValueError(f"frequency_branches must be one of {FREQUENCY_COUNTS}, got {count!r}")
    us, vs = _FREQUENCY_DIGITS[selection]
    return [(int(u), int(v)) for u, v in zip(us[:count], vs[:count], strict=True)]


def _dct_basis(size: int, freq: int) -> torch.Tensor:
    """Orthonormal 1-D DCT-II basis vector of length ``size`` at frequency ``freq`` (float64)."""
    pos = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return basis * math.sqrt(2.0) if freq != 0 else basis


def dct_filters(size: int, selection: str = "top", count: int = 16) -> torch.Tensor:
    """The ``(count, size, size)`` DCT filters of one attention module, in float32.

    Frequencies from the 7x7 table are scaled by ``size // 7`` as in the release. Products are
    formed in float64 and rounded once, which reproduces the released buffers bit for bit.
    """
    scale = size // 7
    filters = [
        torch.outer(_dct_basis(size, u * scale), _dct_basis(size, v * scale))
        for u, v in frequency_indices(selection, count)
    ]
    return torch.stack(filters).to(torch.float32)
