"""Video segmentation memory: peak resident memory while a 640 x 480 video is segmented.

A synthetic endoscopy-like video (moving bright discs over a textured background, H.264) is
segmented by a small random MADGNet (ResNet-50 encoder) through ``inference.video.segment_video``: frames
decoded one at a time (``VideoFrames``), the network's outputs in a temporary zarr store, the
per-frame masks streamed into a multi-page TIFF and the overlay into an MP4. The network runs
with ``geometry="resize"`` at ``input_size=64`` (a 64 x 64 forward per frame) so that 300 frames
take a minute or two on a CPU: this measures memory, not speed or accuracy, and the memory that
matters here (frames, probabilities, masks) does not depend on the network's input size.

Cases, each in a fresh process so that its peak (``ru_maxrss``) is its own:
- ``stream-N``: N frames through ``segment_video`` (bounded: the peak should not grow with N);
- ``in-memory-N``: the naive way for comparison: all frames decoded into one array, segmented in
  memory, masks written whole (grows with N: frames + float32 probabilities + masks).

"peak above baseline" subtracts the memory held after imports, model creation and a one-frame
warm-up. FFmpeg decodes and encodes in child processes (not counted; each holds a few frames).
The random network's masks are not meaningful (the files are small because they are nearly
uniform); the outputs are re-read to check that they are complete.

    python benchmarks/bench_video.py [--frames 300] [--quick] [--threads 2]
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
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, FPS = 640, 480, 25


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def make_video(path: Path, frames: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """An H.264 video of ``frames`` frames: textured background, two bright discs that move."""
    import numpy as np

    from napari_madgnet.video import VideoWriter

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    texture = (rng.random((height // 8, width // 8)) * 60).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    with VideoWriter(path, FPS, overwrite=True) as writer:
        for t in range(frames):
            frame = np.empty((height, width, 3), np.uint8)
            frame[..., 0] = 90 + texture
            frame[..., 1] = 40 + texture // 2
            frame[..., 2] = 30 + texture // 3
            for cx, cy, r, speed in ((0.3, 0.4, 0.12, 2.0), (0.7, 0.6, 0.08, -3.0)):
                x0 = (cx * width + speed * t) % width
                disc = (yy - cy * height) ** 2 + (xx - x0) ** 2 < (r * height) ** 2
                frame[disc] = (230, 200, 190)
            writer.write(frame)
    return path


def run_case(case: str, video: Path, out: Path, threads: int, input_size: int = 64) -> dict:
    """One measurement, in this process."""
    import numpy as np
    import torch

    from napari_madgnet.inference import InferenceConfig, fast_model, segment
    from napari_madgnet.inference.video import segment_video
    from napari_madgnet.model import MADGNet
    from napari_madgnet.video import VideoFrames, write_mask_pages, write_overlay_video

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = fast_model(MADGNet(backbone="resnet50").eval())
    config = InferenceConfig(axes="TYXC", geometry="resize", input_size=input_size, device="cpu")
    frames = VideoFrames(video)
    segment(frames[:1], model, config)  # warm-up: the first forward allocates the network's buffers
    baseline = _rss_bytes()
    start = time.perf_counter()
    mask_path, overlay_path = out / f"{case}_mask.tif", out / f"{case}_overlay.mp4"
    if case.startswith("stream"):
        segment_video(frames, model, config, mask_path=mask_path, overlay_path=overlay_path, overwrite=True)
    else:
        pixels = np.asarray(frames)  # every frame decoded at once
        result = segment(pixels, model, config)
        mask = np.asarray(result.mask)
        write_mask_pages(mask_path, iter(mask), mask.shape, mask.dtype, overwrite=True)
        write_overlay_video(overlay_path, iter(pixels), iter(mask), frames.fps, overwrite=True)
    seconds = time.perf_counter() - start
    peak = _peak_bytes()
    again = VideoFrames(overlay_path)
    return {
        "case": case,
        "frames": len(frames),
        "frame_size": f"{frames.shape[2]}x{frames.shape[1]}",
        "input_size": input_size,
        "seconds": round(seconds, 2),
        "frames_per_s": round(len(frames) / seconds, 2),
        "baseline_mb": round(baseline / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_above_baseline_mb": round((peak - baseline) / 2**20, 1),
        "decoded_video_mb": round(frames.nbytes / 2**20, 1),
        "overlay_frames_reread": len(again),
        "mask_tiff_mb": round(mask_path.stat().st_size / 2**20, 2),
        "overlay_mp4_mb": round(overlay_path.stat().st_size / 2**20, 2),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the long video")
    parser.add_argument("--quick", action="store_true", help="60 and 120 frames instead of 100 and 300")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.video, args.out, args.threads, args.input_size)))
        return 0

    long_n = 120 if args.quick else args.frames
    short_n = 60 if args.quick else max(1, args.frames // 3)
    cases = [(f"stream-{short_n}", short_n), (f"stream-{long_n}", long_n), (f"in-memory-{long_n}", long_n)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        videos = {n: make_video(tmp_path / f"video_{n}.mp4", n) for n in {short_n, long_n}}
        for case, n in cases:
            cmd = [sys.executable, __file__, "--case", case, "--video", str(videos[n]), "--out", tmp]
            cmd += ["--threads", str(args.threads), "--input-size", str(args.input_size)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{r['case']:>16}  {r['frames']:>4} frames {r['frame_size']}  {r['seconds']:>7.1f} s  "
                f"peak {r['peak_rss_mb']:>7.1f} MB  above baseline {r['peak_above_baseline_mb']:>7.1f} MB  "
                f"(decoded video {r['decoded_video_mb']:.0f} MB)",
                flush=True,
            )
    info = {
        "cpu": _cpu_model(),
        "threads": args.threads,
        "python": platform.python_version(),
        "note": f"random MADGNet (resnet50), resize to {args.input_size} px: measures memory, not speed",
    }
    print(f"CPU: {info['cpu']}, {args.threads} thread(s)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results / f"video-cpu{'-quick' if args.quick else ''}-{stamp}.json"
    path.write_text(json.dumps({"info": info, "cases": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
