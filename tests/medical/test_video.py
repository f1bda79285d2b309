"""Video: frames decoded on demand (and exactly, after seeks), masks and overlays written as streams,
a whole video segmented through the engine with outputs that re-open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_madgnet.imagefile import MissingExtraError
from napari_madgnet.inference.video import segment_video
from napari_madgnet.io import ImageReadError, find_images, read_image, read_image_file
from napari_madgnet.video import (
    PALETTE,
    VideoFrames,
    VideoWriter,
    overlay,
    write_mask_pages,
    write_overlay_video,
)

T, H, W, FPS = 75, 96, 128, 25


def synthetic_frame(t: int) -> np.ndarray:
    """A dark scene with a bright disc moving right and a frame counter in the red channel."""
    yy, xx = np.mgrid[:H, :W]
    frame = np.full((H, W, 3), 30, np.uint8)
    frame[..., 0] = 30 + (t * 2) % 200
    frame[(yy - H // 2) ** 2 + (xx - (20 + t)) ** 2 < 15**2] = 230
    return frame


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "scope.mp4"
    with VideoWriter(path, FPS) as writer:
        for t in range(T):
            writer.write(synthetic_frame(t))
    return path


def test_frames_are_read_on_demand_and_seeks_are_exact(video: Path) -> None:
    frames = VideoFrames(video)
    assert frames.shape == (T, H, W, 3) and frames.dtype == np.uint8 and len(frames) == T
    assert frames.fps == pytest.approx(FPS)
    in_order = [f.copy() for f in frames.iter_frames()]
    assert len(in_order) == T
    for i in (40, 3, T - 1, 0, 41, 42, 70, 10):  # backwards, forwards, far and near
        np.testing.assert_array_equal(frames[i], in_order[i])
        # lossy H.264, but the frame's content is the right one (the counter in red)
        assert abs(int(np.median(frames[i][..., 0])) - (30 + (i * 2) % 200)) <= 3
    assert frames[::25, :2, :3, 0].shape == (3, 2, 3)
    assert frames[-1].shape == (H, W, 3)
    with pytest.raises(IndexError):
        frames[T]
    frames.close()


def test_read_image_file_gives_lazy_frames_with_axes(video: Path) -> None:
    image = read_image_file(video, lazy=True)
    assert isinstance(image.data, VideoFrames)
    assert image.axes == "TYXC" and image.format == "video" and image.metadata["fps"] == pytest.approx(FPS)
    assert find_images([video.parent]) == [video]
    assert read_image(video).shape == (T, H, W, 3)


def test_broken_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with pytest.raises(ImageReadError, match=r"broken\.mp4"):
        VideoFrames(bad)


def test_without_imageio_ffmpeg_the_error_names_the_extra(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(MissingExtraError, match=r'pip install "napari-madgnet\[video\]"'):
        read_image_file(video)


def test_overlay_colours_the_labels_and_outlines_them() -> None:
    frame = np.full((20, 20, 3), 100, np.uint8)
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 1
    out = overlay(frame, labels, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], frame[0, 0])  # background untouched
    np.testing.assert_array_equal(out[5, 5], PALETTE[0])  # outline in the label's colour
    np.testing.assert_array_equal(
        out[10, 10], (frame[10, 10] * 0.5 + PALETTE[0] * 0.5 + 0.5).astype(np.uint8)
    )


def test_mask_pages_and_overlay_stream_and_re_open(tmp_path: Path, video: Path) -> None:
    import tifffile

    frames = VideoFrames(video)
    masks = [(f[..., 1] > 128).astype(np.uint8) for f in frames.iter_frames()]
    pages = write_mask_pages(tmp_path / "m.tif", iter(masks), (T, H, W), np.uint8)
    with tifffile.TiffFile(pages) as tif:
        assert len(tif.pages) == T
        np.testing.assert_array_equal(tif.asarray(), np.stack(masks))
    movie = write_overlay_video(tmp_path / "o.mp4", frames.iter_frames(), iter(masks), frames.fps)
    again = VideoFrames(movie)
    assert again.shape == (T, H, W, 3) and again.fps == pytest.approx(FPS)
    frame = again[30]
    inside = masks[30].astype(bool)
    # the disc is tinted green, the background is not
    assert frame[inside][:, 1].mean() > frame[inside][:, 0].mean() + 20
    assert abs(int(np.median(frame[~inside][:, 1])) - 30) <= 4
    with pytest.raises(FileExistsError):
        write_overlay_video(tmp_path / "o.mp4", frames.iter_frames(), iter(masks), frames.fps)


def test_failed_video_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "x.mp4", 10) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


class Brightness(torch.nn.Module):
    """A stand-in network: the logit of a pixel is its green value above 0.5 (bright = object)."""

    def __init__(self) -> None:
        super().__init__()
        prep = {"normalization": "scale255", "input_size": 32, "channels": 3}
        self.checkpoint_info = {"preprocessing": prep}
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (x[:, 1:2] - 0.5) * 40.0


def test_segment_video_writes_masks_and_an_overlay_that_plays(tmp_path: Path, video: Path) -> None:
    import tifffile

    from napari_madgnet.inference import InferenceConfig

    model = Brightness()
    result = segment_video(
        video,
        model,
        InferenceConfig(geometry="tiles", tile_size=128, device="cpu"),
        mask_path=tmp_path / "scope_mask.tif",
        overlay_path=tmp_path / "scope_overlay.mp4",
    )
    assert result["frames"] == T
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "scope_mask.tif",
        "scope_overlay.mp4",
    ]  # no temp store
    masks = tifffile.imread(tmp_path / "scope_mask.tif")
    assert masks.shape == (T, H, W) and masks.dtype == np.uint8
    for t in (0, 37, T - 1):
        disc = synthetic_frame(t)[..., 1] > 128
        assert (masks[t].astype(bool) == disc).mean() > 0.98
    movie = VideoFrames(tmp_path / "scope_overlay.mp4")
    assert movie.shape == (T, H, W, 3)
    assert len([f for f in movie.iter_frames()]) == T
    assert model.calls >= T  # every frame went through the network
    with pytest.raises(FileExistsError):
        segment_video(video, model, mask_path=tmp_path / "scope_mask.tif")


def test_video_benchmark_case_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/bench_video.py still runs (tiny video, 32 px network input)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_video

    video = bench_video.make_video(tmp_path / "v.mp4", 3, width=64, height=48)
    result = bench_video.run_case("stream-3", video, tmp_path, 1, input_size=32)
    assert result["frames"] == 3 and result["overlay_frames_reread"] == 3
    assert result["peak_rss_mb"] > 0 and result["frame_size"] == "64x48"
