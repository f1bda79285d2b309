"""The three sub-commands: registered, clear errors, and evaluate's report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_madgnet.cli import main

from .conftest import blobs


def test_commands_are_registered_with_help_and_defaults(capsys) -> None:
    for cmd in ("train", "finetune", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            main([cmd, "--help"])
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--from" in out and "--steps" in out and "(default: 200)" in out  # finetune's help
    assert "--resume" in out and "./evaluation" in out  # train's and evaluate's


def test_finetune_refuses_a_model_of_another_encoder(tmp_path, capsys) -> None:
    import tifffile

    from napari_madgnet.model import MADGNet, save_model

    image, labels = blobs()
    tifffile.imwrite(tmp_path / "i.tif", image)
    tifffile.imwrite(tmp_path / "l.tif", labels)
    save_model(MADGNet("resnet50"), tmp_path / "r50.pt")
    code = main(
        [
            "finetune",
            "--image",
            str(tmp_path / "i.tif"),
            "--labels",
            str(tmp_path / "l.tif"),
            "--from",
            str(tmp_path / "r50.pt"),
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "resnet50 encoder" in err and "--backbone" in err
    tifffile.imwrite(tmp_path / "f.tif", labels.astype(np.float32))
    assert main(["finetune", "--image", str(tmp_path / "i.tif"), "--labels", str(tmp_path / "f.tif")]) == 2
    assert "not integers" in capsys.readouterr().err


def test_evaluate_writes_csv_json_and_figures(tmp_path, capsys) -> None:
    import imageio.v3 as iio

    from napari_madgnet.model import MADGNet, save_model

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for k in range(2):
        image, labels = blobs((64, 64), seed=k)
        iio.imwrite(tmp_path / "data" / "images" / f"c{k}.png", image)
        iio.imwrite(tmp_path / "data" / "masks" / f"c{k}.png", ((labels > 0) * 255).astype(np.uint8))
    save_model(
        MADGNet("resnet50"),
        tmp_path / "m.pt",
        {"preprocessing": {"normalization": "scale255", "input_size": None}},
    )
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5, "val": {"dice": 0.4}}\n')
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "m.pt"),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--train-log",
                str(log),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and set(summary["paper_metrics"]) >= {"DSC", "E-Measure"}
    assert (out / "per_image.csv").read_text().count("\n") == 3
    for name in ("dice_histogram.png", "overlay_worst.png", "overlay_best.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 1000
    bar = capsys.readouterr().err.split("\r")[-1]  # the bar's last state counts images
    assert "evaluating: 100%" in bar and "2/2" in bar and "image" in bar and "c1.png: Dice" in bar


def test_progress_bar_counts_steps_appears_with_the_first_event_and_quiet_keeps_warnings(capsys) -> None:
    from napari_madgnet.cli._common import tqdm_callback
    from napari_madgnet.jobs import Progress

    update, close = tqdm_callback("fine-tuning")
    assert capsys.readouterr().err == ""  # a run refused before its first step shows no empty bar
    update(Progress(0.3, "step 3/10", {"step": 3, "total_steps": 10, "loss": 0.5}))
    update(Progress(0.3, "step 3/10: validating...", {"phase": "validating"}))
    close()
    err = capsys.readouterr().err
    assert "3/10 [" in err and ("step/s" in err or "s/step" in err) and "loss 0.5000" in err
    assert err.rstrip().endswith("step 3/10: validating...]")
    assert "%/s" not in err and "?‰" not in err
    update, close = tqdm_callback("fine-tuning", disable=True)
    update(Progress(0.1, "step 1/10", {"step": 1, "total_steps": 10, "loss": 0.5}))
    update(Progress(0.1, "labels without background", {"warning": True}))
    close()
    assert capsys.readouterr().err == "note: labels without background\n"


def test_train_from_a_yaml_recipe_with_folders(tmp_path) -> None:
    import imageio.v3 as iio

    from napari_madgnet.model import load_model
    from napari_madgnet.training import TrainConfig

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for k in range(3):
        image, labels = blobs((64, 64), seed=k)
        iio.imwrite(tmp_path / "images" / f"c{k}.png", image)
        iio.imwrite(tmp_path / "masks" / f"c{k}_mask.png", ((labels > 0) * 255).astype(np.uint8))
    cfg = TrainConfig.benchmark(
        init="scratch",
        backbone="resnet50",
        patch_size=64,
        scales=(1.0,),
        batch_size=2,
        max_steps=1,
        device="cpu",
    )
    cfg.data.train_images, cfg.data.train_masks = str(tmp_path / "images"), str(tmp_path / "masks")
    cfg.to_yaml(tmp_path / "recipe.yaml")
    assert main(["train", "--config", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")]) == 0
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.checkpoint_info["preprocessing"]["input_size"] == 64
    assert (tmp_path / "run" / "train_log.jsonl").read_text().count("\n") == 1
