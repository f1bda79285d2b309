"""What every speed benchmark prints and records about the machine, and where its JSON goes.

Results are kept one file per CPU model (``results/<bench>-<cpu slug>.json``, or
``<bench>-cuda-<gpu slug>.json`` for GPU rows), so the figures of the machines this project ran
on sit side by side instead of overwriting each other. ``describe`` gives the CPU model, its bf16
flags (``avx512_bf16``, ``amx_*``), the precision the engine's "auto" picks there, the torch
threads and the load average when called (the machine may be shared: a result is only as good
as the load it was measured under).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))


def describe(device: str = "cpu") -> dict[str, Any]:
    """The machine a result comes from (JSON-ready)."""
    import torch

    from napari_madgnet.device import cpu_info, cpu_slug, resolve_device, resolve_precision

    dev = resolve_device(device)
    info: dict[str, Any] = {
        "cpu": cpu_info(),
        "cpu_slug": cpu_slug(),
        "device": str(dev),
        "auto_precision": resolve_precision("auto", dev),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def headline(info: dict[str, Any]) -> str:
    """One line to print above every table."""
    cpu = info["cpu"]
    flags = ", ".join(cpu["flags"]) or "no bf16/VNNI flags"
    text = (
        f"CPU: {cpu['model']} (family {cpu.get('family')}, model {cpu.get('model_number')}; {flags}; "
        f"native bf16: {cpu['native_bf16']}); torch {info['torch']}, {info['torch_threads']} threads; "
        f"device {info['device']}, auto precision: {info['auto_precision']}"
    )
    if "gpu" in info:
        text += f"; GPU: {info['gpu']}"
    if "load_average" in info:
        text += f"; load average {info['load_average'][0]:.2f}"
    return text


def load_now() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def result_path(bench: str, info: dict[str, Any], suffix: str = "") -> Path:
    """``results/<bench>-<cpu slug>[-suffix].json`` (``-cuda-<gpu>`` for GPU results)."""
    slug = info["cpu_slug"]
    if "gpu" in info:
        slug = "cuda-" + re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    name = f"{bench}-{slug}{('-' + suffix) if suffix else ''}.json"
    return RESULTS / name


def write_result(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON atomically (a killed benchmark leaves the previous result)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)
    return path
