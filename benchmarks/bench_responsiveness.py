"""How long does napari's GUI stall while MADGNet segments and fine-tunes in the dock widgets?

Opens a real (shown) napari viewer with the nuclei sample, both dock widgets, and a 5 ms Qt timer
(``StallMeter``). It measures the event loop idle, during a segmentation of the 512 x 512 image
(ResNeSt-50 MADGNet, random weights, the release's 352 px resize), and during a short fine-tuning
(the Fine-tune preset's 96 px patches). The longest stall is what a user would feel as a frozen
window; the target is under 100 ms. Prints a table and writes JSON to benchmarks/results/.

    xvfb-run -a python benchmarks/bench_responsiveness.py [--steps 6] [--encoder resnest50]

Stalls have three sources, reported separately where possible: work on the GUI thread (the
click handler: napari creating its progress bar; writing layers), the worker thread holding the
GIL (Python code, garbage collection of napari's many objects, torch's C++ checkpoint writer when
given a file name), and the OS not scheduling the GUI thread on a busy machine (see the load
average in the JSON). For each stall over 40 ms the JSON lists where the other threads were when
it ended (``stall_culprits``): a worker that held the GIL has only just let go of it there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _wait(app, predicate, timeout: float) -> None:
    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise TimeoutError("the job did not finish in time")
        app.processEvents()
        time.sleep(0.001)


def _pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


class GcWatch:
    """Garbage collections longer than 20 ms, and on which thread they ran (they hold the GIL)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        import threading

        if phase == "start":
            self._start = time.perf_counter()
            return
        ms = (time.perf_counter() - self._start) * 1000
        if ms > 20:
            thread = threading.current_thread().name
            self.events.append({"ms": round(ms, 1), "generation": info["generation"], "thread": thread})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="fine-tuning steps (default 6)")
    parser.add_argument("--encoder", default="resnest50", help="MADGNet encoder (default resnest50)")
    parser.add_argument("--out", default=str(HERE / "results" / "responsiveness.json"))
    args = parser.parse_args(argv)

    models = Path(tempfile.mkdtemp(prefix="madgnet-bench-models-"))
    os.environ["MADGNET_MODELS_DIR"] = str(models)
    os.environ.setdefault("MADGNET_CACHE_DIR", str(models / "cache"))

    import napari
    import torch
    from qtpy.QtWidgets import QApplication
    from stall_meter import StallMeter

    from napari_madgnet.model import MADGNet, save_model
    from napari_madgnet.sample_data import load_nuclei

    torch.manual_seed(0)
    meta = {"provenance": {"description": "benchmark, random weights"}}
    save_model(MADGNet(args.encoder).eval(), models / "bench.pth", meta)
    image, labels = load_nuclei()
    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="nuclei")
    viewer.add_labels(labels, name="annotation")
    _, segment = viewer.window.add_plugin_dock_widget("napari-madgnet", "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget("napari-madgnet", "Fine-tune")
    app = QApplication.instance()
    _pump(app, 1.0)
    segment.model_combo.refresh(select="bench")
    meter = StallMeter(interval_ms=5)
    watch = GcWatch()
    gc.callbacks.append(watch)
    rows: dict[str, dict] = {}

    def measure(name: str, start, job_of, timeout: float) -> None:
        watch.events.clear()
        meter.start()
        t0 = time.perf_counter()
        start()
        click_ms = (time.perf_counter() - t0) * 1000
        if job_of is not None:
            _wait(app, lambda: not job_of().running, timeout)
        else:
            _pump(app, 3.0)
        meter.stop()
        rows[name] = {
            **meter.stats(),
            "seconds": round(time.perf_counter() - t0, 2),
            "click_handler_ms": round(click_ms, 1),
            "slow_gcs": list(watch.events),
            "stall_culprits": sorted(meter.culprits, key=lambda c: -c["stall_ms"])[:8],
        }

    measure("idle", lambda: None, None, 0)
    segment.scope.setCurrentText("current slice")
    measure("segment (warm-up)", segment.run, lambda: segment.job, 600)
    measure("segment", segment.run, lambda: segment.job, 600)
    finetune.base_model.refresh(select="bench")
    finetune.length_unit.setCurrentText("steps")
    finetune.length.setValue(args.steps)
    finetune.validate_every.setValue(max(1, args.steps // 2))
    finetune.segment_after.setChecked(False)
    measure("fine-tune", finetune.start, lambda: finetune.job, 1800)
    gc.callbacks.remove(watch)

    result = {
        "benchmark": "responsiveness",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "napari": napari.__version__,
            "platform": platform.platform(),
        },
        "settings": {"encoder": args.encoder, "image": "nuclei 512x512", "steps": args.steps, "timer_ms": 5},
        "target_max_stall_ms": 100,
        "phases": rows,
    }
    print(f"\n{'phase':<20}{'seconds':>9}{'ticks':>8}{'max stall ms':>14}{'p99 gap ms':>12}{'click ms':>10}")
    for name, row in rows.items():
        print(
            f"{name:<20}{row['seconds']:>9}{row['ticks']:>8}{row['max_stall_ms']:>14}"
            f"{row['p99_gap_ms']:>12}{row['click_handler_ms']:>10}"
        )
    print(f"load average {result['machine']['load_average']} on {os.cpu_count()} CPUs")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    viewer.close()
    return result


if __name__ == "__main__":
    main()
