"""ONNX Runtime on the CPU against the inference engine's PyTorch forward, side by side.

Usage::

    python benchmarks/bench_export.py                      # 1x3x352x352, 2 threads each, 12 rounds
    python benchmarks/bench_export.py --size 544 --batch 2 --threads 2 --rounds 8
    python benchmarks/bench_export.py --quick              # 3 rounds (smoke run)

Both run the same model (the default ResNeSt-50 build with the deterministic reference weights
of tests/fixtures/official) on the same input:

- ``torch engine``: ``napari_madgnet.inference.fast_model(model)``, what the engine runs on the
  CPU (BatchNorm folded, oneDNN-packed convolutions), ``torch.set_num_threads(threads)``;
- ``onnxruntime``: the ONNX export (``napari_madgnet.export.onnx``) in an ONNX Runtime CPU
  session with ``intra_op_num_threads=threads`` and all graph optimisations;
- ``onnxruntime (no spin)``: the same with the intra-op threads' spin-waiting off, which is how
  it would share a process with PyTorch politely.

Rounds are interleaved (each round runs every variant once, in turn), so background load hits
them alike; min and median are reported, min being the best estimate on a shared machine. The
CPU model and its vector flags and the load average (before and after) go into the JSON written
to ``benchmarks/results/export-cpu-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from napari_madgnet.export.common import verification_input  # noqa: E402
from napari_madgnet.export.onnx import onnx_bytes  # noqa: E402
from napari_madgnet.inference import fast_model  # noqa: E402

#: CPU flags that decide which kernels PyTorch (oneDNN) and ONNX Runtime (MLAS) can use.
VECTOR_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
)  # fmt: skip


def cpu_info() -> dict[str, Any]:
    """CPU model name and the vector flags it has (Linux /proc/cpuinfo; platform fallback)."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    return {
        "model": model,
        "vector_flags": [f for f in VECTOR_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
    }


def load() -> dict[str, Any]:
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        info["loadavg"] = list(os.getloadavg())
    with contextlib.suppress(OSError):
        info["uptime"] = Path("/proc/uptime").read_text().split()[0]
    return info


def build_model(backbone: str) -> torch.nn.Module:
    """The network with the deterministic reference weights (realistic activations)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_model import build_model as reference

    return reference(backbone)


def interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """Seconds per call of each function, timed round-robin: min, median, mean, n."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {
        k: {"min": min(v), "median": statistics.median(v), "mean": statistics.fmean(v), "n": len(v)}
        for k, v in times.items()
    }


def ort_session(data: bytes, threads: int, spin: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime

    torch.set_num_threads(args.threads)
    model = build_model(args.backbone).eval()
    x = verification_input(3, args.size, args.size, args.batch)
    started = time.perf_counter()
    data = onnx_bytes(model)
    export_s = time.perf_counter() - started
    engine = fast_model(model)
    sessions = {
        "spin": ort_session(data, args.threads, True),
        "no spin": ort_session(data, args.threads, False),
    }
    feed = {"input": x.numpy()}

    def torch_engine() -> np.ndarray:
        with torch.inference_mode():
            return engine(x).numpy()

    variants = {
        "torch engine (fast_model)": torch_engine,
        "onnxruntime": lambda: sessions["spin"].run(None, feed)[0],
        "onnxruntime (no spin)": lambda: sessions["no spin"].run(None, feed)[0],
    }
    from napari_madgnet.device import precision_autocast, resolve_precision

    cpu = torch.device("cpu")
    precision = resolve_precision("auto", cpu)
    if precision != "fp32":  # the engine's default here: compare ONNX Runtime with the best engine

        def torch_engine_auto() -> np.ndarray:
            with torch.inference_mode(), precision_autocast(cpu, precision):
                return engine(x).float().numpy()

        variants[f"torch engine ({precision}, the default here)"] = torch_engine_auto
    with torch.inference_mode():
        reference = model(x).numpy()
    differences = {k: float(np.abs(fn() - reference).max()) for k, fn in variants.items()}
    before = load()
    timings = interleaved(variants, args.rounds)
    after = load()
    base = timings["torch engine (fast_model)"]
    for name, t in timings.items():
        t["speed_vs_engine_min"] = base["min"] / t["min"]
        t["speed_vs_engine_median"] = base["median"] / t["median"]
        t["max_abs_diff_vs_eager"] = differences[name]
    return {
        "case": {
            "backbone": args.backbone,
            "input": [args.batch, 3, args.size, args.size],
            "threads": args.threads,
        },
        "cpu": cpu_info(),
        "software": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "onnx_export_s": export_s,
        "load_before": before,
        "load_after": after,
        "timings_s": timings,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "note": "shared machine: figures are provisional; compare min (least disturbed) first",
    }


def print_table(result: dict[str, Any]) -> None:
    cpu = result["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['cpu_count']} logical CPUs); flags: {' '.join(cpu['vector_flags'])}")
    before, after = result["load_before"].get("loadavg"), result["load_after"].get("loadavg")
    print(f"load average before/after: {before} / {after}")
    case = result["case"]
    print(
        f"input {'x'.join(map(str, case['input']))}, {case['threads']} threads, backbone {case['backbone']}"
    )
    header = ["variant", "min ms", "median ms", "speed vs engine (min)", "(median)", "max |diff| vs eager"]
    rows = [
        [
            name,
            f"{t['min'] * 1e3:.0f}",
            f"{t['median'] * 1e3:.0f}",
            f"{t['speed_vs_engine_min']:.2f}x",
            f"{t['speed_vs_engine_median']:.2f}x",
            f"{t['max_abs_diff_vs_eager']:.1e}",
        ]
        for name, t in result["timings_s"].items()
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--backbone", default="resnest50")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 3
    result = run(args)
    print_table(result)
    out = args.out or ROOT / "benchmarks" / "results" / f"export-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
