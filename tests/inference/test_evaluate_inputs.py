"""``evaluate`` checks every input before the first prediction and names the file; ground truth is
binarised once, by the shared rule, for every metric (issue 16.14, issue 12.3)."""

from __future__ import annotations

import csv

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_madgnet.inference import evaluate as ev
from napari_madgnet.inference.evaluate import EvaluationInputError


def _folder(tmp_path, masks: dict[str, np.ndarray], shape=(48, 48)):
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for name, mask in masks.items():
        stem = name.rsplit(".", 1)[0]
        iio.imwrite(data / "images" / f"{stem}.png", np.full(shape, 90, np.uint8))
        path = data / "masks" / name
        if name.endswith(".tif"):
            tifffile.imwrite(path, mask)
        elif name.endswith(".jpg"):
            iio.imwrite(path, mask, extension=".jpg", quality=75)
        else:
            iio.imwrite(path, mask)
    return data


def _square(shape=(48, 48), value=255) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[12:36, 10:30] = value
    return m


@pytest.fixture
def no_model(monkeypatch):
    """No network: predictions come from ``probs`` (name -> map); a call without one fails."""
    probs: dict[int, np.ndarray] = {}
    calls: list[int] = []

    def predict(model, image, device="auto"):
        calls.append(1)
        return probs[len(calls) - 1]

    monkeypatch.setattr("napari_madgnet.inference.fast_model", lambda model: model)
    monkeypatch.setattr(ev, "predict", predict)
    return probs, calls


def test_a_mask_of_another_shape_is_named_before_any_prediction(tmp_path, no_model) -> None:
    _probs, calls = no_model
    data = _folder(tmp_path, {"a.png": _square(), "b.png": _square()})
    iio.imwrite(data / "masks" / "b.png", _square((40, 48)))
    with pytest.raises(EvaluationInputError, match=r"b\.png \(40 x 48\) does not cover .*b\.png \(48 x 48\)"):
        ev.evaluate_folder(object(), data, tmp_path / "out")
    assert calls == [] and not (tmp_path / "out").exists()


def test_a_garbage_training_log_is_named_before_any_prediction(tmp_path, no_model) -> None:
    _probs, calls = no_model
    data = _folder(tmp_path, {"a.png": _square()})
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\nthis is not json\n')
    with pytest.raises(EvaluationInputError, match=r"train_log\.jsonl, line 2: not a training log record"):
        ev.evaluate_folder(object(), data, tmp_path / "out", train_log=log)
    log.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(EvaluationInputError, match="not a training log"):
        ev.evaluate_folder(object(), data, tmp_path / "out", train_log=log)
    assert calls == [] and not (tmp_path / "out").exists()


def test_other_bad_masks_are_named(tmp_path, no_model) -> None:
    data = _folder(tmp_path, {"a.tif": np.full((48, 48), -1, np.int16)})
    with pytest.raises(EvaluationInputError, match=r"a\.tif: the mask holds negative values"):
        ev.evaluate_folder(object(), data, tmp_path / "out")
    tifffile.imwrite(data / "masks" / "a.tif", np.full((48, 48), np.nan, np.float32))
    with pytest.raises(EvaluationInputError, match="NaN"):
        ev.evaluate_folder(object(), data, tmp_path / "out")


def test_a_jpeg_mask_and_a_perfect_prediction_score_one_in_both_families(tmp_path, no_model) -> None:
    probs, _ = no_model
    truth = _square()
    data = _folder(tmp_path, {"a.jpg": truth})
    jpeg = np.asarray(iio.imread(data / "masks" / "a.jpg"))
    assert len(np.unique(jpeg)) > 2 and ((jpeg > 0) != (truth > 0)).any()  # grey edges, as in the issue
    probs[0] = (truth > 0).astype(np.float32)
    notes = []
    summary = ev.evaluate_folder(object(), data, tmp_path / "out", callback=notes.append)
    with open(tmp_path / "out" / "per_image.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["dice"]) == 1.0  # was 0.961: > 0 took the JPEG's grey edges as object
    assert float(row["paper_DSC"]) == pytest.approx(1.0, abs=1e-6)
    assert float(row["paper_IoU"]) == pytest.approx(1.0, abs=1e-6)
    assert summary["objects"]["matched"] == 1 and summary["objects"]["false_positive"] == 0
    assert len(summary["warnings"]) == 1 and "a.jpg is a binary mask with" in summary["warnings"][0]
    assert any(p.details.get("warning") and "binarised at > 127.5" in p.message for p in notes)


def test_instance_ids_near_2_to_the_60_are_objects(tmp_path, no_model) -> None:
    probs, _ = no_model
    ids = np.zeros((48, 48), np.uint64)
    ids[5:15, 5:15] = 1
    ids[25:40, 25:40] = 2**60
    ids[30:35, 5:10] = 7
    data = _folder(tmp_path, {"a.tif": ids})
    probs[0] = (ids > 0).astype(np.float32)
    summary = ev.evaluate_folder(object(), data, tmp_path / "out")
    assert summary["standard_metrics"]["dice"] == 1.0
    assert summary["objects"]["reference"] == 3 and summary["objects"]["matched"] == 3
    assert summary["warnings"] == []


def test_the_cli_leaves_no_empty_output_folder_when_the_inputs_are_refused(
    tmp_path, no_model, monkeypatch, capsys
) -> None:
    from napari_madgnet.cli import main

    _probs, calls = no_model
    monkeypatch.setattr("napari_madgnet.registry.load_registered_model", lambda name: object())
    data = _folder(tmp_path, {"a.png": _square(), "b.png": _square()})
    iio.imwrite(data / "masks" / "b.png", _square((40, 48)))
    out = tmp_path / "report"
    assert main(["evaluate", "--model", "m", "--data", str(data), "--out", str(out)]) == 2
    assert "does not cover" in capsys.readouterr().err
    assert calls == [] and not out.exists()
    out.mkdir()  # a folder the user made is kept, empty or not
    assert main(["evaluate", "--model", "m", "--data", str(data), "--out", str(out)]) == 2
    assert out.is_dir()
