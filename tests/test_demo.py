"""The main job runs end to end (a 2-step version; the full run is `bash scripts/demo.sh`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_madgnet.demo import demo_config, reusable_model, run
from napari_madgnet.io import read_image


def test_demo_writes_model_mask_and_overlay_and_a_second_run_reuses_the_model(tmp_path: Path, capsys) -> None:
    cfg = demo_config(max_steps=2, steps_per_epoch=1, batch_size=2)
    numbers = run(tmp_path, cfg, quiet=True)
    assert {"dice", "otsu_dice", "val_dice", "steps", "object_f1_watershed", "pq_components"} <= set(numbers)
    assert 0.0 <= numbers["pq_watershed"] <= numbers["object_f1_watershed"] <= 1.0
    assert numbers["reused"] == 0.0
    assert 0.0 <= numbers["dice"] <= 1.0 and 0.85 < numbers["otsu_dice"] < 0.9
    mask = read_image(tmp_path / "bottom_half_mask.tif")
    assert mask.shape == (256, 512) and set(np.unique(mask)) <= {0, 1}
    assert (tmp_path / "bottom_half_overlay.png").stat().st_size > 10_000
    model = tmp_path / "nuclei_model.pt"
    assert model.is_file()
    printed = capsys.readouterr().out
    assert "Dice on the unseen bottom half" in printed and "watershed on the distance head" in printed

    # Run again: the same model is reused (not retrained) and the Dice printed again.
    stamp = model.stat().st_mtime_ns
    again = run(tmp_path, cfg, quiet=True)
    out = capsys.readouterr().out
    assert "Reusing the model trained by an earlier run" in out and "--retrain" in out
    assert "Dice on the unseen bottom half" in out
    assert again["reused"] == 1.0 and again["dice"] == numbers["dice"] and model.stat().st_mtime_ns == stamp
    assert not reusable_model(model, demo_config(max_steps=3, steps_per_epoch=1, batch_size=2))
