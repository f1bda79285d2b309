"""Reading and writing images: formats, errors that name the problem, atomic and safe writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_madgnet.io import ImageReadError, atomic_path, find_images, read_image, write_image


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    mask = (np.arange(64 * 48).reshape(64, 48) % 7).astype(np.uint8)
    path = write_image(tmp_path / f"mask{suffix}", mask)
    np.testing.assert_array_equal(read_image(path), mask)


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = write_image(tmp_path / "m.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_image(path, np.zeros((4, 4), np.uint8))
    np.testing.assert_array_equal(read_image(path), 1)
    write_image(path, np.zeros((4, 4), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path), 0)


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.tif"
    write_image(target, np.full((4, 4), 3, np.uint8))
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    np.testing.assert_array_equal(read_image(target), 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]


def test_png_refuses_floats_and_large_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tif"):
        write_image(tmp_path / "p.png", np.full((4, 4), 70000, np.int32))
    assert not list(tmp_path.iterdir())


def test_corrupt_and_unknown_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        read_image(bad)
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported"):
        read_image(odd)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.tif")


def test_npy_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"objects\.npy"):
        read_image(path)


def test_zarr_is_read_lazily(tmp_path: Path) -> None:
    import zarr

    store = tmp_path / "stack.zarr"
    arr = zarr.open(str(store), mode="w", shape=(3, 16, 16), chunks=(1, 16, 16), dtype="uint16")
    arr[:] = np.arange(3 * 256, dtype=np.uint16).reshape(3, 16, 16)
    lazy = read_image(store, lazy=True)
    assert not isinstance(lazy, np.ndarray)
    assert lazy.shape == (3, 16, 16)
    np.testing.assert_array_equal(read_image(store), arr[...])


def test_find_images_expands_folders_and_rejects_empty_ones(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "a" / "y.tif", np.zeros((4, 4), np.uint8))
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    assert [p.name for p in find_images([tmp_path / "a"])] == ["x.png", "y.tif"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no images found"):
        find_images([tmp_path / "empty"])
