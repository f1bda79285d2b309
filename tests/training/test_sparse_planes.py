"""A few annotated planes of a stack (issue 18): validation on whole held-out planes, named, and
the end-of-run report "Dice on held-out planes: X, a threshold gets Y" in the API and the CLI."""

from __future__ import annotations

import re

import numpy as np

from napari_madgnet.cli import main
from napari_madgnet.training import data_from_arrays, finetune
from napari_madgnet.training.data import plane_names_text
from napari_madgnet.training.finetune import describe_result

from .conftest import blobs


def sparse_stack(n: int, annotated: list[int], shape=(96, 96)) -> tuple[np.ndarray, np.ndarray]:
    """``n`` planes of discs on noise (each its own seed); labels only on ``annotated`` planes."""
    pairs = [blobs(shape, seed=z) for z in range(n)]
    image = np.stack([p[0] for p in pairs])
    labels = np.zeros((n, *shape), np.uint16)
    for z in annotated:
        labels[z] = pairs[z][1]
    return image, labels


def _planes(items) -> list[tuple[int, ...]]:
    return [it.plane for it in items]


def test_three_or_more_annotated_planes_hold_out_whole_planes_named_0_based(tiny_cfg) -> None:
    image, labels = sparse_stack(7, [1, 3, 5])
    data = data_from_arrays(image, labels, tiny_cfg)
    assert _planes(data.val) == [(3,)] and _planes(data.train) == [(1,), (5,)]  # the middle one
    assert data.heldout == ["Z 3"]
    assert "holds out 1 of the 3 annotated planes: Z 3 (0-based" in data.heldout_note
    assert "trains on Z 1 and 5" in data.heldout_note
    assert "holds out" not in data.note  # information, not a warning

    image, labels = sparse_stack(9, list(range(1, 9)), shape=(64, 64))
    data = data_from_arrays(image, labels, tiny_cfg)  # 8 planes, validation share 0.2: 2 planes
    assert data.heldout == ["Z 3", "Z 7"] and len(data.train) == 6
    assert "holds out 2 of the 8 annotated planes: Z 3 and 7" in data.heldout_note


def test_fewer_than_three_planes_and_2d_images_keep_the_usual_split(tiny_cfg) -> None:
    image, labels = sparse_stack(4, [0, 2])
    data = data_from_arrays(image, labels, tiny_cfg)
    assert len(data.val) == 1 and len(data.train) == 1 and data.heldout == [] and data.heldout_note == ""
    assert "Only 2 planes are annotated" in data.note and "Annotate 4 or more planes" in data.note
    image2d, labels2d = blobs((128, 96))
    data = data_from_arrays(image2d, labels2d, tiny_cfg)  # rows of the one plane
    assert data.heldout == [] and data.val[0].plane is None
    assert data.train[0].image.shape[1] + data.val[0].image.shape[1] == 128


def test_time_series_of_stacks_name_both_axes(tiny_cfg) -> None:
    image, labels = sparse_stack(6, [0, 1, 2, 3, 4, 5], shape=(64, 64))
    data = data_from_arrays(image.reshape(2, 3, 64, 64), labels.reshape(2, 3, 64, 64), tiny_cfg, axes="TZYX")
    assert data.heldout == ["T 1, Z 0"]  # the 4th of 6 planes in stack order
    assert plane_names_text(["T 1, Z 0", "T 1, Z 2"]) == "T 1, Z 0; T 1, Z 2"


def test_sparse_run_reports_dice_on_held_out_planes_next_to_the_threshold(tmp_path, tiny_cfg) -> None:
    image, labels = sparse_stack(5, [0, 2, 4])
    events = []
    result = finetune(
        image, labels, config=tiny_cfg, out=tmp_path / "m.pt", register=False, callback=events.append
    )
    told = [e for e in events if "heldout_planes" in e.details]
    assert len(told) == 1 and told[0].details["heldout_planes"] == ["Z 2"]
    assert not told[0].details.get("warning")
    assert result.heldout_planes == ["Z 2"]
    assert result.heldout_dice == result.best["dice"] and result.heldout_dice is not None
    assert result.heldout_threshold_dice == result.baseline_dice and result.baseline_dice > 0.8
    text = describe_result(result)
    expected = (
        f"Dice on held-out planes (Z 2): {result.heldout_dice:.3f}, "
        f"a threshold gets {result.heldout_threshold_dice:.3f}"
    )
    assert expected in text and "Otsu threshold scores" not in text
    from napari_madgnet.model import read_checkpoint_info

    assert read_checkpoint_info(result.model_path)["provenance"]["validated_on"] == ["Z 2"]


def test_two_dimensional_run_has_no_held_out_report(tmp_path, tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    result = finetune(image, labels, config=tiny_cfg, out=tmp_path / "m.pt", register=False)
    assert result.heldout_planes == [] and result.heldout_dice is None
    assert "held-out" not in describe_result(result)


def test_cli_says_which_planes_validate_and_prints_both_numbers(tmp_path, models_home, capsys) -> None:
    import tifffile

    image, labels = sparse_stack(5, [0, 2, 4])
    tifffile.imwrite(tmp_path / "stack.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    args = ["finetune", "--image", str(tmp_path / "stack.tif"), "--labels", str(tmp_path / "labels.tif")]
    args += ["--axes", "ZYX", "--backbone", "resnet50", "--init", "scratch", "--patch-size", "64"]
    args += ["--batch-size", "2", "--steps", "2", "--validate-every", "1", "--device", "cpu", "--name", "z"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "validation: Validation holds out 1 of the 3 annotated planes: Z 2 (0-based" in err
    assert re.search(r"Dice on held-out planes \(Z 2\): \d\.\d{3}, a threshold gets \d\.\d{3}", out), out
