"""Masks are label images, not pictures (issue 12, part 2).

A palette PNG mask is read as its indices everywhere a mask is read (training from folders,
``evaluate``, ``madgnet finetune --labels``, ``madgnet compare``); grey saved as RGB is accepted;
a colour-coded RGB mask is refused with what to do. Every input is made here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_madgnet.cli import main
from napari_madgnet.io import ImageReadError, read_image, read_mask

H, W = 64, 64
GREEN, RED = (0, 255, 0), (255, 0, 0)


def _classes() -> np.ndarray:
    """Labels 0 (background), 1 and 2 in two rectangles."""
    labels = np.zeros((H, W), np.uint8)
    labels[8:28, 8:40] = 1
    labels[36:56, 20:56] = 2
    return labels


def _palette_png(path: Path, labels: np.ndarray) -> Path:
    """An indexed PNG as annotation tools save it: class 1 drawn green, class 2 red."""
    im = Image.fromarray(labels, "P")
    im.putpalette([0, 0, 0, *GREEN, *RED])
    im.save(path)
    return path


def _colour_coded(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[labels == 1], rgb[labels == 2] = GREEN, RED
    return rgb


def test_palette_png_mask_is_read_as_its_indices(tmp_path: Path) -> None:
    labels = _classes()
    path = _palette_png(tmp_path / "mask.png", labels)
    assert read_image(path).shape == (H, W, 3)  # as a picture: its colours
    mask = read_mask(path)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, labels)


def test_grey_saved_as_rgb_or_rgba_is_accepted(tmp_path: Path) -> None:
    labels = _classes() * 100
    rgb = np.repeat(labels[..., None], 3, axis=-1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.save(tmp_path / "rgb.npy", rgb)
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
    )
    for name in ("rgb.png", "rgba.png", "rgb.npy", "planar.tif"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), labels, err_msg=name)


def test_colour_coded_masks_are_refused_with_what_to_do(tmp_path: Path) -> None:
    rgb = _colour_coded(_classes())
    Image.fromarray(rgb, "RGB").save(tmp_path / "colours.png")
    tifffile.imwrite(tmp_path / "colours.tif", rgb, photometric="rgb")
    np.save(tmp_path / "colours.npy", rgb)
    for name in ("colours.png", "colours.tif", "colours.npy"):
        with pytest.raises(ImageReadError, match=r"colour-coded mask.*(0, 255, 0).*Fiji") as info:
            read_mask(tmp_path / name)
        assert name in str(info.value) and "index/label image" in str(info.value)


def test_palette_tiff_and_grey_alpha_png_masks(tmp_path: Path) -> None:
    labels = _classes()
    tifffile.imwrite(
        tmp_path / "pal.tif", labels, photometric="palette", colormap=np.zeros((3, 256), np.uint16)
    )
    np.testing.assert_array_equal(read_mask(tmp_path / "pal.tif"), labels)
    la = np.stack([labels, np.full((H, W), 255, np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "la.png"), labels)


def test_folder_training_reads_the_green_class(tmp_path: Path) -> None:
    from napari_madgnet.training.data import FileItem

    labels = (_classes() == 1).astype(np.uint8)  # the one class, drawn in green
    image = np.where(labels > 0, 200, 30).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    _palette_png(tmp_path / "img_mask.png", labels)
    item = FileItem(tmp_path / "img.png", tmp_path / "img_mask.png", "binary", 1, "scale255").load()
    np.testing.assert_array_equal(item.target[0], labels)


class _Perfect(torch.nn.Module):
    """Logits that are high exactly where the grey image is bright: a perfect segmenter here."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint_info = {"preprocessing": {"normalization": "scale255", "input_size": H}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] - 0.5) * 100


