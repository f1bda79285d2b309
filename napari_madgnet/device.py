"""Choosing where the network runs (CUDA, then Apple MPS, then CPU, or what the user names) and in
which precision (bf16 where the CPU or GPU has it natively, fp32 elsewhere)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from typing import Any

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


#: Inference precisions a user can ask for (``InferenceConfig.precision``, ``--precision``).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

#: Inference backends: PyTorch (every device), ONNX Runtime (the CPU, fp32; the ``export`` extra).
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")

#: /proc/cpuinfo flags that tell whether bf16 runs natively (AVX-512 BF16 dot products, AMX tiles).
BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni", "avx512_vnni")


def cpu_bf16_supported() -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), as PyTorch's oneDNN sees them:
    there bf16 autocast pays; elsewhere bf16 is emulated and slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@functools.cache
def cpu_info() -> dict[str, Any]:
    """The CPU's model name, its bf16-relevant flags and what PyTorch makes of them.

    Read from /proc/cpuinfo (Linux; elsewhere ``platform.processor()`` and no flags), plus
    ``torch.cpu`` checks and ``torch.backends.cpu.get_cpu_capability()``. Used by provenance and
    by the benchmarks, whose results are kept per CPU model.
    """
    model, flags, ident = "", set(), {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key in ("vendor_id", "cpu family", "model") and key not in ident:
                ident[key] = value.strip()
            if model and flags and len(ident) == 3:
                break
    cpu = getattr(torch, "cpu", None)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {
        "model": model or platform.processor() or platform.machine(),
        "vendor": ident.get("vendor_id"),
        "family": ident.get("cpu family"),
        "model_number": ident.get("model"),
        "flags": [f for f in BF16_FLAGS if f in flags],
        "avx512_bf16": bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "amx": bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
        "native_bf16": cpu_bf16_supported(),
        "torch_capability": capability,
        "logical_cpus": os.cpu_count(),
    }


def resolve_precision(precision: str, device: torch.device, mixed_precision: bool = True) -> str:
    """The precision a forward pass runs in: "fp32", "bf16" or "fp16".

    ``auto``: the ``MADGNET_PRECISION`` environment variable when set (``fp32`` or ``bf16``: one
    choice for every run on a machine, e.g. results that do not depend on the CPU model; the test
    suite sets ``fp32``), else bf16 autocast on CPUs with native bf16 (``cpu_bf16_supported``; on an AMD Zen 4
    measured 2.2x the released forward, 1.7-1.9x the fp32 engine, with the masks of a trained
    nuclei model agreeing to Dice 0.9986, see docs/inference.md), fp32 on other CPUs and on MPS;
    on CUDA bf16 where the GPU has it, else fp16. ``mixed_precision=False`` makes ``auto`` fp32
    everywhere. ``bf16`` asks for it explicitly (emulated, slow, on CPUs without native bf16).
    Raises ``UserError`` for bf16 on MPS or on a CUDA GPU without bf16.
    """
    from napari_madgnet.errors import UserError

    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision == "auto" and os.environ.get("MADGNET_PRECISION", "auto").strip().lower() != "auto":
        chosen = os.environ["MADGNET_PRECISION"].strip().lower()
        if chosen not in PRECISIONS:
            raise UserError(
                f"MADGNET_PRECISION must be one of {', '.join(PRECISIONS)}; got {chosen!r}. "
                "Unset it to let each run choose."
            )
        return resolve_precision(chosen, device, mixed_precision)
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if device.type == "mps":
            raise UserError("precision 'bf16' is not supported on Apple MPS here; use 'auto' or 'fp32'.")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"{device} has no bf16 support; use precision 'auto' (fp16) or 'fp32'.")
        return "bf16"
    if not mixed_precision or device.type not in ("cpu", "cuda"):
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_supported() else "fp32"


def precision_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_slug() -> str:
    """A file-name-safe name of this CPU model, e.g. ``amd-epyc-f25-m17-avx512bf16``: benchmark
    results are kept one file per CPU model (virtual machines often hide the full model name, so
    the family, model number and bf16 units are part of it)."""
    import re

    info = cpu_info()
    parts = [info["model"]]
    if info.get("family"):
        parts.append(f"f{info['family']}-m{info.get('model_number')}")
    parts.append("amx" if info["amx"] else "avx512bf16" if info["avx512_bf16"] else "nobf16")
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")
    return slug[:80]


def cpu_summary() -> dict[str, Any]:
    """What provenance records of the CPU: its model name and whether it has native bf16."""
    info = cpu_info()
    return {"model": info["model"], "native_bf16": info["native_bf16"], "flags": info["flags"]}
