"""Choosing where the network runs: CUDA, then Apple MPS, then CPU, or what the user names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def available_devices() -> list[str]:
    """Names a user can pick, best first: ``auto``, each CUDA device, ``mps``, ``cpu``."""
    names = ["auto"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto``/``cuda``/``cuda:1``/``mps``/``cpu`` into a device, with a clear error if absent."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {name!r}; choose one of {', '.join(available_devices())}.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"Device {name!r} asked for, but this PyTorch sees no CUDA GPU; use 'cpu' or 'auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"Device {name!r} does not exist; "
                f"this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("Device 'mps' asked for, but Apple MPS is not available here; use 'cpu' or 'auto'.")
    return device


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """Mixed precision where it pays (CUDA: bf16 if supported, else fp16); a no-op elsewhere."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


@contextlib.contextmanager
def free_device_memory(device: torch.device) -> Iterator[None]:
    """Release cached GPU memory after a job, so other programs (and napari) get it back."""
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
