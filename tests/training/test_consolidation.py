"""The faults of issue 11, each made a test: one plan for the training length, one predictor for
validation and deployment, stopping keeps the model, user errors are messages, no global state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_madgnet.cli import main
from napari_madgnet.training import TrainConfig, data_from_arrays, finetune, train
from napari_madgnet.training import engine as engine_mod

from .conftest import blobs


def _write_pair(folder: Path, shape=(96, 96)) -> tuple[Path, Path]:
    import tifffile

    image, labels = blobs(shape)
    tifffile.imwrite(folder / "i.tif", image)
    tifffile.imwrite(folder / "l.tif", labels)
    return folder / "i.tif", folder / "l.tif"


# ----------------------------------------------------------------------------------- 1. length
def test_steps_are_steps_whatever_the_preset() -> None:
    """`--steps 400` trained 200: the preset's 20 epochs x 10 steps capped max_steps."""
    preset = TrainConfig.finetune()
    assert preset.planned_steps() == 200
    assert preset.with_length(steps=400).planned_steps() == 400
    assert preset.with_length(steps=7, validate_every=3).planned_steps() == 7
    assert preset.with_length(epochs=3, validate_every=5).planned_steps() == 15
    # a recipe whose epochs depend on the data still runs exactly the steps asked for
    assert TrainConfig.benchmark().with_length(steps=50).planned_steps() == 50
    from napari_madgnet.errors import ConfigError

    for bad in ({"steps": 0}, {"steps": -5}, {"epochs": 0}, {"validate_every": 0}, {"steps": 2, "epochs": 2}):
        with pytest.raises(ConfigError):
            preset.with_length(**bad)


