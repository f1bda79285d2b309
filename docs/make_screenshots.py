"""Screenshots of both docks as a newcomer sees them, at a laptop's and a desktop's screen size.

Opens napari (under Xvfb on a headless machine) with an empty models folder and no network use,
opens the nuclei sample (which opens the Fine-tune dock with the first-model suggestion), opens
the Segment dock (its "No model yet" state), trains the first model from the suggestion, and lets
the Fine-tune dock hand the model to the Segment dock. Three states, each at 1366 x 768 and
1920 x 1080, the two docks stacked on the right, the divider between them in the middle:

    docs/screenshots/<W>x<H>-empty.png      nothing trained yet
    docs/screenshots/<W>x<H>-running.png    training, with the live plot and the time left
    docs/screenshots/<W>x<H>-finished.png   trained and segmented

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshots.py [--steps 400]

The PNGs are reduced to 256 colours (a few hundred KB each). Models go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = ((1366, 768), (1920, 1080))


def _wait(app, predicate, timeout: float, what: str) -> None:
    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def _settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _save(viewer, app, out: Path, state: str, docks: list, show: tuple = ()) -> list[Path]:
    """The whole window at each size, reduced to 256 colours. ``show``: (dock widget, control)
    pairs; each dock is scrolled so that its control is in view (the part that tells the state)."""
    from PIL import Image
    from qtpy.QtCore import Qt

    written = []
    window = viewer.window._qt_window
    for w, h in SIZES:
        window.resize(w, h)
        _settle(app, 0.5)
        # napari gives the dock stacked last the larger share; split the two evenly, as a user
        # would by dragging the divider, so both show at each size.
        window.resizeDocks(docks, [h // 2, h // 2], Qt.Vertical)
        viewer.reset_view()
        _settle(app, 0.5)
        for dock, control in show:
            dock.scroll.ensureWidgetVisible(control, 0, 8)
        _settle(app, 0.5)
        pixels = viewer.screenshot(canvas_only=False, flash=False)
        path = out / f"{w}x{h}-{state}.png"
        image = Image.fromarray(pixels[..., :3]).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        image.save(path, optimize=True)
        written.append(path)
        print(f"wrote {path} ({path.stat().st_size // 1000} KB, {pixels.shape[1]} x {pixels.shape[0]})")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=120, help="training steps of the first model (default 120)"
    )
    parser.add_argument("--out", default=str(HERE / "screenshots"))
    parser.add_argument("--empty-only", action="store_true", help="only the empty state (a quick look)")
    args = parser.parse_args(argv)
    os.environ["MADGNET_MODELS_DIR"] = tempfile.mkdtemp(prefix="madgnet-screenshot-models-")
    os.environ.setdefault("MADGNET_CACHE_DIR", tempfile.mkdtemp(prefix="madgnet-screenshot-cache-"))

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-madgnet")
    app = QApplication.instance()
    viewer.window._qt_window.resize(*SIZES[0])
    viewer.open_sample("napari-madgnet", "nuclei_dsb2018")
    viewer.layers["nuclei annotation"].opacity = 0.45
    _settle(app, 0.5)
    seg_dock, segment = viewer.window.add_plugin_dock_widget("napari-madgnet", "Segment")
    ft_dock, finetune = viewer.window.add_plugin_dock_widget("napari-madgnet", "Fine-tune")
    docks = [ft_dock, seg_dock]
    finetune.name_edit.setText("nuclei-first-model")
    finetune.length.setValue(args.steps)
    finetune.validate_every.setValue(max(1, args.steps // 10))
    # The estimate before Start: a short calibration, as the dock runs it by itself.
    finetune.estimator.delay_ms = 10
    finetune._settings_changed()
    _wait(app, lambda: finetune.estimator.current is not None, 600, "the time estimate")
    segment.instances.setChecked(True)
    _save(viewer, app, out, "empty", docks)
    if args.empty_only:
        viewer.close()
        return

    t0 = time.perf_counter()
    finetune.first_model_button.click()
    _wait(
        app,
        lambda: len(finetune.plot.dices) >= 3 or not finetune.job.running,
        3600,
        "three validations",
    )
    _save(viewer, app, out, "running", docks, [(finetune, finetune.plot)])
    _wait(app, lambda: not finetune.job.running, 3600, "the end of training")
    print(f"trained in {time.perf_counter() - t0:.0f} s: {finetune.status.text()}")
    _wait(app, lambda: segment.job is not None and not segment.job.running, 600, "the segmentation")
    print(f"segmented: {segment.status.text()}")
    viewer.layers["nuclei annotation"].visible = False
    viewer.layers["nuclei mask"].opacity = 0.6
    finetune.plot.redraw()
    _save(viewer, app, out, "finished", docks, [(finetune, finetune.plot), (segment, segment.status)])
    viewer.close()


if __name__ == "__main__":
    main()
