"""Segmentation of images of any layout, dtype and size with a MADGNet model.

``segment(image, model, InferenceConfig(...))`` returns a ``SegmentationResult`` with per-class
probabilities, a label image and provenance; ``iter_segment`` is the same as a generator of
``jobs.Progress`` for napari's thread workers; ``postprocess`` turns cached probabilities into
labels again without the network; ``fast_model`` makes the fast inference copy of a model once,
for callers that segment many images with it. Qt-free.
"""

from napari_madgnet.hashing import file_sha256
from napari_madgnet.inference.config import GEOMETRIES, InferenceConfig, PostprocessConfig
from napari_madgnet.inference.engine import SegmentationResult, choose_geometry, iter_segment, segment
from napari_madgnet.inference.postprocess import postprocess
from napari_madgnet.inference.runner import fast_model
from napari_madgnet.layout import Layout, guess_axes, resolve_layout

__all__ = [
    "GEOMETRIES",
    "InferenceConfig",
    "Layout",
    "PostprocessConfig",
    "SegmentationResult",
    "choose_geometry",
    "fast_model",
    "file_sha256",
    "guess_axes",
    "iter_segment",
    "postprocess",
    "resolve_layout",
    "segment",
]
