"""Training throughput: the engine's step against a plain fp32 loop of the released network.

    python benchmarks/bench_training.py [--quick] [--device cpu|cuda] [--size 352]

For batch 2 and 8 (and 16 on a GPU) at 352 px: images per second and peak memory of
(a) a plain loop: fp32, the released computation (``set_reference_mode``: per-filter channel
attention, pooling kernels), forward_stages + the same loss + Adam; (b) the engine
(``iter_train``: this package's network, its data pipeline) in fp32; (c) the engine with mixed
precision as it runs by default (CUDA: AMP; CPU: bf16 autocast where the CPU has bf16 units;
the row is left out elsewhere). Prints a table and writes JSON to benchmarks/results/. Goal: the
engine >= 1.3x (a), and a batch of 16 at 352 px in under 16 GB on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def _reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def plain_loop(batch: int, size: int, steps: int, device: torch.device) -> dict[str, float]:
    from napari_madgnet.model import MADGNet
    from napari_madgnet.training import LossConfig
    from napari_madgnet.training.losses import esdm_loss

    torch.manual_seed(0)
    model = MADGNet("resnest50").to(device).train()
    model.set_reference_mode(True)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    b = {"mask": mask, "valid": torch.ones_like(mask), "boundary": mask * 0, "distance": mask * 0.5}
    _reset(device)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss, _ = esdm_loss(model.forward_stages(x), b, LossConfig())
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    step = float(np.median(times[1:]))
    return {"images_per_s": batch / step, "step_s": step, "peak_mb": _peak_mb(device)}


def engine_loop(
    batch: int, size: int, steps: int, device: torch.device, amp: bool = False
) -> dict[str, float]:
    from napari_madgnet.training import TrainConfig, data_from_arrays, iter_train

    rng = np.random.default_rng(0)
    side = size * 2
    labels = (rng.random((side, side)) > 0.995).astype(np.uint8)
    from scipy import ndimage

    labels = ndimage.binary_dilation(labels, iterations=6).astype(np.uint8)
    image = (rng.normal(60, 20, (side, side, 3)) + 120 * labels[..., None]).clip(0, 255).astype(np.uint8)
    cfg = TrainConfig.benchmark(
        sampling="patch",
        scales=(1.0,),
        patch_size=size,
        batch_size=batch,
        max_steps=steps + 1,
        steps_per_epoch=10_000,
        init="scratch",
        device=str(device),
        num_workers=2 if device.type == "cuda" else 0,
        amp=amp,
        cpu_amp=amp,
    )
    data = data_from_arrays(image, labels, cfg)
    _reset(device)
    times, last = [], time.perf_counter()
    for _ in iter_train(cfg, data):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    step = float(np.median(times[1:]))
    return {"images_per_s": batch / step, "step_s": step, "peak_mb": _peak_mb(device)}


def _measure_in_subprocess(
    kind: str, batch: int, size: int, steps: int, device: str, threads: int, extra: str = ""
) -> dict:
    """Each measurement in its own process, so the CPU peak RSS belongs to it alone."""
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    code = (
        f"import json, torch, sys; sys.path.insert(0, {here!r}); torch.set_num_threads({threads}); "
        "import bench_training as b; from napari_madgnet.device import resolve_device; "
        f"print(json.dumps(b.{kind}_loop({batch}, {size}, {steps}, resolve_device({device!r}){extra})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 2 only, 2 timed steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=352)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from napari_madgnet.device import resolve_device

    device = resolve_device(args.device)
    batches = [2] if args.quick else [2, 8] + ([16] if device.type == "cuda" else [])
    steps = 2 if args.quick else 4
    from napari_madgnet.training.engine import cpu_bf16_supported

    has_amp = device.type == "cuda" or (device.type == "cpu" and cpu_bf16_supported())
    amp_name = "AMP" if device.type == "cuda" else "bf16 autocast"
    rows = []
    print(f"{'device':7}{'batch':>6}  {'loop':<22}{'img/s':>8}{'peak MB':>10}{'x plain':>9}")
    for batch in batches:
        row: dict = {"batch": batch}
        row["plain"] = _measure_in_subprocess("plain", batch, args.size, steps, str(device), args.threads)
        row["engine_fp32"] = _measure_in_subprocess(
            "engine", batch, args.size, steps, str(device), args.threads, ", amp=False"
        )
        if has_amp:
            row["engine_amp"] = _measure_in_subprocess(
                "engine", batch, args.size, steps, str(device), args.threads, ", amp=True"
            )
        base = row["plain"]["images_per_s"]
        for key, label in (
            ("plain", "plain fp32 (released)"),
            ("engine_fp32", "engine fp32"),
            ("engine_amp", f"engine {amp_name}"),
        ):
            if key in row:
                r = row[key]
                r["speedup"] = r["images_per_s"] / base
                print(
                    f"{device.type:7}{batch:>6}  {label:<22}{r['images_per_s']:>8.2f}"
                    f"{r['peak_mb']:>10.0f}{r['speedup']:>9.2f}",
                    flush=True,
                )
        rows.append(row)
    result = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "size": args.size,
        "quick": args.quick,
        "torch": torch.__version__,
        "rows": rows,
        "load_average_after": list(os.getloadavg()),
        "note": "each loop in its own process; CPU peak = peak RSS, GPU peak = max_memory_allocated.",
    }
    out = (
        Path(__file__).parent
        / "results"
        / f"bench_training_{device.type}{'_quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
