"""Checkpoints: released files, bare/prefixed state dicts, the project format, bad files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_madgnet.model import (
    CheckpointError,
    CheckpointMismatchError,
    MADGNet,
    NotACheckpointError,
    UnsafeCheckpointError,
    load_model,
    read_checkpoint_info,
    save_model,
)

from .official import TOLERANCE, make_input, official_state, reference, relative_error


@pytest.fixture(scope="module")
def released_file(tmp_path_factory) -> Path:
    """A file shaped like the released ``model_weight(EPOCH 200).pth.tar``, DCT buffers included."""
    path = tmp_path_factory.mktemp("released") / "model_weight(EPOCH 200).pth.tar"
    torch.save({"model_state_dict": official_state("resnest50"), "current_epoch": 200}, path)
    return path


def test_released_checkpoint_loads_and_matches_reference(released_file: Path) -> None:
    model = load_model(released_file)
    assert not model.training
    assert model.config.backbone == "resnest50" and model.config.num_classes == 1
    assert model.checkpoint_info["provenance"]["current_epoch"] == 200
    with torch.no_grad():
        out = model(make_input((1, 3, 256, 256)))
    assert relative_error(out, reference()["resnest50/test/rgb256"]) <= TOLERANCE


def test_read_checkpoint_info_of_released_file(released_file: Path) -> None:
    info = read_checkpoint_info(released_file)
    assert info["config"]["backbone"] == "resnest50"
    assert info["config"]["num_classes"] == 1
    assert info["config"]["scale_branches"] == 3
    assert info["config"]["min_channel"] == 32
    assert info["config"]["frequency_branches"] == 16
    assert info["preprocessing"] == {"normalization": "scale255", "input_size": 352, "channels": 3}
    assert info["provenance"]["current_epoch"] == 200


@pytest.mark.parametrize("backbone", ["res2net50_v1b_26w_4s", "resnet50"])
def test_encoder_is_inferred_from_keys(backbone: str) -> None:
    model = load_model(official_state(backbone, with_dct=False))
    assert model.config.backbone == backbone


def test_save_load_round_trip_is_identical(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MADGNet("resnet50", num_classes=2, min_channel=48).eval()
    metadata = {
        "preprocessing": {"input_size": 256, "channels": 1},
        "provenance": {"dataset": "toy", "metrics": {"dsc": np.float64(0.5)}, "epochs": 3},
        "note": "extra keys go to provenance",
    }
    path = save_model(model, tmp_path / "sub" / "toy.pt", metadata)
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["toy.pt"]

    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["format"] == "napari-madgnet" and raw["format_version"] == 1
    assert not any("dct_weight" in k for k in raw["state_dict"])
    assert raw["preprocessing"] == {"normalization": "scale255", "input_size": 256, "channels": 1}
    assert raw["provenance"]["metrics"]["dsc"] == 0.5
    assert raw["provenance"]["note"] == "extra keys go to provenance"
    assert "package_version" in raw["provenance"] and "saved_at" in raw["provenance"]

    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.checkpoint_info["preprocessing"]["input_size"] == 256
    info = read_checkpoint_info(path)
    assert info["config"] == model.config.to_dict()
    assert info["provenance"]["dataset"] == "toy"
    x = torch.rand(1, 1, 96, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_saved_file_is_about_half_a_released_one(tmp_path: Path, released_file: Path) -> None:
    path = save_model(load_model(released_file), tmp_path / "m.pt")
    assert path.stat().st_size < 0.6 * released_file.stat().st_size


def test_save_refuses_objects_that_need_code(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not allowed"):
        save_model(MADGNet("resnet50"), tmp_path / "m.pt", {"provenance": {"x": object()}})
    assert list(tmp_path.iterdir()) == []


def test_dataparallel_prefix_is_accepted() -> None:
    state = {f"module.{k}": v for k, v in official_state("resnet50", with_dct=False).items()}
    model = load_model({"model_state_dict": state, "current_epoch": 1})
    assert model.config.backbone == "resnet50"


def test_num_classes_is_inferred() -> None:
    state = MADGNet("resnet50", num_classes=3).state_dict()
    assert load_model(state).config.num_classes == 3


def test_mismatched_checkpoint_names_the_keys() -> None:
    state = official_state("resnet50", with_dct=False)
    del state["decoder_stage2.conv1.0.bias"]
    state["decoder_stage2.extra.weight"] = torch.zeros(1)
    state["skip_connection1.0.weight"] = torch.zeros(64, 1000, 1, 1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model(state)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "1 missing key(s): decoder_stage2.conv1.0.bias" in message
    assert "1 unexpected key(s): decoder_stage2.extra.weight" in message
    assert "skip_connection1.0.weight (64, 1000, 1, 1) vs model (64, 1024, 1, 1)" in message
    assert info.value.missing == ["decoder_stage2.conv1.0.bias"]


def test_many_mismatches_are_summarised() -> None:
    state = official_state("resnest50", with_dct=False)
    state = {k: v for k, v in state.items() if not k.startswith("decoder_stage4.")}
    with pytest.raises(CheckpointMismatchError, match=r"missing key\(s\): .*\(\+\d+ more\)"):
        load_model(state)


def test_backbone_argument_must_agree() -> None:
    with pytest.raises(CheckpointMismatchError, match="resnet50 encoder, not resnest50"):
        load_model(official_state("resnet50", with_dct=False), backbone="resnest50")


def test_foreign_state_dict_is_a_mismatch() -> None:
    with pytest.raises(CheckpointMismatchError, match="missing key"):
        load_model({"fc.weight": torch.zeros(2, 2)})


def test_wrong_dct_buffers_are_refused() -> None:
    state = official_state("resnest50")
    key = "decoder_stage3.attention_layer.multi_frequency_branches.1.0.dct_weight_5"
    state[key] = state[key] + 0.1
    with pytest.raises(CheckpointMismatchError, match="DCT filters differ"):
        load_model(state)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"x": _RunsCode(marker)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="not a safe checkpoint"):
        load_model(path)
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint_info(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["text", "empty", "zip", "list", "npy"])
def test_non_checkpoint_files_give_a_clear_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"file.{kind}"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("a.txt", "x")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    else:
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    with pytest.raises(NotACheckpointError):
        load_model(path)


def test_missing_file_and_newer_format(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pt")
    path = tmp_path / "future.pt"
    torch.save({"format": "napari-madgnet", "format_version": 99, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(path)
    assert not os.path.exists(tmp_path / "nope.pt")


# ------------------------------------------------------------ harmless extras, diverged weights
def test_numpy_scalars_beside_the_weights_are_accepted(tmp_path: Path) -> None:
    """Training scripts often store a best metric as np.float64: data, not code (issue 12.5)."""
    path = tmp_path / "script.pth"
    extras = {"best_dice": np.float64(0.91), "epoch": np.int64(7), "dtype": np.dtype("float32")}
    torch.save({"state_dict": official_state("resnet50", with_dct=False), **extras}, path)
    model = load_model(path)
    assert model.config.backbone == "resnet50"
    assert read_checkpoint_info(path)["config"]["backbone"] == "resnet50"


def test_other_objects_are_still_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "arrays.pth"
    torch.save({"state_dict": official_state("resnet50", with_dct=False), "hist": np.zeros(3)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "weights_only=False" in message and "torch.save(ckpt['state_dict']" in message


def test_nan_weights_are_refused_on_load_and_listed_with_the_problem(tmp_path: Path, monkeypatch) -> None:
    from napari_madgnet.model import DivergedWeightsError
    from napari_madgnet.registry import list_models

    state = official_state("resnet50", with_dct=False)
    key = "decoder_stage1.conv1.0.weight" if "decoder_stage1.conv1.0.weight" in state else next(iter(state))
    state[key] = state[key].clone()
    state[key].view(-1)[3] = float("nan")
    models = tmp_path / "models"
    models.mkdir()
    path = models / "diverged.pt"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(DivergedWeightsError, match=r"NaN or infinite weights .*diverged training\?"):
        load_model(path)
    with pytest.raises(DivergedWeightsError, match=key):
        read_checkpoint_info(path)
    state[key].view(-1)[3] = float("inf")
    with pytest.raises(DivergedWeightsError):
        load_model(state)
    monkeypatch.setenv("MADGNET_MODELS_DIR", str(models))
    (entry,) = list_models()
    assert not entry.available and "diverged training?" in entry.problem
