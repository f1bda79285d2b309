"""Video (endoscopy, ultrasound cine): frames read on demand, masks and overlays written as streams.

FFmpeg comes from imageio-ffmpeg, which ships its own binary in the wheel
(``pip install "napari-madgnet[video]"``, also part of ``[medical]``); without it these functions
raise ``imagefile.MissingExtraError`` naming that command.

- ``VideoFrames(path)``: an array-like of shape (T, H, W, 3), dtype uint8 (RGB), that decodes only
  the frames asked for. Reading frames in order costs one decode each; a jump backwards or far
  ahead restarts FFmpeg with an accurate seek. Memory holds one frame, whatever the length.
- ``write_mask_pages``: per-frame labels as one multi-page TIFF (T, H, W), page by page.
- ``write_overlay_video``: frames with the labels drawn over them (coloured fill and outline), as
  H.264 MP4 in yuv420p (plays in browsers and every common player).
``inference.video.segment_video`` runs these around the segmentation engine.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.atomic import atomic_path
from napari_madgnet.errors import UserError
from napari_madgnet.imagefile import ImageFile, ImageReadError, require

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
_EXTRA = "video"

#: Label colours (RGB) for the overlay: label k uses PALETTE[(k - 1) % len(PALETTE)].
PALETTE = np.array(
    [
        [0, 255, 0],
        [255, 64, 64],
        [64, 160, 255],
        [255, 220, 0],
        [255, 0, 255],
        [0, 255, 255],
        [255, 140, 0],
        [160, 100, 255],
    ],
    dtype=np.uint8,
)


def ffmpeg() -> Any:
    """The imageio_ffmpeg module, or ``MissingExtraError`` naming the ``video`` extra."""
    return require("imageio_ffmpeg", _EXTRA, "Reading and writing video")


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


class VideoFrames:
    """The frames of a video file as a read-only array-like (T, H, W, 3) uint8, decoded on demand.

    Supports ``shape``, ``dtype``, ``ndim``, ``len()``, numpy-style indexing whose first index
    is an int, a slice or a list of frames (``frames[10]``, ``frames[::30, :, :, 0]``),
    ``np.asarray(frames)`` (all frames: only for short videos) and ``iter_frames``. Thread-safe
    (napari reads from worker threads). ``fps``: frames per second; ``close()`` ends the decoder.
    Raises ``io.ImageReadError`` for files FFmpeg cannot decode.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        iio = ffmpeg()
        try:
            gen = iio.read_frames(str(self.path), pix_fmt="rgb24")
            meta = next(gen)
            gen.close()
            n_frames, _secs = iio.count_frames_and_secs(str(self.path))
        except (RuntimeError, OSError, StopIteration) as exc:
            lines = str(exc).strip().splitlines()
            raise ImageReadError(
                f"{self.path}: cannot be read as a video ({lines[-1] if lines else type(exc).__name__}). "
                "Is the file complete and of the type its extension says?"
            ) from exc
        width, height = (int(v) for v in meta["size"])
        if n_frames < 1 or width < 1 or height < 1:
            raise ImageReadError(f"{self.path}: the video holds no frames.")
        self.fps = float(meta.get("fps") or 25.0)
        keys = ("fps", "duration", "codec", "pix_fmt", "rotate", "source_size")
        self.meta = {k: meta[k] for k in keys if k in meta}
        self.shape: tuple[int, int, int, int] = (int(n_frames), height, width, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4
        self._decoder = _Decoder(self)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"VideoFrames({str(self.path)!r}, shape={self.shape}, fps={self.fps:g})"

    def close(self) -> None:
        """End the decoder (FFmpeg process); a later read starts a new one."""
        self._decoder.close()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative counts from the end) as a read-only (H, W, 3) uint8 array."""
        return self._decoder.frame(index)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start``..``stop - 1`` in order, from a decoder of their own (one frame in memory)."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        decoder = _Decoder(self)
        try:
            for i in range(start, stop):
                yield decoder.frame(i)
        finally:
            decoder.close()

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            return self.frame(int(first))[rest] if rest else self.frame(int(first))
        if isinstance(first, slice):
            indices = range(*first.indices(self.shape[0]))
        else:
            indices = np.arange(self.shape[0])[np.asarray(first)].ravel()
        sub = (slice(None), *rest)
        frames = [self.frame(int(i))[rest] if rest else self.frame(int(i)) for i in indices]
        if not frames:
            return np.zeros((0, *self.shape[1:]), dtype=np.uint8)[sub]
        return np.stack(frames)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


class _Decoder:
    """One FFmpeg process reading frames forward; restarted with a seek for jumps."""

    def __init__(self, video: VideoFrames) -> None:
        self.video = video
        self.lock = threading.RLock()
        self.gen: Iterator[Any] | None = None
        self.next = 0
        self.frame_bytes = math.prod(video.shape[1:])

    def start(self, index: int) -> None:
        """(Re)start FFmpeg so that its next frame is ``index``. An input seek (-ss before -i)
        decodes from the keyframe before the time and drops frames up to it: frame-accurate."""
        self.close()
        params = None
        if index > 0:
            # Half a frame before frame `index`: the first frame at or after that time is `index`.
            params = ["-ss", f"{max(0.0, (index - 0.5) / self.video.fps):.6f}"]
        gen = ffmpeg().read_frames(str(self.video.path), pix_fmt="rgb24", input_params=params)
        next(gen)  # the metadata
        self.gen = gen
        self.next = index

    def close(self) -> None:
        with self.lock:
            if self.gen is not None:
                with contextlib.suppress(Exception):
                    self.gen.close()
                self.gen = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def frame(self, index: int) -> np.ndarray:
        n = self.video.shape[0]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"frame {index} out of range for a video of {n} frames")
        with self.lock:
            ahead = index - self.next
            if self.gen is None or ahead < 0 or ahead > max(2 * self.video.fps, 60):
                self.start(index)
            assert self.gen is not None
            while self.next < index:  # a short step ahead: decoding beats restarting
                next(self.gen, None)
                self.next += 1
            raw = next(self.gen, b"")
            self.next = index + 1
        if len(raw) != self.frame_bytes:
            self.close()
            raise ImageReadError(
                f"{self.video.path}: frame {index} could not be decoded (the file may be truncated)."
            )
        return np.frombuffer(raw, dtype=np.uint8).reshape(self.video.shape[1:])


def read_video(path: str | os.PathLike[str]) -> ImageFile:
    """A video as an ``ImageFile``: lazy ``VideoFrames`` data, axes "TYXC", fps in metadata."""
    frames = VideoFrames(path)
    return ImageFile(
        data=frames,
        axes="TYXC",
        axes_source="file",
        source=Path(path),
        format="video",
        metadata={"fps": frames.fps, "video": frames.meta},
    )


# ---------------------------------------------------------------------------------------------
# Writing


def overlay(frame: np.ndarray, labels: np.ndarray, *, alpha: float = 0.35) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``labels`` (H, W) drawn over it: a translucent fill in the
    label's colour (``PALETTE``) and a solid outline (skimage's ``find_boundaries``)."""
    from skimage.segmentation import find_boundaries

    out = np.array(frame, dtype=np.uint8, copy=True)
    labels = np.asarray(labels)
    if not labels.any():
        return out
    colours = PALETTE[(labels.astype(np.int64) - 1) % len(PALETTE)]
    inside = labels > 0
    blended = out[inside].astype(np.float32) * (1.0 - alpha) + colours[inside].astype(np.float32) * alpha
    out[inside] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    edge = find_boundaries(labels, mode="inner") & inside
    out[edge] = colours[edge]
    return out


