"""The main job runs end to end (a 2-step version; the full run is `bash scripts/demo.sh`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_madgnet.demo import demo_config, run
from napari_madgnet.io import read_image


def test_demo_writes_model_mask_and_overlay(tmp_path: Path, capsys) -> None:
    numbers = run(tmp_path, demo_config(max_steps=2, steps_per_epoch=1, batch_size=2), quiet=True)
    assert {"dice", "otsu_dice", "val_dice", "steps"} <= set(numbers)
    assert 0.0 <= numbers["dice"] <= 1.0 and 0.85 < numbers["otsu_dice"] < 0.9
    mask = read_image(tmp_path / "bottom_half_mask.tif")
    assert mask.shape == (256, 512) and set(np.unique(mask)) <= {0, 1}
    assert (tmp_path / "bottom_half_overlay.png").stat().st_size > 10_000
    assert (tmp_path / "nuclei_model.pt").is_file()
    assert "Dice on the unseen bottom half" in capsys.readouterr().out


def test_a_second_demo_run_reuses_its_model_and_prints_the_dice_again(tmp_path: Path, capsys) -> None:
    cfg = demo_config(max_steps=1, steps_per_epoch=1, batch_size=2)
    first = run(tmp_path, cfg, quiet=True)
    model = tmp_path / "nuclei_model.pt"
    stamp = model.stat().st_mtime_ns
    second = run(tmp_path, cfg, quiet=True)
    out = capsys.readouterr().out
    assert "Reusing the model trained by an earlier run" in out and "--retrain" in out
    assert out.count("Dice on the unseen bottom half") == 2
    assert second["reused"] == 1.0 and second["dice"] == first["dice"] and model.stat().st_mtime_ns == stamp
    assert run(tmp_path, cfg, quiet=True, retrain=True)["reused"] == 0.0  # --retrain: a new model
    assert model.stat().st_mtime_ns != stamp
    from napari_madgnet.demo import reusable_model

    assert not reusable_model(model, demo_config(max_steps=2, steps_per_epoch=1, batch_size=2))
