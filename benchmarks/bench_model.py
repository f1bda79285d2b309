"""Benchmark the MADGNet network: latency, throughput, training step time and peak memory.

Usage::

    python benchmarks/bench_model.py            # CPU (2 threads), plus the GPU if there is one
    python benchmarks/bench_model.py --quick    # fewer repeats, no batch-8 training step
    python benchmarks/bench_model.py --device cpu --threads 2 --size 352
    python benchmarks/bench_model.py --device cpu --threads 1 --clock process  # busy machine

Prints the CPU model and its bf16 flags, a table, the precision the engine picks on this CPU
and its speed-up over the released forward, and writes
``benchmarks/results/bench_model-<cpu slug>.json`` (one file per CPU model; GPU:
``bench_model-cuda-<gpu>.json``).

The "released-style" variant computes what the released code computes, the way it does
(``MADGNet.set_reference_mode``: the channel attention loops over its 16 DCT filters and uses
the adaptive pooling kernel; the stem uses the max-pool kernel); the other variants are this
package's inference paths. Variants are timed interleaved (round-robin) in one process, so
background load hits them alike; min and median are reported. On a shared machine the min is
the best estimate of the uncontended time. The op count (ATen calls per forward) is a
load-independent measure of dispatch overhead. Memory is measured in a separate process per
case (peak RSS growth on CPU; ``torch.cuda.max_memory_allocated`` on CUDA). ``--compile`` adds
``torch.compile`` (inductor with weight freezing) on CPU; building it takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from machine import describe, headline, load_now, result_path, write_result  # noqa: E402

from napari_madgnet.model import MADGNet  # noqa: E402
from napari_madgnet.model.optimize import fold_batchnorm, inference_copy  # noqa: E402

RULE = ROOT / "tests" / "fixtures" / "official" / "weights_rule.py"
ENGINE_FP32 = "inference_copy (folded BN + packed convolutions)"
ENGINE_BF16 = "engine bf16: inference_copy under bf16 autocast (packed bf16 convolutions)"
ENGINE_CUDA = "engine on CUDA: inference_copy, autocast (bf16/fp16) + channels_last"


# ----------------------------------------------------------------------------- helpers


def build_model(backbone: str = "resnest50") -> MADGNet:
    """The default build with the deterministic reference weights (realistic activations)."""
    model = MADGNet(backbone)
    if RULE.is_file():
        spec = importlib.util.spec_from_file_location("weights_rule", RULE)
        rule = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(rule)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(rule.fill_state_dict(shapes))
    return model.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


CLOCK: Callable[[], float] = time.perf_counter


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, device: str, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Time each function ``repeats`` times, round-robin; seconds (min, median, mean)."""
    clock = CLOCK if device == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = clock()
            fn()
            sync(device)
            times[name].append(clock() - start)
    return {
        k: {"min": min(v), "median": statistics.median(v), "mean": statistics.fmean(v), "n": len(v)}
        for k, v in times.items()
    }


