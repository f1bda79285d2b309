"""Files and folders as users have them: compressed TIFFs, symbolic links and their loops, linked
sub-folders, and the temporary files a killed writer leaves behind (issue 16, items 4, 14, 17, 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_madgnet.io import (
    ImageReadError,
    atomic_path,
    find_images,
    read_image,
    remove_stale_temp_files,
    temp_sibling,
)

ROOT = Path(__file__).resolve().parents[1]


def _ramp(shape=(64, 80)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy * 3 + xx * 2) % 251).astype(np.uint8)


@pytest.mark.parametrize("compression", ["lzw", "jpeg", "zstd"])
def test_compressed_tiffs_read_out_of_the_box(tmp_path, compression) -> None:
    image = _ramp()
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, image, compression=compression)
    with tifffile.TiffFile(path) as tif:  # really written with that codec
        assert tif.pages[0].compression.name.lower().startswith(compression[:3])
    read = read_image(path)
    assert read.shape == image.shape
    tolerance = 8 if compression == "jpeg" else 0  # JPEG is lossy
    assert np.abs(read.astype(int) - image).max() <= tolerance


MISSING_CODEC = """
import sys
sys.modules["imagecodecs"] = None  # as on an install without the codec library
from napari_madgnet.io import ImageReadError, read_image
try:
    read_image(sys.argv[1])
except ImageReadError as exc:
    print(exc)
"""


@pytest.mark.parametrize("compression", ["lzw", "zstd"])
def test_a_missing_codec_is_named_with_the_fix(tmp_path, compression) -> None:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, _ramp(), compression=compression)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", MISSING_CODEC, str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    message = out.stdout
    assert str(path) in message and compression.upper() in message.upper()
    assert "pip install imagecodecs" in message
    assert "Is the file complete" not in message  # not blamed on a broken file


def test_a_symlink_loop_is_named_as_such(tmp_path) -> None:
    loop = tmp_path / "loop.tif"
    loop.symlink_to(loop)
    with pytest.raises(ImageReadError, match="loop of symbolic links") as exc:
        read_image(loop)
    assert str(loop) in str(exc.value)
    with pytest.raises(ImageReadError, match="loop of symbolic links"):
        find_images([loop])
    dangling = tmp_path / "gone.tif"
    dangling.symlink_to(tmp_path / "moved-away.tif")
    with pytest.raises(ImageReadError, match=r"moved-away\.tif, which does not exist"):
        read_image(dangling)


def test_recursive_search_follows_linked_folders_once_and_says_what_it_left_out(tmp_path) -> None:
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tifffile.imwrite(data / "top.tif", _ramp())
    tifffile.imwrite(data / "a" / "inner.tif", _ramp())
    tifffile.imwrite(elsewhere / "linked.tif", _ramp())
    (data / "linked").symlink_to(elsewhere, target_is_directory=True)  # a folder of images elsewhere
    (data / "a" / "up").symlink_to(data, target_is_directory=True)  # a loop back to the top
    (data / "broken").symlink_to(tmp_path / "nowhere")
    (data / "out").mkdir()
    tifffile.imwrite(data / "out" / "top_mask.tif", _ramp())
    skipped: list[tuple[Path, str]] = []

    def exclude(p: Path) -> str | None:
        return "the output folder" if p.name == "out" else None

    found = find_images([data], recursive=True, exclude=exclude, skipped=skipped)
    assert [p.relative_to(data).as_posix() for p in found] == ["a/inner.tif", "linked/linked.tif", "top.tif"]
    reasons = {p.relative_to(data).as_posix(): r for p, r in skipped}
    assert reasons["out"] == "the output folder"
    assert "searched once" in reasons["a/up"]
    assert "nowhere, which does not exist" in reasons["broken"]
    # not recursive: the top folder only, links not entered
    assert [p.name for p in find_images([data])] == ["top.tif"]


def test_a_folder_whose_images_were_all_left_out_says_why(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    tifffile.imwrite(tmp_path / "d" / "x_mask.tif", _ramp())
    with pytest.raises(ImageReadError, match=r"no images found .*x_mask.tif \(an output\)"):
        find_images([tmp_path / "d"], exclude=lambda p: "an output")


def _stale_temp(folder: Path, name: str, pid: int) -> Path:
    from napari_madgnet.locks import host_tag

    path = folder / f".{name}.{host_tag()}-{pid}-abcd1234.tmp{Path(name).suffix}"
    path.write_bytes(b"half a file")
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_of_dead_writers_are_removed_and_nothing_else(tmp_path) -> None:
    dead = _stale_temp(tmp_path, "mask.tif", _dead_pid())
    live = _stale_temp(tmp_path, "other.tif", os.getpid())  # being written right now
    old_style = tmp_path / ".model.pt.k3j4h5g6.tmp.pt"  # earlier versions: no owner in the name
    old_style.write_bytes(b"x")
    young_old_style = tmp_path / ".log.json.a1b2c3d4.tmp.json"
    young_old_style.write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old_style, (day_ago, day_ago))
    mine = tmp_path / ".notes.tmp"  # a user's hidden file, not our pattern
    mine.write_bytes(b"x")
    zarr_dir = temp_sibling(tmp_path / "stack_mask.zarr")
    zarr_dir.mkdir()
    (zarr_dir / "chunk").write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted([dead, old_style])
    assert live.exists() and young_old_style.exists() and mine.exists() and zarr_dir.exists()


KILLED_WRITER = """
import sys, time
from napari_madgnet.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_kill_9_during_an_atomic_write_leaves_a_temp_file_the_next_run_removes(tmp_path) -> None:
    target = tmp_path / "result.tif"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".result.tif.")]
    assert not target.exists()
    assert remove_stale_temp_files(tmp_path) == [left]
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:  # and the next write goes through
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
