"""``madgnet predict`` and ``madgnet models`` end to end on real files with a real saved MADGNet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import zarr
from inference_helpers import rng_image

from napari_madgnet.cli import main
from napari_madgnet.cli.predict import shard_files
from napari_madgnet.sample_data import load_nuclei

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    """One image per supported format, all small."""
    d = tmp_path / "images"
    d.mkdir()
    iio.imwrite(d / "rgb.png", rng_image((64, 64, 3), np.uint8, seed=1))
    iio.imwrite(d / "grey.bmp", rng_image((48, 64), np.uint8, seed=2))
    iio.imwrite(d / "photo.jpg", rng_image((64, 56, 3), np.uint8, seed=3))
    tifffile.imwrite(d / "u16.tif", rng_image((64, 64), np.uint16, seed=4))
    np.save(d / "float.npy", rng_image((40, 48), np.float32, seed=5))
    z = zarr.open_array(str(d / "stack.zarr"), mode="w", shape=(2, 48, 48), chunks=(1, 48, 48), dtype="uint8")
    z[...] = rng_image((2, 48, 48), np.uint8, seed=6)
    (d / "readme.txt").write_text("not an image, ignored in folders")
    return d


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_predict_folder_every_format(image_folder, checkpoint, tmp_path, capsys):
    before = _snapshot(image_folder)
    out = tmp_path / "out"
    code = main(
        ["predict", str(image_folder), "-m", str(checkpoint), "-o", str(out), "--save-probabilities", "-q"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "6/6 image(s) segmented, 0 failed" in captured.out
    assert _snapshot(image_folder) == before  # inputs untouched
    shapes = {
        "rgb": (64, 64),
        "grey": (48, 64),
        "photo": (64, 56),
        "u16": (64, 64),
        "float": (40, 48),
        "stack": (2, 48, 48),
    }
    for stem, shape in shapes.items():
        mask = tifffile.imread(out / f"{stem}_mask.tif")
        prob = tifffile.imread(out / f"{stem}_probabilities.tif")
        assert mask.shape == shape and mask.dtype == np.uint8 and prob.shape == shape
        assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    (log,) = out.glob("madgnet-predict-*.json")
    record = json.loads(log.read_text())
    assert all(f["status"] == "ok" for f in record["files"])
    assert record["files"][0]["provenance"]["model"]["sha256"]


def test_predict_the_bundled_nuclei_sample_as_png_with_options(checkpoint, tmp_path, capsys):
    image, labels = load_nuclei()
    src = tmp_path / "nuclei.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "out"
    args = ["predict", str(src), "-m", str(checkpoint), "-o", str(out), "--format", "png", "-q"]
    args += [
        "--tile",
        "128",
        "--scale",
        "0.25",
        "--threshold",
        "0.4",
        "--fill-holes",
        "--min-size",
        "4",
        "--instances",
    ]
    assert main(args) == 0, capsys.readouterr().err
    mask = iio.imread(out / "nuclei_mask.png")
    assert mask.shape == image.shape == labels.shape


def test_existing_outputs_are_refused_unless_overwrite(image_folder, checkpoint, tmp_path, capsys):
    src = image_folder / "grey.bmp"
    out = tmp_path / "out"
    assert main(["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q"]) == 0
    target = out / "grey_mask.tif"
    stamp = target.stat().st_mtime_ns
    assert main(["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q"]) == 2  # before any work
    assert "exist already (" in (err := capsys.readouterr().err) and "--overwrite" in err
    assert target.stat().st_mtime_ns == stamp
    assert main(["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q", "--overwrite"]) == 0


def test_one_bad_file_does_not_stop_the_others(image_folder, checkpoint, tmp_path, capsys):
    (image_folder / "corrupt.tif").write_bytes(b"II*\x00garbage")
    np.save(image_folder / "nan.npy", np.full((40, 40), np.nan, np.float32))
    for name in ("photo.jpg", "rgb.png", "float.npy", "stack.zarr"):
        p = image_folder / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out = tmp_path / "out"
    code = main(["predict", str(image_folder), "-m", str(checkpoint), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED" in err and "corrupt.tif: cannot be read" in err
    assert "nan.npy: The image has no finite values" in err
    written = sorted(p.name for p in out.iterdir() if not p.name.endswith(".json"))
    assert written == ["grey_mask.tif", "u16_mask.tif"]  # the good ones, nothing for the bad ones


def test_wrong_channel_count_for_the_axes(tmp_path, checkpoint, capsys):
    src = tmp_path / "seven.tif"
    tifffile.imwrite(src, np.zeros((40, 40, 7), np.uint8))
    out = tmp_path / "out"
    assert main(["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q", "--axes", "YXC"]) == 1
    err = capsys.readouterr().err
    assert "7 channels" in err and "--channel" in err
    assert not (out / "seven_mask.tif").exists()
    assert (
        main(
            [
                "predict",
                str(src),
                "-m",
                str(checkpoint),
                "-o",
                str(out),
                "-q",
                "--axes",
                "YXC",
                "--channel",
                "6",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("empty_dir", "no images found"),
        ("not_a_checkpoint", "not a PyTorch checkpoint"),
        ("unknown_model", "Unknown model"),
        ("missing_input", "no such file"),
        ("no_gpu", "no CUDA GPU"),
    ],
)
def test_bad_invocations_exit_2_and_write_nothing(
    setup, words, image_folder, checkpoint, tmp_path, capsys, models_home
):
    inputs, model = [str(image_folder / "grey.bmp")], str(checkpoint)
    if setup == "empty_dir":
        (tmp_path / "empty").mkdir()
        inputs = [str(tmp_path / "empty")]
    elif setup == "not_a_checkpoint":
        model = str(image_folder / "u16.tif")
    elif setup == "unknown_model":
        model = "no-such-model"
    elif setup == "no_gpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        inputs += ["--device", "cuda"]
    else:
        inputs = [str(tmp_path / "nope.tif")]
    out = tmp_path / "out"
    assert main(["predict", *inputs, "-m", model, "-o", str(out), "-q"]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_predict_refuses_to_write_over_an_input(tmp_path, checkpoint, capsys):
    d = tmp_path / "d"
    d.mkdir()
    iio.imwrite(d / "a.png", rng_image((40, 40), np.uint8))
    tifffile.imwrite(d / "a_mask.tif", np.zeros((40, 40), np.uint8))  # an input named like an output
    assert main(["predict", str(d), "-m", str(checkpoint), "-o", str(d), "-q"]) == 2
    assert "would overwrite an input" in capsys.readouterr().err


def test_yaml_config_zarr_output_and_unknown_axes(tmp_path, checkpoint, capsys):
    src = tmp_path / "stack.npy"
    np.save(src, rng_image((2, 40, 40), np.uint16))
    cfg = tmp_path / "predict.yaml"
    cfg.write_text("normalization: minmax\npostprocess:\n  threshold: 0.3\n  instances: true\n")
    out = tmp_path / "out"
    args = ["predict", str(src), "-m", str(checkpoint), "-o", str(out), "-q", "--config", str(cfg)]
    assert main([*args, "--format", "zarr", "--min-size", "3"]) == 0, capsys.readouterr().err
    group = zarr.open_group(str(out / "stack_mask.zarr"), mode="r")
    assert group["mask"].shape == (2, 40, 40) and group["probabilities"].shape == (1, 2, 40, 40)
    used = group.attrs["provenance"]["config"]
    assert used["normalization"] == "minmax" and used["postprocess"] == {
        "threshold": 0.3,
        "fill_holes": False,
        "min_size": 3,
        "largest": False,
        "instances": True,
        "peak_height": 0.05,
        "boundary_barrier": 0.5,
        "head_weight": 0.5,
    }
    assert main([*args, "--axes", "QYX"]) == 2
    assert "Unknown axes 'QYX'" in capsys.readouterr().err


def test_models_list_and_add(checkpoint, models_home, capsys):
    assert main(["models", "list"]) == 0
    assert "No models" in capsys.readouterr().out
    assert main(["models", "add", str(checkpoint), "--name", "tiny", "--modality", "test"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "resnest50" in out and "ok" in out
    assert main(["models", "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "tiny" and entry["modality"] == "test"
    assert main(["models", "import-official", str(models_home.parent)]) == 1
    assert "No released checkpoints" in capsys.readouterr().err


def test_shard_files_partitions_the_list():
    files = list(range(11))
    shards = [shard_files(files, r, 3) for r in range(3)]
    assert sorted(x for s in shards for x in s) == files and all(len(s) in (3, 4) for s in shards)
    assert shard_files(files, 0, 1) == files
    with pytest.raises(ValueError, match="rank"):
        shard_files(files, 3, 3)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_share_the_files(image_folder, checkpoint, tmp_path):
    files = [image_folder / "grey.bmp", image_folder / "u16.tif"]
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "napari_madgnet",
        "predict",
        *map(str, files),
        "-m",
        str(checkpoint),
        "-o",
        str(out),
        "-q",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "grey_mask.tif").exists() and (out / "u16_mask.tif").exists()
    logs = sorted(out.glob("madgnet-predict-*-rank*.json"))
    assert len(logs) == 2
    assert sorted(len(json.loads(p.read_text())["files"]) for p in logs) == [1, 1]
