"""Segment a video: every frame through the engine, masks and an overlay streamed to files.

The frames are read on demand (``video.VideoFrames``), the network's outputs go to a temporary
zarr store, and the masks and the overlay are written frame by frame from it, so memory holds a
few frames whatever the video's length (``benchmarks/bench_video.py`` measures it).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_madgnet.errors import UserError
from napari_madgnet.inference.config import InferenceConfig
from napari_madgnet.inference.engine import segment
from napari_madgnet.video import VideoFrames, write_mask_pages, write_overlay_video


def segment_video(
    video: str | os.PathLike[str] | VideoFrames,
    model: Any,
    config: Any = None,
    *,
    mask_path: str | os.PathLike[str] | None = None,
    overlay_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[Any], None] | None = None,
    cancel: Any = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Segment every frame of a video and write per-frame masks and/or an overlay video.

    ``config``: an ``InferenceConfig`` (its ``axes`` is set to "TYXC"). ``mask_path``: a .tif/.tiff
    (multi-page, T pages) or a .zarr store (kept as the engine writes it: probabilities and
    mask). ``overlay_path``: an .mp4 of the frames with the masks drawn over them, at the video's
    frame rate. The network's outputs go to a temporary zarr store in ``work_dir`` (default: the
    mask's or overlay's folder), so memory holds a few frames whatever the video's length.
    Returns {"outputs": [paths], "provenance": ..., "frames": T}. Raises FileExistsError for
    existing outputs unless ``overwrite``; writes nothing when cancelled or failing.
    """
    frames = video if isinstance(video, VideoFrames) else VideoFrames(video)
    config = dataclasses.replace(config or InferenceConfig(), axes="TYXC", channel=None)
    outputs = [Path(p) for p in (mask_path, overlay_path) if p is not None]
    if not outputs:
        raise UserError("segment_video needs mask_path, overlay_path or both.")
    for p in outputs:
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    keep_zarr = mask_path is not None and Path(mask_path).suffix.lower() == ".zarr"
    folder = Path(work_dir) if work_dir is not None else outputs[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tmpdir = tempfile.mkdtemp(prefix=".madgnet-video-", dir=folder)
    try:
        store = Path(mask_path) if keep_zarr else Path(tmpdir) / "result.zarr"
        config = dataclasses.replace(config, output_zarr=str(store))
        result = segment(frames, model, config, progress=progress, cancel=cancel, overwrite=overwrite)
        if keep_zarr:
            written.append(store)
        mask = result.mask
        n = int(mask.shape[0])

        def pages() -> Iterator[np.ndarray]:
            for t in range(n):
                yield np.asarray(mask[t])

        if mask_path is not None and not keep_zarr:
            write_mask_pages(mask_path, pages(), tuple(mask.shape), mask.dtype, overwrite=overwrite)
            written.append(Path(mask_path))
        if overlay_path is not None:
            write_overlay_video(overlay_path, frames.iter_frames(), pages(), frames.fps, overwrite=overwrite)
            written.append(Path(overlay_path))
    except BaseException:
        for p in written:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {"outputs": [str(p) for p in written], "provenance": result.provenance, "frames": n}
