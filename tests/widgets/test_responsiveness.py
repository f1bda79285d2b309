"""The GUI stays responsive while the network runs (smoke version of benchmarks/bench_responsiveness.py).

A 5 ms Qt timer keeps ticking while a segmentation and a short fine-tuning run in their workers;
the longest gap between ticks is the longest stall a user would feel. The bound here is loose
(1 s) so a busy shared CI machine does not make it flaky; the benchmark reports the real figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "napari-madgnet"


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from stall_meter import StallMeter

    return StallMeter(interval_ms=5)


def test_event_loop_keeps_serving_during_inference_and_training(
    make_napari_viewer, qtbot, tiny_model, meter, errors
) -> None:
    from napari_madgnet.sample_data import load_nuclei

    image, labels = load_nuclei()
    viewer = make_napari_viewer()
    viewer.add_image(image[:128, :128], name="nuclei")
    viewer.add_labels(labels[:128, :128], name="annotation")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")

    meter.start()
    segment.run()
    qtbot.waitUntil(lambda: not segment.job.running, timeout=90_000)
    meter.stop()
    inference = meter.stats()

    finetune.patch.setValue(64)
    finetune.batch.setValue(2)
    finetune.length_unit.setCurrentText("steps")
    finetune.length.setValue(3)
    finetune.validate_every.setValue(3)
    finetune.segment_after.setChecked(False)
    finetune.base_model.refresh(select=tiny_model)
    meter.start()
    finetune.start()
    qtbot.waitUntil(lambda: not finetune.job.running, timeout=120_000)
    meter.stop()
    training = meter.stats()

    print(f"\nlongest stall (ms): inference {inference['max_stall_ms']}, training {training['max_stall_ms']}")
    assert errors == []
    assert "nuclei mask" in viewer.layers and finetune.last_outcome.model_path.is_file()
    assert inference["ticks"] > 20 and training["ticks"] > 20
    assert inference["max_stall_ms"] < 1000, inference
    assert training["max_stall_ms"] < 1000, training
    np.testing.assert_equal(viewer.layers["nuclei mask"].data.shape, (128, 128))