def test_cli_finetune_trains_exactly_the_steps_asked_for(tmp_path, models_home, capsys) -> None:
    image, labels = _write_pair(tmp_path)
    args = ["finetune", "--image", str(image), "--labels", str(labels), "--init", "scratch"]
    args += ["--backbone", "resnet50", "--patch-size", "64", "--batch-size", "2", "--steps", "3"]
    args += ["--validate-every", "2", "--name", "three-steps", "--device", "cpu"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "Finished after 3 step(s)" in out and "three-steps" in out
    assert "3/3" in err  # the bar counts steps, not per-mille
    log = (models_home / "three-steps_run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 3
    assert (models_home / "three-steps.pt").is_file()


# ------------------------------------------------------------------------------ 3. one predictor
def test_validation_dice_is_the_dice_of_what_predict_gives(tmp_path, tiny_cfg) -> None:
    """The best model is chosen by the deployment predictor: recomputing its validation Dice with
    ``segment`` (engine, runner, one tiler, ``metrics.dice``) gives the same number."""
    from napari_madgnet.inference import InferenceConfig, segment
    from napari_madgnet.metrics import dice

    image, labels = blobs((128, 96))
    cfg = tiny_cfg.replace(max_steps=2, steps_per_epoch=1)
    data = data_from_arrays(image, labels, cfg)
    result = train(cfg, data, out_dir=tmp_path / "run")
    val = data.val[0]
    again = segment(val.image, result.model, InferenceConfig(axes="CYX", normalization="none", device="cpu"))
    assert result.best["dice"] == pytest.approx(dice(np.asarray(again.mask) > 0, val.target[0] > 0), abs=1e-9)


# ----------------------------------------------------------------------------- 5. stop = keep
def test_ctrl_c_keeps_the_best_model_and_names_the_run_folder(tmp_path) -> None:
    """SIGINT during `madgnet finetune`: exit 130, the model saved where asked, the run folder named."""
    image, labels = _write_pair(tmp_path)
    out = tmp_path / "stopped.pt"
    env = dict(os.environ, MADGNET_MODELS_DIR=str(tmp_path / "models"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "napari_madgnet", "finetune", "--image", str(image), "--labels", str(labels)]
    cmd += ["--init", "scratch", "--backbone", "resnet50", "--patch-size", "64", "--batch-size", "2"]
    cmd += ["--steps", "500", "--validate-every", "1", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "stopped_run" / "train_log.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "stopping fine-tuning after the current step" in stderr
    assert out.is_file() and "Stopped after" in stdout and str(tmp_path / "stopped_run") in stdout
    steps = log.read_text().count("\n")
    assert steps < 500
    from napari_madgnet.model import read_checkpoint_info

    assert read_checkpoint_info(out)["provenance"]["validation"]["dice"] >= 0


def test_sigterm_stops_train_too(tmp_path) -> None:
    import imageio.v3 as iio

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for k in range(2):
        image, labels = blobs((64, 64), seed=k)
        iio.imwrite(tmp_path / "images" / f"c{k}.png", image)
        iio.imwrite(tmp_path / "masks" / f"c{k}.png", ((labels > 0) * 255).astype(np.uint8))
    cfg = TrainConfig.benchmark(
        init="scratch", backbone="resnet50", patch_size=64, scales=(1.0,), batch_size=2, device="cpu"
    ).with_length(steps=500, validate_every=1)
    cfg.data.train_images, cfg.data.train_masks = str(tmp_path / "images"), str(tmp_path / "masks")
    cfg.to_yaml(tmp_path / "recipe.yaml")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "napari_madgnet", "train", "--config", str(tmp_path / "recipe.yaml")]
    proc = subprocess.Popen(
        [*cmd, "--out", str(run)],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not ((run / "train_log.jsonl").is_file() and (run / "train_log.jsonl").read_text().count("\n")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert (run / "model.pt").is_file() and (run / "last_state.pt").is_file() and str(run) in stdout


# -------------------------------------------------------------------------- 6. one size check
def test_small_image_trains_without_validation_and_says_so(tiny_cfg) -> None:
    """40 x 48: the patch check said "use 32", then the split refused 32."""
    image, labels = blobs((40, 48), n=3)
    cfg = tiny_cfg.replace(patch_size=32)
    data = data_from_arrays(image, labels, cfg)
    assert data.val == [] and "too small to hold out a validation part" in data.note
    assert data.train[0].shape == (40, 48)
    from napari_madgnet.training.data import DataError

    with pytest.raises(DataError, match="use a patch size of 32 or smaller"):
        data_from_arrays(image, labels, cfg.replace(patch_size=64))
    result = train(cfg.replace(max_steps=1), data)
    assert result.best == {} and result.steps == 1


def test_patch_check_names_the_part_left_after_holding_out_validation(tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    from napari_madgnet.training.data import DataError

    with pytest.raises(DataError, match=r"96 x 96 after holding out the validation part.*or smaller"):
        data_from_arrays(image, labels, tiny_cfg.replace(patch_size=128, val_fraction=0.2))


# ---------------------------------------------------------------------------- 7. user errors
def test_training_error_is_a_message_in_the_cli(tmp_path, models_home, monkeypatch, capsys) -> None:
    real = engine_mod.esdm_loss

    def diverged(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        return loss * float("nan"), parts

    monkeypatch.setattr(engine_mod, "esdm_loss", diverged)
    image, labels = _write_pair(tmp_path)
    args = ["finetune", "--image", str(image), "--labels", str(labels), "--init", "scratch"]
    args += ["--backbone", "resnet50", "--patch-size", "64", "--batch-size", "2", "--steps", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "loss became nan" in err and "Lower the learning rate" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 8. global state
def test_training_leaves_the_process_random_state_alone(tiny_cfg) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    first = train(tiny_cfg, data)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    second = train(tiny_cfg, data)  # and a run is still reproducible
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_model_pickers_list_without_opening_checkpoints(tmp_path, models_home, monkeypatch) -> None:
    from napari_madgnet import registry
    from napari_madgnet.model import MADGNet, save_model

    models_home.mkdir(parents=True)
    save_model(MADGNet("resnet50"), models_home / "a.pt")
    registry._memory_cache.clear()

    def boom(path):
        raise AssertionError("a checkpoint was opened to list names")

    import napari_madgnet.model as model_pkg

    monkeypatch.setattr(model_pkg, "read_checkpoint_info", boom)
    assert [e.name for e in registry.list_models(read=False)] == ["a"]


# ------------------------------------------------------------------ 4. naming and registering
def test_a_model_saved_elsewhere_is_registered_by_name(tmp_path, models_home, tiny_cfg) -> None:
    from napari_madgnet.registry import RegistryError, resolve_model
    from napari_madgnet.training.finetune import plan_output

    image, labels = blobs()
    target = tmp_path / "elsewhere" / "m.pt"
    result = finetune(image, labels, config=tiny_cfg.replace(max_steps=1), out=target)
    assert result.model_name == "m" and resolve_model("m").path == target.resolve()
    with pytest.raises(RegistryError, match="not allowed"):
        plan_output(name="../evil")
    with pytest.raises(FileExistsError, match="exists"):
        plan_output(out=tmp_path / "elsewhere" / "m.pt")
