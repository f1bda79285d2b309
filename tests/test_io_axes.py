"""Axes: what the file says wins over a guess from the shape (issue 12, part 1).

Every input is made here: a grey + alpha PNG, a planar RGB TIFF with its tags, an ImageJ
hyperstack, an OME-TIFF, TIFFs with and without resolution tags, NPY arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_madgnet.imagefile import AxesNotes
from napari_madgnet.io import ImageReadError, read_image, read_image_file, write_image
from napari_madgnet.layout import guess_axes, resolve_layout
from napari_madgnet.training.data import items_from_arrays

H, W = 40, 48


def _ramp(*shape: int, dtype=np.uint8) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 251).reshape(shape).astype(dtype)


def test_grey_alpha_png_is_a_grey_plane_with_alpha_dropped(tmp_path: Path) -> None:
    la = np.stack([_ramp(H, W), np.full((H, W), 255, np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image_file(tmp_path / "la.png")
    assert (image.axes, image.axes_source, image.shape) == ("YX", "file", (H, W))
    assert image.metadata["mode"] == "LA" and image.metadata["alpha_dropped"]
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), la[..., 0])
    tifffile.imwrite(tmp_path / "la.tif", la, photometric="minisblack", extrasamples=["unassalpha"])
    image = read_image_file(tmp_path / "la.tif")
    assert (image.axes, image.axes_source) == ("YX", "file") and image.metadata["alpha_dropped"]
    np.testing.assert_array_equal(image.data, la[..., 0])


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((H, W, 2), "YXC"), ((H, W, 5), "YXC"), ((H, W, 1), "YXC"), ((3, H, W, 2), "ZYXC"), ((8, 8, 2), "ZYX")],
)
def test_a_small_last_axis_is_guessed_as_channels(shape, axes) -> None:
    assert guess_axes(shape) == axes


@pytest.mark.parametrize("n", [2, 5])
def test_two_or_five_channels_ask_for_one(n: int) -> None:
    with pytest.raises(ValueError, match=rf"{n} channels.*--channel"):
        resolve_layout((H, W, n))
    assert resolve_layout((H, W, n), channel=1).output_shape == (H, W)


def test_planar_rgb_tiff_with_its_tags_is_cyx(tmp_path: Path) -> None:
    rgb = _ramp(3, H, W)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    image = read_image_file(tmp_path / "planar.tif")
    assert (image.axes, image.axes_source) == ("CYX", "file")
    layout = resolve_layout(image.shape, image.axes)
    assert layout.channels == "rgb" and layout.output_shape == (H, W) and layout.n_planes == 1
    np.testing.assert_array_equal(layout.read_plane(image.data, ()), np.moveaxis(rgb, 0, -1))
    # the same pixels stored interleaved say YXC
    tifffile.imwrite(tmp_path / "contig.tif", np.moveaxis(rgb, 0, -1), photometric="rgb")
    assert read_image_file(tmp_path / "contig.tif").axes == "YXC"


def test_imagej_hyperstack_gives_its_axes_and_voxel_size(tmp_path: Path) -> None:
    stack = _ramp(4, 2, H, W, dtype=np.uint16)  # Z C Y X: guessed from the shape it would be TZYX
    assert guess_axes(stack.shape) == "TZYX"
    tifffile.imwrite(
        tmp_path / "hyper.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),  # pixels per unit
        metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "micron", "finterval": 2.0},
    )
    image = read_image_file(tmp_path / "hyper.tif")
    assert (image.axes, image.axes_source, image.shape) == ("ZCYX", "file", stack.shape)
    assert image.spacing == pytest.approx((1.5, 0.25, 0.25)) and image.unit == "µm"
    np.testing.assert_array_equal(image.data, stack)
    layout = resolve_layout(image.shape, image.axes, channel=1)
    assert layout.output_shape == (4, H, W) and layout.n_planes == 4


def test_ome_tiff_gives_axes_and_physical_sizes_in_one_unit(tmp_path: Path) -> None:
    stack = _ramp(2, 3, H, W, dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "cells.ome.tif",
        stack,
        metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1000.0,
                  "PhysicalSizeZUnit": "nm"},
    )  # fmt: skip
    image = read_image_file(tmp_path / "cells.ome.tif")
    assert (image.axes, image.axes_source) == ("CZYX", "file")
    assert image.spacing == pytest.approx((1.0, 0.2, 0.2)) and image.unit == "µm"


def test_tiff_resolution_in_centimetres_is_a_pixel_size_but_dpi_is_not(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "cm.tif", _ramp(H, W), resolution=(1e4 / 0.65, 1e4 / 0.65), resolutionunit="CENTIMETER"
    )
    cm = read_image_file(tmp_path / "cm.tif")
    assert cm.spacing == pytest.approx((0.65, 0.65)) and cm.unit == "µm"
    tifffile.imwrite(tmp_path / "dpi.tif", _ramp(H, W), resolution=(72, 72), resolutionunit="INCH")
    dpi = read_image_file(tmp_path / "dpi.tif")
    assert dpi.spacing is None and dpi.metadata["dpi"] == pytest.approx((72, 72))


def test_tiffs_without_axes_metadata_and_npy_are_guessed(tmp_path: Path) -> None:
    pages = _ramp(3, H, W)
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack", metadata=None)  # 3 plain pages
    shaped = tmp_path / "shaped.tif"
    tifffile.imwrite(shaped, _ramp(H, W, 2), photometric="minisblack")  # tifffile's Q axes
    np.save(tmp_path / "stack.npy", pages)
    for name, axes in (("pages.tif", "ZYX"), ("shaped.tif", "YXC"), ("stack.npy", "ZYX")):
        image = read_image_file(tmp_path / name)
        assert (image.axes, image.axes_source) == (axes, "guessed"), name


def test_written_stacks_of_three_planes_are_not_tagged_rgb(tmp_path: Path) -> None:
    mask = (_ramp(3, H, W) > 100).astype(np.uint8)
    write_image(tmp_path / "mask.tif", mask)
    image = read_image_file(tmp_path / "mask.tif")
    assert image.axes == "ZYX" and image.metadata["photometric"] == "MINISBLACK"


def test_palette_png_image_is_read_as_its_colours(tmp_path: Path) -> None:
    idx = (_ramp(H, W) % 3).astype(np.uint8)
    colour = Image.fromarray(idx, "P")
    colour.putpalette([0, 0, 0, 0, 255, 0, 255, 0, 0])
    colour.save(tmp_path / "colour.png")
    image = read_image_file(tmp_path / "colour.png")
    assert (image.axes, image.shape) == ("YXC", (H, W, 3))
    np.testing.assert_array_equal(image.data[idx == 1], [[0, 255, 0]] * int((idx == 1).sum()))
    grey = Image.fromarray(idx, "P")
    grey.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    grey.save(tmp_path / "grey.png")
    image = read_image_file(tmp_path / "grey.png")
    assert image.axes == "YX" and set(np.unique(image.data)) == {0, 128, 255}


def test_unsupported_compound_suffix_is_named_whole(tmp_path: Path) -> None:
    for name, suffix in (("scan.tif.gz", ".tif.gz"), ("notes.txt", ".txt")):
        (tmp_path / name).write_bytes(b"\x1f\x8b not an image")
        with pytest.raises(ImageReadError, match=rf"unsupported file type '\{suffix}'"):
            read_image_file(tmp_path / name)


def test_axes_notes_say_a_guess_once_per_layout(tmp_path: Path) -> None:
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", _ramp(H + (name == "b"), W, 2))
    np.save(tmp_path / "c.npy", _ramp(H, W, 3))
    tifffile.imwrite(tmp_path / "d.tif", _ramp(3, H, W), photometric="rgb", planarconfig="separate")
    notes = AxesNotes()
    info, note = notes.check(read_image_file(tmp_path / "a.npy"))
    assert info == {"axes": "YXC", "axes_source": "guessed"}
    assert (
        note is not None and "a.npy" in note and "'YXC'" in note and "2 channels" in note and "--axes" in note
    )
    assert notes.check(read_image_file(tmp_path / "b.npy")) == (info, None)  # same layout, other size
    assert notes.check(read_image_file(tmp_path / "c.npy"))[1] is not None  # another layout
    assert notes.check(read_image_file(tmp_path / "d.tif")) == ({"axes": "CYX", "axes_source": "file"}, None)
    given = notes.check(read_image_file(tmp_path / "c.npy"), "ZYX")
    assert given == ({"axes": "ZYX", "axes_source": "given"}, None)


def test_a_cyx_stack_trains_the_way_it_is_segmented() -> None:
    """Fine-tune and Segment take one layout: the planes training sees are those segment sees."""
    import torch

    from napari_madgnet.inference import InferenceConfig, segment

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)  # C Y X
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 10:30] = 1

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(x.detach().clone())
            return torch.zeros(x.shape[0], 1, *x.shape[2:])

    net = Recorder()
    net.checkpoint_info = {"preprocessing": {"normalization": "scale255", "input_size": 64}}
    items, _ = items_from_arrays(image, labels, axes="CYX", normalization="scale255")
    result = segment(image, net, InferenceConfig(axes="CYX", normalization="scale255", device="cpu"))
    assert len(items) == 1 and result.mask.shape == (64, 64)
    (seen,) = net.seen
    assert seen.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(seen[0].numpy(), items[0].image, atol=1e-6)
    np.testing.assert_allclose(items[0].image, image / 255.0, atol=1e-6)


def test_a_micrometre_pixel_size_is_written_to_nifti_in_millimetres(tmp_path: Path) -> None:
    from napari_madgnet.io import write_output

    stack = _ramp(3, H, W, dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "z.tif",
        stack,
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
    )
    image = read_image_file(tmp_path / "z.tif")
    assert image.spacing == pytest.approx((2.0, 0.25, 0.25)) and image.unit == "µm"
    write_output(tmp_path / "z_mask.nii.gz", (stack > 100).astype(np.uint8), image)
    back = read_image_file(tmp_path / "z_mask.nii.gz")
    assert back.spacing == pytest.approx((0.002, 0.00025, 0.00025), rel=1e-5)