def test_evaluate_scores_a_green_class_against_a_perfect_prediction(tmp_path: Path) -> None:
    import json

    from napari_madgnet.inference.evaluate import evaluate_folder

    labels = (_classes() == 1).astype(np.uint8)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    Image.fromarray(np.where(labels > 0, 220, 20).astype(np.uint8)).save(
        tmp_path / "data" / "images" / "a.png"
    )
    _palette_png(tmp_path / "data" / "masks" / "a.png", labels)
    summary = evaluate_folder(_Perfect(), tmp_path / "data", tmp_path / "eval", device="cpu")
    assert summary["standard_metrics"]["dice"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "eval" / "summary.json").read_text()) == summary


def test_compare_reads_a_palette_mask_as_labels(tmp_path: Path, capsys) -> None:
    labels = _classes()
    _palette_png(tmp_path / "a.png", labels)
    tifffile.imwrite(tmp_path / "b.tif", labels, photometric="minisblack")
    assert main(["compare", str(tmp_path / "a.png"), str(tmp_path / "b.tif")]) == 0
    assert "Dice 1.0000" in capsys.readouterr().out
    Image.fromarray(_colour_coded(labels), "RGB").save(tmp_path / "c.png")
    assert main(["compare", str(tmp_path / "c.png"), str(tmp_path / "b.tif")]) == 2
    assert "colour-coded mask" in capsys.readouterr().err


def test_finetune_takes_palette_labels_and_refuses_colour_coded_ones(tmp_path: Path, capsys) -> None:
    labels = _classes()
    image = np.where(labels > 0, 200, 30).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    _palette_png(tmp_path / "pal.png", labels)
    Image.fromarray(_colour_coded(labels), "RGB").save(tmp_path / "colours.png")
    base = [
        "finetune",
        "--image",
        str(tmp_path / "img.tif"),
        "--out",
        str(tmp_path / "m.pt"),
        "--init",
        "scratch",
    ]
    assert main([*base, "--labels", str(tmp_path / "colours.png")]) == 2
    err = capsys.readouterr().err
    assert "colour-coded mask" in err and "do not match" not in err
    # Read as indices, the labels fit the image: the data checks pass and reach the label values
    # (scribble mode allows 0..2, these labels go to 2; 3 is refused), before any model is built.
    _palette_png(tmp_path / "three.png", np.where(labels == 2, 3, labels).astype(np.uint8))
    assert main([*base, "--labels", str(tmp_path / "three.png"), "--label-mode", "scribble"]) == 2
    err = capsys.readouterr().err
    assert "found value 3" in err and "do not match" not in err
    # an image file without axes: they come from the shapes of image and labels, and are said
    np.save(tmp_path / "img.npy", np.stack([image] * 3))  # C Y X, as the labels show
    base[2] = str(tmp_path / "img.npy")
    assert main([*base, "--labels", str(tmp_path / "three.png"), "--label-mode", "scribble"]) == 2
    err = capsys.readouterr().err
    assert (
        "note: img.npy: the file does not say its axes" in err and "'CYX'" in err and "found value 3" in err
    )


def test_jpeg_masks_may_carry_compression_noise_but_not_colours(tmp_path: Path) -> None:
    binary = (_classes() > 0).astype(np.uint8) * 255
    rgb = np.repeat(binary[..., None], 3, axis=-1)
    rgb[..., 1] = np.clip(rgb[..., 1].astype(int) + 3, 0, 255)  # a slight tint, as re-saved JPEGs get
    Image.fromarray(rgb, "RGB").save(tmp_path / "grey.jpg", quality=95)
    mask = read_mask(tmp_path / "grey.jpg")
    assert mask.shape == (H, W)
    np.testing.assert_array_equal(mask > 127, binary > 0)
    Image.fromarray(_colour_coded(_classes()), "RGB").save(tmp_path / "colours.jpg", quality=95)
    with pytest.raises(ImageReadError, match="colour-coded mask"):
        read_mask(tmp_path / "colours.jpg")
    Image.fromarray(rgb, "RGB").save(tmp_path / "tinted.png")  # lossless: equal or refused
    with pytest.raises(ImageReadError, match="colour-coded mask"):
        read_mask(tmp_path / "tinted.png")
