"""Training throughput: the engine's step against a plain fp32 loop of the released network.

    python benchmarks/bench_training.py [--quick] [--device cpu|cuda] [--size 352] [--ablation]

For batch 2 and 8 (and 16 on a GPU) at 352 px: images per second and peak memory of
(a) a plain loop: fp32, the released computation (``set_reference_mode``: per-filter channel
attention, pooling kernels), forward_stages + the E-SDM loss written as PraNet's code writes it
(``plain_loss``; tests check it equals the engine's ``esdm_loss``) + Adam; (b) the engine
(``iter_train``: this package's network, its loss, data pipeline, channels_last on the CPU and
freed memory kept mapped) in fp32; with ``--ablation`` (b) again in NCHW; (c) the engine with
mixed precision (CUDA: AMP; CPU: bf16 autocast where the CPU has bf16 units; the row is left
out elsewhere). Each loop runs in its own process, ``--rounds`` times, interleaved with the
others, so that drift in the machine's speed hits all loops; the table gives medians. Prints a
table and writes JSON to benchmarks/results/. Goal: the engine >= 1.3x (a), and a batch of 16
at 352 px in under 16 GB on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

# Steps not timed: the first allocates every buffer (page faults, oneDNN primitive caches).
WARMUP = 2


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def _reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def plain_loss(stages, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The E-SDM loss (default weights, every pixel annotated) as a plain loop would write it:
    PraNet's structure loss per stage, with its 31 x 31 average pool, + distance MSE + boundary BCE."""
    import torch.nn.functional as F

    from napari_madgnet.training import LossConfig

    cfg, mask = LossConfig(), batch["mask"]
    total = mask.new_zeros(())
    for stage_weight, (m, d, b) in zip(cfg.stage_weights, stages, strict=True):
        weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
        wbce = F.binary_cross_entropy_with_logits(m, mask, reduction="mean")
        pred = torch.sigmoid(m)
        inter = (pred * mask * weit).sum(dim=(2, 3))
        union = ((pred + mask) * weit).sum(dim=(2, 3))
        wiou = 1 - (inter + 1) / (union - inter + 1)
        structure = wbce + wiou.mean()
        distance = F.mse_loss(torch.sigmoid(d), batch["distance"])
        boundary = F.binary_cross_entropy_with_logits(b, batch["boundary"])
        stage = cfg.map_weight * structure + cfg.distance_weight * distance + cfg.boundary_weight * boundary
        total = total + stage_weight * stage
    return total


def plain_loop(
    batch: int, size: int, steps: int, device: torch.device, warmup: int = WARMUP
) -> dict[str, float]:
    from napari_madgnet.model import MADGNet

    torch.manual_seed(0)
    model = MADGNet("resnest50").to(device).train()
    model.set_reference_mode(True)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    b = {"mask": mask, "valid": torch.ones_like(mask), "boundary": mask * 0, "distance": mask * 0.5}
    _reset(device)
    times = []
    for _ in range(steps + warmup):
        t = time.perf_counter()
        loss = plain_loss(model.forward_stages(x), b)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    step = float(np.median(times[warmup:]))
    return {"images_per_s": batch / step, "step_s": step, "peak_mb": _peak_mb(device)}


def engine_loop(
    batch: int,
    size: int,
    steps: int,
    device: torch.device,
    amp: bool = False,
    warmup: int = WARMUP,
    channels_last: bool | None = None,
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
        max_steps=steps + warmup,
        steps_per_epoch=10_000,
        init="scratch",
        device=str(device),
        num_workers=2 if device.type == "cuda" else 0,
        amp=amp,
        cpu_amp=amp,
        channels_last=channels_last,
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
    step = float(np.median(times[warmup:]))
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} loop, batch {batch}{extra}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _variants(device: torch.device, ablation: bool) -> list[tuple[str, str, str]]:
    """(key, label, extra arguments of the loop function) of each measured loop."""
    from napari_madgnet.training.engine import cpu_bf16_supported

    rows = [("plain", "plain fp32 (released)", ""), ("engine_fp32", "engine fp32", ", amp=False")]
    if ablation:
        rows.append(("engine_fp32_nchw", "engine fp32, NCHW", ", amp=False, channels_last=False"))
    if device.type == "cuda" or cpu_bf16_supported():
        amp_name = "AMP" if device.type == "cuda" else "bf16 autocast"
        rows.append(("engine_amp", f"engine {amp_name}", ", amp=True"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 2 only, 2 timed steps, 1 round")
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=352)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8, help="timed steps per process (after 2 warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="processes per loop, interleaved; medians reported")
    p.add_argument("--ablation", action="store_true", help="also the engine without channels_last")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 2 8, and 16 on a GPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from napari_madgnet.device import resolve_device

    device = resolve_device(args.device)
    batches = [2] if args.quick else [2, 8] + ([16] if device.type == "cuda" else [])
    batches = args.batches or batches
    steps, rounds = (2, 1) if args.quick else (args.steps, args.rounds)
    variants = _variants(device, args.ablation)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe, headline, result_path, write_result

    machine = describe(str(device))
    print(headline(machine))
    rows = []
    print(f"{'device':7}{'batch':>6}  {'loop':<22}{'img/s':>8}{'peak MB':>10}{'x plain':>9}  rounds")
    for batch in batches:
        runs: dict[str, list[dict]] = {key: [] for key, _, _ in variants}
        for _ in range(rounds):  # interleaved, so drift in the machine's speed hits every loop alike
            for key, _, extra in variants:
                kind = "plain" if key == "plain" else "engine"
                runs[key].append(
                    _measure_in_subprocess(kind, batch, args.size, steps, str(device), args.threads, extra)
                )
        row: dict = {"batch": batch}
        for key, _, _ in variants:
            speeds = [r["images_per_s"] for r in runs[key]]
            row[key] = {
                "images_per_s": float(np.median(speeds)),
                "images_per_s_rounds": speeds,
                "peak_mb": max(r["peak_mb"] for r in runs[key]),
            }
        base = row["plain"]["images_per_s"]
        for key, label, _ in variants:
            r = row[key]
            r["speedup"] = r["images_per_s"] / base
            print(
                f"{device.type:7}{batch:>6}  {label:<22}{r['images_per_s']:>8.2f}{r['peak_mb']:>10.0f}"
                f"{r['speedup']:>9.2f}  {' '.join(f'{v:.2f}' for v in r['images_per_s_rounds'])}",
                flush=True,
            )
        rows.append(row)
    result = {
        "device": str(device),
        "machine": machine,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": machine["cpu"]["model"],
        "threads": args.threads,
        "size": args.size,
        "quick": args.quick,
        "timed_steps": steps,
        "warmup_steps": WARMUP,
        "rounds": rounds,
        "torch": torch.__version__,
        "rows": rows,
        "load_average_after": list(os.getloadavg()),
        "note": "each loop in its own process, rounds interleaved; img/s = median over rounds of the "
        "median step; CPU peak = peak RSS, GPU peak = max_memory_allocated.",
    }
    suffix = f"{args.size}px" + ("-quick" if args.quick else "")
    out = write_result(result_path("bench_training", machine, suffix), result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
