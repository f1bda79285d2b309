"""Screenshots of the docks that show MADGNet's heads (docs/heads.md), at 1366 x 768.

Opens napari (under Xvfb on a headless machine) with the top-left corner of the nuclei sample
(``--crop`` px; the whole 512 x 512 takes minutes per run on a shared CPU) and a trained model
(the demo's: ``python -m napari_madgnet.demo --out out/demo`` writes ``out/demo/nuclei_model.pt``),
copied into a temporary models folder, then:

    docs/screenshots/heads-1-uncertainty.png     Segment dock: watershed instances and the uncertainty layer
    docs/screenshots/heads-2-annotate-next.png   Fine-tune dock: "Annotate next", zoomed to the first region
    docs/screenshots/heads-3-continued.png       after "Continue from the current model" and re-segmenting
    docs/screenshots/heads-4-quality-check.png   Quality check dock: mask vs annotation, error layer
    docs/screenshots/heads-5-measure.png         Measure dock: per-object table, features on hover

    xvfb-run -a -s "-screen 0 1920x1080x24" \
        python docs/make_dock_screenshots.py --model out/demo/nuclei_model.pt
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_screenshots import _settle, _wait  # noqa: E402

SIZE = (1366, 768)
PLUGIN = "napari-madgnet"


def _save(viewer, app, out: Path, name: str) -> Path:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from PIL import Image

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # a notification would cover the canvas
    _settle(app, 0.8)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    path = out / f"heads-{name}.png"
    Image.fromarray(pixels[..., :3]).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True
    )
    print(f"wrote {path} ({path.stat().st_size // 1000} KB, {pixels.shape[1]} x {pixels.shape[0]})")
    return path


def _only(viewer, keep: list) -> None:
    """Show only the docks in ``keep`` (the others are hidden, not closed)."""
    for widget in viewer.window.dock_widgets.values():
        dock = widget.parent()
        dock.setVisible(dock in keep)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="a trained nuclei model (the demo's)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the continued round (default 20)")
    parser.add_argument(
        "--crop", type=int, default=256, help="side of the sample's corner shown (default 256)"
    )
    parser.add_argument("--out", default=str(HERE / "screenshots"))
    args = parser.parse_args(argv)
    models = Path(tempfile.mkdtemp(prefix="madgnet-screenshot-models-"))
    os.environ["MADGNET_MODELS_DIR"] = str(models)
    os.environ.setdefault("MADGNET_CACHE_DIR", tempfile.mkdtemp(prefix="madgnet-screenshot-cache-"))
    shutil.copyfile(args.model, models / "nuclei-demo.pt")

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-madgnet")
    app = QApplication.instance()
    viewer.window._qt_window.resize(*SIZE)
    from napari_madgnet.sample_data import load_nuclei

    pixels, labels = load_nuclei()
    image = viewer.add_image(pixels[: args.crop, : args.crop], name="nuclei")
    annotation = viewer.add_labels(labels[: args.crop, : args.crop], name="nuclei annotation", visible=False)

    # 1. Segment with the uncertainty layer and watershed instances.
    seg_dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    segment.model_combo.refresh(select="nuclei-demo")
    segment.instances.setChecked(True)
    segment.heads.instance_method.setCurrentIndex(segment.heads.instance_method.findData("watershed"))
    segment.heads.uncertainty.setChecked(True)
    segment.heads.tta.setCurrentIndex(segment.heads.tta.findData(2))
    segment.advanced.set_expanded(True)
    segment.run_with("nuclei-demo", image)
    _wait(app, lambda: not segment.job.running, 900, "the segmentation")
    viewer.layers["nuclei mask"].opacity = 0.35
    _only(viewer, [seg_dock])
    viewer.reset_view()
    segment.scroll.ensureWidgetVisible(segment.heads.tta, 0, 40)
    _save(viewer, app, out, "1-uncertainty")

    # 2. Annotate next: suggestions, zoomed to the first.
    ft_dock, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    section = finetune.annotate_next
    section.set_expanded(True)
    finetune.fit_width()
    section.steps.setValue(args.steps)
    section.suggest()
    _wait(app, lambda: section.job is not None and not section.job.running, 120, "the suggestions")
    _only(viewer, [ft_dock])
    viewer.layers["nuclei mask"].opacity = 0.25
    section.table.selectRow(0)
    section.go_to(0)
    finetune.scroll.ensureWidgetVisible(section.continue_button, 0, 40)
    _save(viewer, app, out, "2-annotate-next")

    # 3. "Correct" the two most uncertain regions with the annotation, continue, re-segment.
    segment.ask_overwrite = lambda name: "overwrite"
    mask = viewer.layers["nuclei mask"]
    for s in section.suggestions[:2]:
        y0, x0, y1, x1 = s.box
        mask.data[y0:y1, x0:x1] = annotation.data[y0:y1, x0:x1] > 0
    mask.refresh()
    section.set_ticked([0, 1])
    section.continue_training()
    _wait(app, lambda: section.rounds == 1, 3600, "the continued round")
    _wait(app, lambda: not segment.job.running and not section._resuggest, 900, "re-segmenting")
    _wait(app, lambda: section.job is None or not section.job.running, 120, "the next suggestions")
    viewer.reset_view()
    finetune.plot.redraw()
    section.status.more.setChecked(True)
    finetune.scroll.ensureWidgetVisible(section.status, 0, 40)
    print(section.status.text())
    _save(viewer, app, out, "3-continued")

    # 4. Quality check: the mask against the annotation.
    viewer.layers.remove("nuclei annotate next")
    qc_dock, qc = viewer.window.add_plugin_dock_widget(PLUGIN, "Quality check")
    qc.mask_combo.set_layer(viewer.layers["nuclei mask"])
    qc.ref_combo.set_layer(annotation)
    qc.compare()
    _wait(app, lambda: not qc.job.running, 600, "the comparison")
    qc.tabs.setCurrentIndex(1)
    viewer.layers["nuclei uncertainty"].visible = False
    viewer.layers["nuclei mask"].visible = False
    _only(viewer, [qc_dock])
    viewer.reset_view()
    _save(viewer, app, out, "4-quality-check")

    # 5. Measurements of the watershed instances.
    m_dock, measure = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    measure.labels_combo.set_layer(viewer.layers["nuclei mask"])
    measure.use_image.setChecked(True)
    measure.image_combo.set_layer(image)
    measure.measure()
    _wait(app, lambda: not measure.job.running, 600, "the measurements")
    viewer.layers["nuclei mask errors"].visible = False
    viewer.layers["nuclei mask"].visible = True
    viewer.layers["nuclei mask"].opacity = 0.5
    viewer.layers.selection.active = viewer.layers["nuclei mask"]
    _only(viewer, [m_dock])
    viewer.reset_view()
    _save(viewer, app, out, "5-measure")
    viewer.close()


if __name__ == "__main__":
    main()
