"""Inference speed and memory: megapixels per second and peak memory per image size.

Each case runs in a fresh process, so its peak resident memory (``ru_maxrss``) belongs to it
alone; "peak above in+out" subtracts the memory held before the run (Python, torch, the model,
the input) and the output arrays, leaving what the engine itself needed (tiles, accumulators).

Goals (see docs/inference.md): cost linear in pixels (4096^2 no more than 1.1 x 16 x
the 1024^2 time), under 1.5 GB above input and output for 4096^2, and on a GPU batched tiles at
least 5x the images per second of batch-1 fp32.

    python benchmarks/bench_inference.py [--quick] [--device cpu|cuda|auto] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = ["352x352", "1024x1024", "4096x4096", "64x512x512", "batching"]
QUICK = ["352x352", "1024x1024", "2048x2048", "8x512x512", "batching"]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_case(case: str, device: str, threads: int, backbone: str) -> dict:
    """One measurement, in this process."""
    import numpy as np
    import torch

    from napari_madgnet.device import resolve_device
    from napari_madgnet.inference import InferenceConfig, fast_model, segment
    from napari_madgnet.model import MADGNet

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    # As the CLI and the widgets hold it: the inference copy, made once per loaded model.
    model = fast_model(MADGNet(backbone=backbone).eval()).to(dev)
    rng = np.random.default_rng(0)
    if case == "batching":
        return _batching(model, dev)
    dims = tuple(int(v) for v in case.split("x"))
    image = (rng.random(dims, dtype=np.float32) * 255).astype(np.uint8)
    geometry = "resize" if len(dims) == 3 or dims[-1] <= 352 else "tiles"
    cfg = InferenceConfig(geometry=geometry, tile_size=352, overlap=0.25, device=device)  # default batch
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
        "seconds": round(seconds, 3),
        "megapixels_per_s": round(pixels / 1e6 / seconds, 4),
        "input_mb": round(image.nbytes / 2**20, 1),
        "output_mb": round(out_bytes / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_above_in_out_mb": round(max(0, peak - before - out_bytes) / 2**20, 1),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.type == "cuda" else None,
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
        "--quick", action="store_true", help="smaller cases (2048^2 instead of 4096^2, 8 planes)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--backbone", default="resnest50")
    parser.add_argument("--cases", nargs="*", help="run only these cases")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.threads, args.backbone)))
        return 0
    cases = args.cases or (QUICK if args.quick else FULL)
    rows = []
    for case in cases:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            case,
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
        cmd += ["--backbone", args.backbone]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    _report(rows, args)
    return 0


def _report(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\n{'case':<12} {'geometry':<8} {'seconds':>9} {'MPix/s':>8} {'in MB':>7} {'out MB':>7} "
        f"{'peak MB':>8} {'above in+out MB':>16}"
    )
    for r in rows:
        if r["case"] == "batching":
            continue
        print(
            f"{r['case']:<12} {r['geometry']:<8} {r['seconds']:>9.2f} {r['megapixels_per_s']:>8.3f} "
            f"{r['input_mb']:>7.1f} {r['output_mb']:>7.1f} {r['peak_rss_mb']:>8.1f} "
            f"{r['peak_above_in_out_mb']:>16.1f}"
        )
    by = {r["case"]: r for r in rows}
    checks = {}
    small, big = "1024x1024", "4096x4096" if "4096x4096" in by else "2048x2048"
    if small in by and big in by:
        factor = (int(big.split("x")[0]) // 1024) ** 2
        ratio = by[big]["seconds"] / (factor * by[small]["seconds"])
        checks["linear_cost_ratio"] = round(ratio, 3)
        print(f"\ncost of {big} / ({factor} x cost of {small}) = {ratio:.3f}  (goal <= 1.1)")
        checks["peak_above_in_out_mb"] = by[big]["peak_above_in_out_mb"]
        print(
            f"peak above input+output for {big}: {by[big]['peak_above_in_out_mb']:.0f} MB  (goal < 1536 MB)"
        )
    if "batching" in by:
        b = by["batching"]
        checks["batching_speedup"] = b["speedup"]
        print(
            f"batching on {b['device']}: {b['images_per_s_batch1_fp32']:.2f} -> "
            f"{b['images_per_s_batched']:.2f} images/s ({b['speedup']:.2f}x; goal >= 5x on a GPU)"
        )
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    dev = rows[0]["device"].replace(":", "") if rows else args.device
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results / f"inference-{dev}{'-quick' if args.quick else ''}-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "created": stamp,
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpus": os.cpu_count(),
                },
                "args": vars(args),
                "rows": rows,
                "checks": checks,
            },
            indent=1,
        )
    )
    print(f"\nwritten {path}")


if __name__ == "__main__":
    sys.exit(main())
