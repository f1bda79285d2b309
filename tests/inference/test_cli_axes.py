"""``madgnet predict`` segments files by the axes they state, and says when it had to guess.

Issue 12, part 1: a grey + alpha PNG is one grey plane (not H planes of W x 2 pixels), a planar
RGB TIFF is one colour image (not three grey planes), an ImageJ hyperstack keeps its own axes;
guessed axes are printed once per layout and recorded in the run log and the provenance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from inference_helpers import rng_image
from PIL import Image

from napari_madgnet.cli import main

H, W = 40, 48


def _predict(inputs: list[Path], checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["predict", *map(str, inputs), "-m", str(checkpoint), "-o", str(out), "-q", *extra])


def _records(out: Path) -> dict[str, dict]:
    (log,) = out.glob("madgnet-predict-*.json")
    return {Path(r["input"]).name: r for r in json.loads(log.read_text())["files"]}


def test_files_are_segmented_by_the_axes_they_state(tmp_path, checkpoint, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    grey = rng_image((H, W), np.uint8, seed=1)
    Image.fromarray(np.stack([grey, np.full((H, W), 255, np.uint8)], -1), "LA").save(d / "la.png")
    rgb = rng_image((3, H, W), np.uint8, seed=2)
    tifffile.imwrite(d / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    hyper = rng_image((3, 2, H, W), np.uint16, seed=3)
    tifffile.imwrite(d / "hyper.tif", hyper, imagej=True, metadata={"axes": "ZCYX"})
    out, out_hyper = tmp_path / "out", tmp_path / "out_hyper"
    assert _predict([d / "la.png", d / "planar.tif"], checkpoint, out) == 0, capsys.readouterr().err
    assert _predict([d / "hyper.tif"], checkpoint, out_hyper, "--channel", "1") == 0, capsys.readouterr().err
    assert "note:" not in capsys.readouterr().err  # nothing was guessed
    assert tifffile.imread(out / "la_mask.tif").shape == (H, W)
    assert tifffile.imread(out / "planar_mask.tif").shape == (H, W)
    assert tifffile.imread(out_hyper / "hyper_mask.tif").shape == (3, H, W)
    records = {**_records(out), **_records(out_hyper)}
    for name, axes in (("la.png", "YX"), ("planar.tif", "CYX"), ("hyper.tif", "ZCYX")):
        assert (records[name]["axes"], records[name]["axes_source"]) == (axes, "file")
        assert records[name]["provenance"]["input_axes"] == {"axes": axes, "axes_source": "file"}
    assert records["planar.tif"]["provenance"]["resolved"]["channels"] == "rgb"


def test_guessed_axes_are_said_once_per_layout_and_recorded(tmp_path, checkpoint, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for k in range(2):  # two colour images of one layout: one note
        np.save(d / f"rgb{k}.npy", rng_image((H, W + 8 * k, 3), np.uint8, seed=k))
    np.save(d / "stack.npy", rng_image((2, H, W), np.uint8, seed=5))
    out = tmp_path / "out"
    assert _predict([d], checkpoint, out) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 2
    assert "rgb0.npy: the file does not say its axes" in err and "'YXC'" in err and "--axes" in err
    assert "stack.npy" in err and "'ZYX'" in err and "2 planes (Z)" in err
    records = _records(out)
    assert {r["axes_source"] for r in records.values()} == {"guessed"}
    assert records["stack.npy"]["provenance"]["input_axes"] == {"axes": "ZYX", "axes_source": "guessed"}
    # --axes is the user's word: no note, recorded as given
    out2 = tmp_path / "out2"
    assert _predict([d / "stack.npy"], checkpoint, out2, "--axes", "CYX", "--channel", "0") == 0
    assert "note:" not in capsys.readouterr().err
    assert _records(out2)["stack.npy"]["axes_source"] == "given"
    assert tifffile.imread(out2 / "stack_mask.tif").shape == (H, W)


def test_two_channels_are_not_cut_into_a_stack(tmp_path, checkpoint, capsys) -> None:
    np.save(tmp_path / "two.npy", rng_image((H, W, 2), np.uint8, seed=7))
    out = tmp_path / "out"
    assert _predict([tmp_path / "two.npy"], checkpoint, out) == 1
    err = capsys.readouterr().err
    assert "2 channels" in err and "--channel" in err
    assert _predict([tmp_path / "two.npy"], checkpoint, out, "--channel", "0") == 0
    assert tifffile.imread(out / "two_mask.tif").shape == (H, W)
