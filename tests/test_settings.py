"""Every config field's type and range is checked, named (dotted when nested) and, from YAML, the
file is named; the YAML reader refuses Python tags (issue 16, items 9 and 10)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.errors import ConfigError
from napari_madgnet.inference import InferenceConfig, PostprocessConfig
from napari_madgnet.training import TrainConfig
from napari_madgnet.training.config import AugmentConfig, DataConfig, LossConfig


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"max_steps": -5}, "max_steps must be a whole number >= 1"),
        ({"max_steps": 0}, "max_steps must be a whole number >= 1"),
        ({"epochs": 0}, "epochs must be a whole number >= 1"),
        ({"checkpoint_every": 0}, "checkpoint_every must be a whole number >= 1"),
        ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
        ({"lr": math.inf}, "lr must be a finite number > 0, got inf"),
        ({"lr": 0}, "lr must be a finite number > 0"),
        ({"warmup_steps": -1}, "warmup_steps must be a whole number >= 0"),
        ({"clip_value": -0.5}, "clip_value must be a finite number > 0, or null/None"),
        ({"foreground_fraction": 5}, "foreground_fraction must be a finite number >= 0 and <= 1"),
        ({"val_fraction": 1.0}, "val_fraction must be a finite number >= 0 and < 1"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"num_workers": -2}, "num_workers"),
        ({"early_stopping": 0}, "early_stopping"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"patch_size": "sixty-four"}, r"patch_size must be a whole number >= 32 .*got 'sixty-four' \(str\)"),
        ({"patch_size": 64.5}, "patch_size must be a whole number"),
        ({"patch_size": True}, "patch_size .*got True \\(bool\\)"),
        ({"max_steps": "5"}, "max_steps must be a whole number >= 1, or null/None, got '5' \\(str\\)"),
        ({"amp": "yes"}, "amp must be true or false"),
        ({"scales": []}, "scales must hold at least one"),
        ({"scales": [1.0, -1.0]}, "scales must be a list of numbers > 0"),
        ({"label_mode": "instances"}, "label_mode must be one of binary, multiclass"),
        ({"range_per": "slice"}, "range_per must be one of image, plane"),
        ({"device": "gpu"}, "device must be a name such as auto, cpu, cuda"),
        ({"backbone": "vgg16"}, "backbone is not known"),
        ({"normalization": "zscore"}, "normalization is not known"),
        ({"num_classes": 3}, "num_classes is 3, but binary labels train one class"),
        ({"augment": {"noise": -1}}, "augment.noise must be a finite number >= 0"),
        ({"augment": {"scale_range": [1.2, 0.8]}}, "augment.scale_range must be \\[smallest, largest\\]"),
        ({"augment": {"nois": 0.1}}, "augment: Unknown AugmentConfig setting.*nois"),
        ({"loss": {"stage_weights": [1, 1]}}, "loss.stage_weights must be a list of 4 numbers >= 0"),
        ({"loss": {"map_weight": 0, "distance_weight": 0, "boundary_weight": 0}}, "nothing would be learned"),
        ({"data": {"train_images": "imgs"}}, "data.train_masks is missing"),
    ],
)
def test_every_bad_train_setting_is_named(changes, words) -> None:
    with pytest.raises(ConfigError, match=words):
        TrainConfig.finetune(**changes)
    with pytest.raises(ConfigError, match=words):  # the same check from a dict / YAML
        TrainConfig.from_dict({**TrainConfig.finetune().to_dict(), **changes})


def test_validate_catches_settings_changed_after_construction() -> None:
    cfg = TrainConfig.finetune()
    cfg.checkpoint_every = 0  # a dataclass field can be assigned; validate() is the gate
    with pytest.raises(ConfigError, match="checkpoint_every"):
        cfg.validate()
    cfg = TrainConfig.finetune()
    cfg.augment.noise = math.nan
    with pytest.raises(ConfigError, match=r"augment\.noise"):
        cfg.validate()


def test_harmless_forms_are_normalised() -> None:
    cfg = TrainConfig(
        patch_size=np.int64(64),
        scales=[1, 1.5],
        lr=np.float32(0.001),
        out_dir=Path("runs/x"),
        augment={"scale_range": [0.8, 1.25]},
        backbone="Res2Net",
    )
    assert cfg.patch_size == 64 and type(cfg.patch_size) is int
    assert cfg.scales == (1.0, 1.5) and all(type(s) is float for s in cfg.scales)
    assert type(cfg.lr) is float and cfg.out_dir == str(Path("runs/x"))
    assert isinstance(cfg.augment, AugmentConfig) and cfg.augment.scale_range == (0.8, 1.25)
    assert cfg.backbone == "res2net50_v1b_26w_4s"
    assert TrainConfig(epochs=3.0).epochs == 3  # a whole float, as YAML may write it


def test_parts_check_themselves() -> None:
    with pytest.raises(ConfigError, match="brightness"):
        AugmentConfig(brightness=2)
    with pytest.raises(ConfigError, match="boundary_threshold"):
        LossConfig(boundary_threshold=0)
    with pytest.raises(ConfigError, match="val_images"):
        DataConfig(val_masks="m")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tile_size": "big"}, "tile_size must be a whole number >= 32, or null/None .*got 'big' \\(str\\)"),
        ({"overlap": math.nan}, "overlap must be a finite number >= 0 and < 1"),
        ({"scale": 0}, "scale must be a finite number > 0"),
        ({"scale": math.inf}, "scale"),
        ({"auto_tile_factor": -1}, "auto_tile_factor"),
        ({"channel": -1}, "channel must be a whole number >= 0, or null/None"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"mixed_precision": 1}, "mixed_precision must be true or false"),
        ({"range_per": "stack"}, "range_per must be one of image, plane, or null/None"),
        ({"device": "cuda:x"}, "device"),
        ({"normalization": {"method": "percentile", "low": 50, "high": 10}}, "normalization is not usable"),
        ({"normalization": {"method": "percentile", "min_snr": -1}}, "min_snr"),
        ({"postprocess": {"threshold": "half"}}, "postprocess.threshold must be a finite number >= 0"),
        ({"postprocess": {"min_size": -3}}, "postprocess.min_size must be a whole number >= 0"),
        ({"postprocess": {"fill_hole": True}}, "postprocess: Unknown PostprocessConfig setting.*fill_hole"),
    ],
)
def test_every_bad_inference_setting_is_named(changes, words) -> None:
    with pytest.raises(ConfigError, match=words):
        InferenceConfig.from_dict(changes)


def test_inference_settings_round_trip_plain() -> None:
    cfg = InferenceConfig(scale=np.float64(0.5), tile_size=np.int32(128), postprocess={"threshold": 0.3})
    assert type(cfg.tile_size) is int and isinstance(cfg.postprocess, PostprocessConfig)
    data = cfg.to_dict()
    assert type(data["scale"]) is float and data["postprocess"]["threshold"] == 0.3
    assert InferenceConfig.from_dict(data) == cfg


# ---------------------------------------------------------------------------------------------- YAML
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("patch_size: sixty-four\n", "patch_size must be a whole number >= 32"),
        ("max_steps: '5'\n", "max_steps must be a whole number >= 1, or null/None, got '5'"),
        ("epochs: 0\n", "epochs must be a whole number >= 1, got 0"),
        ("augment:\n  noise: -1\n", "augment.noise must be"),
        ("lr: [1, 2\n", "line 2, column 1\\): not valid YAML"),
        ("- 1\n- 2\n", "a recipe file is a mapping of settings .*got list"),
        ("bogus: 1\n", "Unknown TrainConfig setting.*bogus"),
    ],
)
def test_recipe_errors_name_the_file_and_key(tmp_path, text, words) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as info:
        TrainConfig.from_yaml(path)
    assert str(info.value).startswith(str(path))


def test_python_tags_are_refused_not_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    touch = f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]"
    path.write_text(f"lr: {touch}\n")
    with pytest.raises(ConfigError, match=r"Python tag .*refused") as info:
        TrainConfig.from_yaml(path)
    assert str(path) in str(info.value) and "line 1" in str(info.value)
    assert not marker.exists()


def test_binary_and_empty_files(tmp_path) -> None:
    binary = tmp_path / "b.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not a text file"):
        TrainConfig.from_yaml(binary)
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert TrainConfig.from_yaml(empty) == TrainConfig()
    with pytest.raises(FileNotFoundError, match="no such recipe file"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_scientific_notation_is_a_number(tmp_path) -> None:
    """PyYAML's YAML 1.1 reads ``1e-4`` as a string; recipes mean the number (YAML 1.2)."""
    path = tmp_path / "r.yaml"
    path.write_text("lr: 1e-4\nweight_decay: 5E-5\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.lr == 1e-4 and cfg.weight_decay == 5e-5
    path.write_text("lr: '1e-4'\n")  # quoted: a text, which is a mistake to point out
    with pytest.raises(ConfigError, match="lr must be a finite number > 0, got '1e-4'"):
        TrainConfig.from_yaml(path)


def test_inference_yaml_names_the_file(tmp_path) -> None:
    path = tmp_path / "predict.yaml"
    path.write_text("tile_size: big\n")
    with pytest.raises(ConfigError, match=f"{path.name}: tile_size must be a whole number"):
        InferenceConfig.from_yaml(path)
    path.write_text("geometry: tiles\ntile_size: 128\npostprocess: {threshold: 0.4}\n")
    cfg = InferenceConfig.from_yaml(path)
    assert cfg.tile_size == 128 and cfg.postprocess.threshold == 0.4


def test_shipped_recipes_still_load() -> None:
    for path in sorted((Path(__file__).parents[1] / "src_train" / "configs").glob("*.yaml")):
        cfg = TrainConfig.from_yaml(path)
        assert cfg.epochs >= 1 and cfg.lr > 0, path


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_names_the_file_and_key_and_runs_nothing(tmp_path, capsys) -> None:
    import tifffile

    from napari_madgnet.cli import main

    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((64, 64), np.uint8))
    predict_cfg = tmp_path / "predict.yaml"
    predict_cfg.write_text("tile_size: big\n")
    code = main(
        [
            "predict",
            str(image),
            "-m",
            "no-such-model",
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(predict_cfg),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{predict_cfg}: tile_size must be a whole number >= 32" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()

    marker = tmp_path / "ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"lr: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    )
    args = ["finetune", "--image", str(image), "--labels", str(image), "--out", str(tmp_path / "m.pt")]
    assert main([*args, "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{recipe} (line 1, column 5): it uses a Python tag" in err and not marker.exists()
    recipe.write_text("epochs: 0\n")
    assert main([*args, "--config", str(recipe)]) == 2
    assert f"{recipe}: epochs must be a whole number >= 1, got 0" in capsys.readouterr().err
    for steps in ("-5", "0"):
        assert main([*args, "--steps", steps]) == 2
        assert "steps must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