class VideoWriter:
    """Writes RGB frames to an H.264 video, atomically (a temporary file renamed on ``close``).

    Use as a context manager: an exception inside leaves no file behind. Frames are (H, W, 3)
    uint8; odd sizes are padded by one pixel (yuv420p needs even ones).
    """

    def __init__(
        self, path: str | os.PathLike[str], fps: float, *, overwrite: bool = False, quality: int = 7
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self._atomic = atomic_path(self.path, overwrite=overwrite)
        self._gen: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=np.uint8)
        h, w = frame.shape[:2]
        if self._gen is None:
            self._size = (w + w % 2, h + h % 2)
            self._gen = ffmpeg().write_frames(
                str(self._tmp),
                self._size,
                fps=self.fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                quality=self.quality,
                macro_block_size=1,
                output_params=["-movflags", "+faststart"],
            )
            self._gen.send(None)
        if (w + w % 2, h + h % 2) != self._size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self._size}.")
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame))
        self.frames += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        gen, self._gen = self._gen, None
        try:
            if gen is not None:
                gen.close()  # flushes and waits for FFmpeg
            if exc_type is None and self.frames == 0:
                raise UserError(f"{self.path}: no frames to write.")
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)


def write_overlay_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    fps: float,
    *,
    overwrite: bool = False,
    alpha: float = 0.35,
) -> Path:
    """Stream ``frames`` with their ``labels`` drawn over them into an MP4 (one frame in memory)."""
    with VideoWriter(path, fps, overwrite=overwrite) as writer:
        for frame, lab in zip(frames, labels, strict=True):
            writer.write(overlay(frame, lab, alpha=alpha))
    return Path(path)


def write_mask_pages(
    path: str | os.PathLike[str],
    pages: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    dtype: Any,
    *,
    overwrite: bool = False,
) -> Path:
    """Per-frame labels as one zlib-compressed multi-page TIFF of ``shape`` (T, H, W), streamed."""
    import tifffile

    dtype = np.dtype(dtype)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            (np.asarray(p, dtype=dtype) for p in pages),
            shape=tuple(shape),
            dtype=dtype,
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": "TYX"},
        )
    return Path(path)
