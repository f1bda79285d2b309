from __future__ import annotations

import pytest

from napari_madgnet.training import TrainConfig


def test_presets_follow_the_recipes() -> None:
    b = TrainConfig.benchmark()
    assert (b.lr, b.batch_size, b.epochs, b.clip_value) == (1e-4, 16, 200, 0.5)
    assert b.scaled_sizes() == [256, 352, 448]
    f = TrainConfig.finetune()
    assert f.lr > b.lr and f.augment.rot90 and f.early_stopping
    assert TrainConfig.finetune(from_model="m.pt").lr < b.lr  # continuing a trained model: gentler


def test_yaml_round_trip(tmp_path) -> None:
    cfg = TrainConfig.finetune(patch_size=128, scales=(1.0, 1.5))
    cfg.to_yaml(tmp_path / "r.yaml")
    again = TrainConfig.from_yaml(tmp_path / "r.yaml")
    assert again == cfg


def test_bad_settings_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="label_mode"):
        TrainConfig(label_mode="weird")
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(patch_size=8)
    (tmp_path / "r.yaml").write_text("lr: 0.1\nbogus: 1\n")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_yaml(tmp_path / "r.yaml")