def count_ops(fn: Callable[[], Any]) -> int:
    """Number of ATen operator calls ``fn`` makes (profiler events named aten::*)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.float().cpu(), ref.float().cpu()
    return float((ours - ref).abs().max() / ref.std())


def rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def train_step_fn(
    model: torch.nn.Module,
    forward_stages: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    autocast: Any = None,
) -> Callable[[], None]:
    """One optimisation step with deep supervision on all 12 outputs (a stand-in loss)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = (x[:, :1] > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast or contextlib.nullcontext():
            stages = forward_stages(x)
            loss = sum(
                torch.nn.functional.binary_cross_entropy_with_logits(m, target)
                + torch.sigmoid(d).mean()
                + torch.nn.functional.binary_cross_entropy_with_logits(b, target)
                for m, d, b in stages
            )
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        optimizer.step()

    return step


# ----------------------------------------------------------------------------- CPU cases


def forward_comparison(args: argparse.Namespace, device: str = "cpu") -> dict[str, Any]:
    """Released-style computation vs this package's inference paths, batch 1, interleaved."""
    model = build_model(args.backbone).to(device)
    folded = fold_batchnorm(model)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    folded_cl = fold_batchnorm(model).to(memory_format=torch.channels_last)
    fast = inference_copy(model)  # what the inference engine runs: folded BN, packed convolutions

    def released() -> torch.Tensor:
        model.set_reference_mode(True)
        try:
            return model(x)
        finally:
            model.set_reference_mode(False)

    def bf16(net: torch.nn.Module, inp: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(inp)

        return run

    variants: dict[str, Callable[[], torch.Tensor]] = {
        "released-style": released,
        "optimised": lambda: model(x),
        "optimised + folded BN": lambda: folded(x),
        "optimised + folded BN + channels_last": lambda: folded_cl(x_cl),
        ENGINE_FP32: lambda: fast(x),
        ENGINE_FP32 + " + channels_last input": lambda: fast(x_cl),
    }
    if device == "cuda":  # what the engine runs on a GPU: autocast (bf16/fp16) + channels_last
        from napari_madgnet.device import autocast

        fast_cl = inference_copy(model).to(memory_format=torch.channels_last)

        def gpu_engine() -> torch.Tensor:
            with autocast(torch.device("cuda")):
                return fast_cl(x_cl)

        variants[ENGINE_CUDA] = gpu_engine
    if device == "cpu":  # the engine's CPU precisions (bf16: emulated, slow, where not native)
        variants[ENGINE_BF16] = bf16(fast, x)
        variants[ENGINE_BF16 + " + channels_last input"] = bf16(fast, x_cl)
        variants["bf16 autocast, folded BN + channels_last (unpacked)"] = bf16(folded_cl, x_cl)
    compile_seconds = None
    if args.compile or (device == "cuda" and not getattr(args, "quick", False)):
        compiled = torch.compile(build_model(args.backbone).to(device), options={"freezing": True})
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        compile_seconds = time.perf_counter() - start
        variants["optimised + torch.compile (inductor, freezing)"] = lambda: compiled(x)
    with torch.inference_mode():
        reference = released()
        errors = {k: relative_error(fn(), reference) for k, fn in variants.items()}
        ops = {
            k: count_ops(fn) if "compile" not in k and device == "cpu" else None for k, fn in variants.items()
        }
        timing = interleaved(variants, args.repeats, device)
    base = timing["released-style"]
    from napari_madgnet.device import resolve_precision

    choice = resolve_precision("auto", torch.device(device))
    cl = " + channels_last input"  # the engine's CPU input layout (inference.runner)
    engine = ENGINE_FP32 + cl if choice == "fp32" else ENGINE_BF16 + cl if device == "cpu" else ENGINE_CUDA
    if device != "cpu" and choice == "fp32":
        engine = ENGINE_FP32
    rows = {}
    for name, t in timing.items():
        rows[name] = {
            "ms_min": 1e3 * t["min"],
            "ms_median": 1e3 * t["median"],
            "speedup_min": base["min"] / t["min"],
            "speedup_median": base["median"] / t["median"],
            "max_rel_error_vs_released_style": errors[name],
            "aten_ops_per_forward": ops[name],
        }
    packed_vs_unpacked = {  # both with channels_last input, as the engine runs on the CPU
        "fp32": timing["optimised + folded BN + channels_last"]["median"]
        / timing[ENGINE_FP32 + " + channels_last input"]["median"],
    }
    if ENGINE_BF16 in timing:
        unpacked = timing["bf16 autocast, folded BN + channels_last (unpacked)"]["median"]
        packed_vs_unpacked["bf16"] = unpacked / timing[ENGINE_BF16 + " + channels_last input"]["median"]
    return {
        "input": list(x.shape),
        "variants": rows,
        "compile_seconds": compile_seconds,
        "engine_precision": choice,
        "engine_variant": engine,
        "engine_speedup_over_released_median": rows[engine]["speedup_median"],
        "engine_speedup_over_released_min": rows[engine]["speedup_min"],
        "packed_speedup_over_unpacked_median": packed_vs_unpacked,
    }


def memory_case(args: argparse.Namespace, case: str, device: str) -> dict[str, Any]:
    """Run one case in this process; report time and peak memory growth."""
    torch.manual_seed(0)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(args.backbone).to(device)
    batch = {"forward_b1": 1, "forward_b8": 8, "train_b2": 2, "train_b8": 8}[case]
    x = torch.rand(batch, 3, args.size, args.size, device=device)
    dtype_ctx = None
    if args.variant in ("bf16", "fp16") and device == "cuda":
        dt = torch.bfloat16 if args.variant == "bf16" else torch.float16
        dtype_ctx = torch.autocast("cuda", dtype=dt)
    if args.variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    stages = model.forward_stages
    if args.variant == "compile":
        stages = torch.compile(model.forward_stages)
        model = torch.compile(model)
    if case.startswith("train"):
        model.train()
        fn = train_step_fn(model, stages, x, dtype_ctx)
        grad = contextlib.nullcontext()
    else:
        inner = model

        def fn() -> torch.Tensor:
            with dtype_ctx or contextlib.nullcontext():
                return inner(x)

        grad = torch.inference_mode()
    base_rss = rss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    repeats = args.repeats if case.startswith("forward") else max(2, args.repeats // 3)
    with grad:
        t = interleaved({case: fn}, repeats, device, warmup=2 if args.variant == "compile" else 1)
    out: dict[str, Any] = {
        "case": case,
        "variant": args.variant,
        "batch": batch,
        "s_min": t[case]["min"],
        "s_median": t[case]["median"],
        "images_per_s_best": batch / t[case]["min"],
        "peak_rss_growth_mb": (peak_rss_bytes() - base_rss) / 2**20,
    }
    if device == "cuda":
        out["peak_cuda_mb_above_weights"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    if device == "cuda" and case.startswith("forward"):
        ref_model = build_model(args.backbone).to(device)
        with torch.inference_mode():
            out["max_rel_error_vs_fp32"] = relative_error(fn(), ref_model(x.contiguous()))
    return out


def run_worker(args: argparse.Namespace, case: str, device: str, variant: str) -> dict[str, Any]:
    """Run ``memory_case`` in a fresh interpreter so peak memory belongs to that case alone."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        case,
        "--device",
        device,
        "--variant",
        variant,
        "--threads",
        str(args.threads),
        "--size",
        str(args.size),
        "--repeats",
        str(args.repeats),
        "--backbone",
        args.backbone,
        "--clock",
        args.clock,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"case": case, "variant": variant, "error": " | ".join(tail)}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- main


def environment(device: str, threads: int) -> dict[str, Any]:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.uname().machine,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with contextlib.suppress(OSError):
        info["load_average_before"] = os.getloadavg()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n## {title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def fmt(v: Any, spec: str = ".1f") -> str:
    return format(v, spec) if isinstance(v, int | float) else str(v)


def bench_device(args: argparse.Namespace, device: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "device": device,
        "environment": environment(device, args.threads),
        "machine": describe(device),
    }
    cases = ["forward_b1", "forward_b8", "train_b2"] + ([] if args.quick else ["train_b8"])
    torch.set_num_threads(args.threads)
    result["forward_comparison"] = forward_comparison(args, device)
    rows = [
        [
            name,
            fmt(r["ms_min"]),
            fmt(r["ms_median"]),
            fmt(r["speedup_min"], ".2f"),
            fmt(r["speedup_median"], ".2f"),
            fmt(r["max_rel_error_vs_released_style"], ".1e"),
            r["aten_ops_per_forward"] if r["aten_ops_per_forward"] is not None else "-",
        ]
        for name, r in result["forward_comparison"]["variants"].items()
    ]
    clock = f"{args.threads} threads, {args.clock} clock" if device == "cpu" else "wall clock"
    print(f"\n{headline(result['machine'])}")
    print_table(
        f"{device} forward, 1x3x{args.size}x{args.size}, {clock}",
        ["variant", "ms min", "ms median", "x (min)", "x (median)", "rel err", "aten ops"],
        rows,
    )
    fc = result["forward_comparison"]
    goal = 2.0 if result["machine"]["cpu"]["native_bf16"] else 1.3
    print(
        f"engine ({fc['engine_precision']}: {fc['engine_variant']}) vs released: "
        f"{fc['engine_speedup_over_released_median']:.2f}x median, "
        f"{fc['engine_speedup_over_released_min']:.2f}x min (goal on this CPU >= {goal}x); packed vs "
        "unpacked convolutions: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in fc["packed_speedup_over_unpacked_median"].items())
    )
    if getattr(args, "forward_only", False):
        return result
    if device == "cpu":
        variants = ["fp32"]
    else:
        variants = ["fp32", "bf16", "fp16", "channels_last"] + ([] if args.quick else ["compile"])
    result["cases"] = [run_worker(args, c, device, v) for v in variants for c in cases]
    rows = []
    for r in result["cases"]:
        if "error" in r:
            rows.append([r["case"], r["variant"], "error: " + r["error"][:80], "", "", "", ""])
            continue
        mem = r.get("peak_cuda_mb_above_weights", r["peak_rss_growth_mb"])
        rows.append(
            [
                r["case"],
                r["variant"],
                fmt(1e3 * r["s_min"]),
                fmt(1e3 * r["s_median"]),
                fmt(r["images_per_s_best"], ".2f"),
                fmt(mem, ".0f"),
                fmt(r.get("max_rel_error_vs_fp32", ""), ".1e"),
            ]
        )
    mem_label = "peak MB (CUDA alloc)" if device == "cuda" else "peak RSS growth MB"
    print_table(
        f"{device} cases ({args.size} px)",
        ["case", "variant", "ms min", "ms median", "img/s", mem_label, "err vs fp32"],
        rows,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--forward-only", action="store_true", help="only the forward comparison")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backbone", default="resnest50")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip train_b8")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile on CPU (minutes to build)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="CPU timing clock; 'process' (CPU time) with --threads 1 ignores other load",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 4 if args.quick else 12
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter

    if args.worker:
        print(json.dumps(memory_case(args, args.worker, args.device)))
        return 0

    devices = ["cpu"] if args.device == "cpu" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "auto":
        devices.insert(0, "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device available", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for device in devices:
        result = bench_device(args, device)
        hidden = ("worker", "variant")
        result["args"] = {k: str(v) for k, v in vars(args).items() if k not in hidden}
        default = (args.threads, args.clock) == (2, "wall")
        suffix = "" if default else f"t{args.threads}-{args.clock}"
        path = args.out / result_path("bench_model", result["machine"], suffix).name
        result["machine"]["load_average_after"] = load_now()
        write_result(path, result)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
