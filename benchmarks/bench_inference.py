"""Inference speed and memory: megapixels per second and peak memory per image size, and what the
engine costs above the bare forward.

Each case runs in a fresh process, so its peak resident memory (``ru_maxrss``) belongs to it
alone; "peak above in+out" subtracts the memory held before the run (Python, torch, the model,
the input) and the output arrays, leaving what the engine itself needed (tiles, accumulators).

The ``overhead`` case times, interleaved in one process (median of ``--repeats`` rounds), on a
352 x 352 image: the released forward (fp32, ``set_reference_mode``), the bare forward of the
engine's prepared network at the engine's precision (``sigmoid(net(x))``), the runner (map only;
+ distance and boundary heads; + flip TTA x2) and the whole ``segment()`` call (range fitting,
post-processing, provenance). Goals: ``segment()`` within 5 % of the bare forward; the engine's
forward >= 2.0x the released one on CPUs with native bf16, >= 1.3x elsewhere.

Goals (see docs/inference.md): cost linear in pixels (2048^2 <= 4.4 x the 1024^2 time; 4096^2
no more than 1.1 x 16 x the 1024^2 time), under 1.5 GB above input and output for 4096^2, and on
a GPU batched tiles at least 5x the images per second of batch-1 fp32.

Prints the CPU model, its bf16 flags and the precision "auto" picks; writes
``results/inference-<cpu slug>[-quick].json`` (one file per CPU model; GPU:
``inference-cuda-<gpu>.json``).

    python benchmarks/bench_inference.py [--quick] [--device cpu|cuda|auto] [--threads 2]
        [--precision auto|fp32|bf16] [--backend torch|onnxruntime] [--cases overhead 1024x1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FULL = ["overhead", "352x352", "1024x1024", "2048x2048", "4096x4096", "64x512x512", "batching"]
QUICK = ["overhead", "352x352", "1024x1024", "2048x2048", "8x512x512", "batching"]
SEGMENT = "segment() (resize, one forward)"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_case(
    case: str,
    device: str,
    threads: int,
    backbone: str,
    precision: str = "auto",
    backend: str = "torch",
    repeats: int = 7,
    size: int = 352,
) -> dict:
    """One measurement, in this process (``size``: the overhead case's image)."""
    import numpy as np
    import torch

    from napari_madgnet.device import resolve_device
    from napari_madgnet.inference import InferenceConfig, fast_model, segment
    from napari_madgnet.model import MADGNet

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    plain = MADGNet(backbone=backbone).eval()
    if case == "overhead":
        return _overhead(plain, dev, precision, backend, repeats, size)
    # As the CLI and the widgets hold it: the inference copy, made once per loaded model (ONNX
    # Runtime exports the plain model).
    model = plain if backend == "onnxruntime" else fast_model(plain).to(dev)
    rng = np.random.default_rng(0)
    if case == "batching":
        return _batching(model, dev)
    dims = tuple(int(v) for v in case.split("x"))
    image = (rng.random(dims, dtype=np.float32) * 255).astype(np.uint8)
    geometry = "resize" if len(dims) == 3 or dims[-1] <= 352 else "tiles"
    cfg = InferenceConfig(
        geometry=geometry, tile_size=352, overlap=0.25, device=device, precision=precision, backend=backend
    )  # default batch
    segment(image[..., :352, :352] if len(dims) == 2 else image[:1], model, cfg)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_bytes()
    start = time.perf_counter()
    result = segment(image, model, cfg)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out_bytes = result.probabilities.nbytes + result.mask.nbytes
    peak = _peak_bytes()
    pixels = image.size
    return {
        "case": case,
        "geometry": geometry,
        "device": str(dev),
        "precision": result.provenance["resolved"]["precision"],
        "backend": backend,
        "seconds": round(seconds, 3),
        "megapixels_per_s": round(pixels / 1e6 / seconds, 4),
        "input_mb": round(image.nbytes / 2**20, 1),
        "output_mb": round(out_bytes / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_above_in_out_mb": round(max(0, peak - before - out_bytes) / 2**20, 1),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.type == "cuda" else None,
    }


def _overhead(plain, dev, precision: str, backend: str, repeats: int, size: int = 352) -> dict:
    """Released forward, bare engine forward, runner and segment() at size x size, interleaved."""
    import numpy as np
    import torch

    from napari_madgnet.device import precision_autocast
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.inference.heads import OutputSpec
    from napari_madgnet.inference.runner import Runner

    plain = plain.to(dev)  # the released forward runs the plain model on the device too
    prep = {"input_size": size, "normalization": "scale255", "channels": 3}
    plain.checkpoint_info = {"preprocessing": prep}
    image = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    kw = {"precision": precision, "backend": backend}
    runner = Runner(plain, dev, **kw)
    net, chosen = runner.net, runner.precision
    config = InferenceConfig(device=str(dev), geometry="resize", **kw)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def released() -> None:
        plain.set_reference_mode(True)
        try:
            with torch.inference_mode():
                plain(x.to(dev))
        finally:
            plain.set_reference_mode(False)

    def bare() -> None:
        if backend == "onnxruntime":
            torch.sigmoid(net(x))
            return
        with torch.inference_mode(), precision_autocast(dev, chosen):
            xd = x.to(dev)
            if runner.channels_last:
                xd = xd.contiguous(memory_format=torch.channels_last)
            torch.sigmoid(net(xd).float()).cpu()

    runs = {
        "released forward (fp32)": released,
        "bare forward sigmoid(net(x))": bare,
        "runner, map only": lambda: runner(x),
        SEGMENT: lambda: segment(image, plain, config),
    }
    if backend == "torch":
        heads = Runner(plain, dev, outputs=OutputSpec(distance=True, boundary=True), **kw)
        tta = Runner(plain, dev, outputs=OutputSpec(tta=2), **kw)
        runs["runner + distance, boundary"] = lambda: heads(x)
        runs["runner + flip TTA x2"] = lambda: tta(x)
    for fn in runs.values():  # warm-up: packing, allocator, oneDNN primitive caches
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    loads = []
    for _ in range(repeats):
        for name, fn in runs.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    bare_s = statistics.median(times["bare forward sigmoid(net(x))"])
    rows = {
        k: {
            "median_s": round(statistics.median(v), 4),
            "min_s": round(min(v), 4),
            "relative_to_bare": round(statistics.median(v) / bare_s, 3),
        }
        for k, v in times.items()
    }
    released_s = statistics.median(times["released forward (fp32)"])
    return {
        "case": "overhead",
        "device": str(dev),
        "precision": chosen,
        "backend": backend,
        "size": size,
        "repeats": repeats,
        "paths": rows,
        "segment_overhead_over_bare": round(rows[SEGMENT]["relative_to_bare"] - 1, 4),
        "runner_overhead_over_bare": round(rows["runner, map only"]["relative_to_bare"] - 1, 4),
        "engine_speedup_over_released": round(released_s / bare_s, 3),
        "engine_speedup_over_released_min": round(
            min(times["released forward (fp32)"]) / min(times["bare forward sigmoid(net(x))"]), 3
        ),
        "load_average_during": [round(v, 2) for v in loads if v is not None],
    }


def _batching(model, dev) -> dict:
    """Images (352^2 tiles) per second: batch 1 in fp32 versus batch 16 with mixed precision."""
    import torch

    from napari_madgnet.device import autocast

    n = 32 if dev.type == "cuda" else 4
    x = torch.rand(n, 3, 352, 352, device=dev)

    def rate(batch: int, amp: bool) -> float:
        with torch.inference_mode(), autocast(dev, enabled=amp):
            model(x[:batch])  # warm-up
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(0, n, batch):
                model(x[i : i + batch])
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return n / (time.perf_counter() - start)

    single = rate(1, False)
    batched = rate(min(16, n), dev.type == "cuda")
    return {
        "case": "batching",
        "device": str(dev),
        "images_per_s_batch1_fp32": round(single, 3),
        "images_per_s_batched": round(batched, 3),
        "speedup": round(batched / single, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller cases (no 4096^2, 8 planes instead of 64)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")
    parser.add_argument("--backbone", default="resnest50")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the overhead case (default: 7)")
    parser.add_argument("--cases", nargs="*", help="run only these cases")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args(argv)
    if args.case:
        row = run_case(
            args.case, args.device, args.threads, args.backbone, args.precision, args.backend, args.repeats
        )
        print(json.dumps(row))
        return 0
    import torch
    from machine import describe, headline, load_now, result_path, write_result

    torch.set_num_threads(args.threads)
    info = describe(args.device)
    print(headline(info), flush=True)
    cases = args.cases or (QUICK if args.quick else FULL)
    rows = []
    for case in cases:
        cmd = [sys.executable, __file__, "--case", case, "--device", args.device]
        cmd += ["--threads", str(args.threads)]
        cmd += ["--backbone", args.backbone, "--precision", args.precision, "--backend", args.backend]
        cmd += ["--repeats", str(args.repeats)]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
        )
        before = load_now()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["load_average_before"] = before
        rows.append(row)
        print(json.dumps(row), flush=True)
    info["load_average_after"] = load_now()
    checks = _report(rows, info)
    path = args.out / result_path("inference", info, "quick" if args.quick else "").name
    payload = {"machine": info, "args": vars(args), "rows": rows, "checks": checks}
    print(f"\nwritten {write_result(path, payload)}")
    return 0


def _report(rows: list[dict], info: dict) -> dict:
    print()
    print(
        f"{'case':<12} {'geometry':<8} {'precision':<9} {'seconds':>9} {'MPix/s':>8} {'in MB':>7} "
        f"{'out MB':>7} {'peak MB':>8} {'above in+out MB':>16}"
    )
    for r in rows:
        if r["case"] in ("batching", "overhead"):
            continue
        print(
            f"{r['case']:<12} {r['geometry']:<8} {r['precision']:<9} {r['seconds']:>9.2f} "
            f"{r['megapixels_per_s']:>8.3f} {r['input_mb']:>7.1f} {r['output_mb']:>7.1f} "
            f"{r['peak_rss_mb']:>8.1f} {r['peak_above_in_out_mb']:>16.1f}"
        )
    by = {r["case"]: r for r in rows}
    checks: dict = {}
    if "overhead" in by:
        o = by["overhead"]
        size = f"{o['size']} x {o['size']}"
        print(f"\noverhead at {size} ({o['precision']}, {o['backend']}; median of {o['repeats']}):")
        for name, p in o["paths"].items():
            print(f"  {name:<30} {p['median_s'] * 1e3:8.1f} ms  {p['relative_to_bare']:.3f} x bare")
        goal = 2.0 if info["cpu"]["native_bf16"] and o["device"] == "cpu" else 1.3
        checks.update(
            segment_overhead_over_bare=o["segment_overhead_over_bare"],
            engine_speedup_over_released=o["engine_speedup_over_released"],
            engine_precision=o["precision"],
        )
        print(
            f"segment() over bare forward: {100 * o['segment_overhead_over_bare']:+.1f} % (goal < 5 %); "
            f"engine forward vs released: {o['engine_speedup_over_released']:.2f}x median, "
            f"{o['engine_speedup_over_released_min']:.2f}x min (goal >= {goal}x)"
        )
    if "1024x1024" in by and "2048x2048" in by:
        ratio = by["2048x2048"]["seconds"] / by["1024x1024"]["seconds"]
        checks["cost_2048_over_1024"] = round(ratio, 3)
        print(f"cost of 2048^2 / cost of 1024^2 = {ratio:.2f}  (goal <= 4.4)")
    if "1024x1024" in by and "4096x4096" in by:
        ratio = by["4096x4096"]["seconds"] / (16 * by["1024x1024"]["seconds"])
        checks["linear_cost_ratio"] = round(ratio, 3)
        print(f"cost of 4096^2 / (16 x cost of 1024^2) = {ratio:.3f}  (goal <= 1.1)")
    big = "4096x4096" if "4096x4096" in by else "2048x2048"
    if big in by:
        checks["peak_above_in_out_mb"] = by[big]["peak_above_in_out_mb"]
        peak = by[big]["peak_above_in_out_mb"]
        print(f"peak above input+output for {big}: {peak:.0f} MB  (goal < 1536 MB)")
    if "batching" in by:
        b = by["batching"]
        checks["batching_speedup"] = b["speedup"]
        print(
            f"batching on {b['device']}: {b['images_per_s_batch1_fp32']:.2f} -> "
            f"{b['images_per_s_batched']:.2f} images/s ({b['speedup']:.2f}x; goal >= 5x on a GPU)"
        )
    return checks


if __name__ == "__main__":
    sys.exit(main())
