"""The main job runs end to end (a 2-step version; the full run is `bash scripts/demo.sh`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_madgnet.demo import demo_config, run
from napari_madgnet.io import read_image


def test_demo_writes_model_mask_and_overlay(tmp_path: Path, capsys) -> None:
    numbers = run(tmp_path, demo_config(max_steps=2, steps_per_epoch=1, batch_size=2), quiet=True)
    assert {"dice", "otsu_dice", "val_dice", "steps", "object_f1_watershed", "pq_components"} <= set(numbers)
    assert 0.0 <= numbers["pq_watershed"] <= numbers["object_f1_watershed"] <= 1.0
    assert 0.0 <= numbers["dice"] <= 1.0 and 0.85 < numbers["otsu_dice"] < 0.9
    mask = read_image(tmp_path / "bottom_half_mask.tif")
    assert mask.shape == (256, 512) and set(np.unique(mask)) <= {0, 1}
    assert (tmp_path / "bottom_half_overlay.png").stat().st_size > 10_000
    assert (tmp_path / "nuclei_model.pt").is_file()
    printed = capsys.readouterr().out
    assert "Dice on the unseen bottom half" in printed and "watershed on the distance head" in printed
