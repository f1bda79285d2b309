"""Screenshots of both dock widgets in real use, for the README and the docs.

Opens napari (under Xvfb on a headless machine), loads the nuclei sample, fine-tunes MADGNet on
it in the Fine-tune dock with the demo's settings (from random weights: no download needed), lets the
dock hand the new model to the Segment dock, which segments the image, and saves:

    docs/finetune_widget.png   the Fine-tune dock after training, with its loss/Dice plot
    docs/segment_widget.png    the Segment dock and the resulting instance labels

    xvfb-run -a python docs/make_screenshots.py [--steps 200]

Models go to a temporary registry folder unless MADGNET_MODELS_DIR is set.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _wait(app, predicate, timeout: float) -> None:
    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise TimeoutError("the job did not finish in time")
        app.processEvents()
        time.sleep(0.005)


def _settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps (default 200)")
    parser.add_argument("--patch", type=int, default=64, help="patch size in px (default 64)")
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument("--lr", type=float, default=2e-3, help="lr from scratch (2e-3)")
    parser.add_argument(
        "--from-model",
        default=None,
        help="continue from this model file (e.g. the demo's out/demo/nuclei_model.pt) instead of scratch",
    )
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    os.environ.setdefault("MADGNET_MODELS_DIR", tempfile.mkdtemp(prefix="madgnet-screenshot-models-"))

    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # keep the toast out
    import napari
    import torch
    from imageio.v3 import imwrite
    from qtpy.QtWidgets import QApplication

    torch.manual_seed(0)
    viewer = napari.Viewer(show=True, title="napari-madgnet")
    viewer.window._qt_window.resize(1500, 980)
    viewer.open_sample("napari-madgnet", "nuclei_dsb2018")
    viewer.layers["nuclei annotation"].opacity = 0.5
    app = QApplication.instance()
    seg_dock, segment = viewer.window.add_plugin_dock_widget("napari-madgnet", "Segment")
    ft_dock, finetune = viewer.window.add_plugin_dock_widget("napari-madgnet", "Fine-tune")
    seg_dock.hide()
    finetune.image_combo.set_layer(viewer.layers["nuclei"])
    finetune.labels_combo.set_layer(viewer.layers["nuclei annotation"])
    if args.from_model:
        from napari_madgnet.registry import register_model

        register_model(args.from_model, name="nuclei-demo", copy=True, trained_on="nuclei sample, top half")
        finetune.base_model.refresh(select="nuclei-demo")
    else:
        finetune.base_model.refresh(select="scratch")
        finetune.encoder.setCurrentText("resnest50")
        finetune.lr.setValue(args.lr)
    finetune.length_unit.setCurrentText("steps")
    finetune.length.setValue(args.steps)
    finetune.validate_every.setValue(max(1, args.steps // 10))
    finetune.patch.setValue(args.patch)
    finetune.batch.setValue(args.batch)
    finetune.name_edit.setText("nuclei-finetuned")
    segment.instances.setChecked(True)
    segment.geometry.setCurrentText("tiles")  # native scale, as the patches were trained
    _settle(app)

    t0 = time.perf_counter()
    finetune.start()
    _wait(app, lambda: not finetune.job.running, 3600)
    print(f"fine-tuned in {time.perf_counter() - t0:.0f} s: {finetune.status.text()}")
    _wait(app, lambda: segment.job is not None and not segment.job.running, 600)
    print(f"segmented: {segment.status.text()}")
    viewer.layers["nuclei mask"].visible = False
    viewer.layers["nuclei annotation"].visible = True
    finetune.plot.redraw()
    _settle(app, 1.5)
    out = Path(args.out)
    imwrite(out / "finetune_widget.png", viewer.screenshot(canvas_only=False, flash=False))

    ft_dock.hide()
    seg_dock.show()
    viewer.layers["nuclei annotation"].visible = False
    viewer.layers["nuclei mask"].visible = True
    viewer.layers["nuclei mask"].opacity = 0.6
    _settle(app, 1.5)
    imwrite(out / "segment_widget.png", viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {out / 'finetune_widget.png'} and {out / 'segment_widget.png'}")
    viewer.close()


if __name__ == "__main__":
    main()
