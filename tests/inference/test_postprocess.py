"""Post-processing on hand-made probabilities: each option does exactly its job."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_madgnet.inference import PostprocessConfig, postprocess
from napari_madgnet.inference.runner import is_out_of_memory


def ring_and_dot() -> np.ndarray:
    """(1, 1, 20, 20): a 10 x 10 square ring (a 4 x 4 hole inside) and a separate 2-pixel object."""
    p = np.zeros((1, 1, 20, 20), np.float32)
    p[0, 0, 2:12, 2:12] = 0.9
    p[0, 0, 5:9, 5:9] = 0.1
    p[0, 0, 16, 16:18] = 0.8
    return p


def test_threshold_and_fill_holes():
    p = ring_and_dot()
    plain = postprocess(p, PostprocessConfig())
    assert plain.shape == (1, 20, 20) and plain.sum() == 100 - 16 + 2
    filled = postprocess(p, PostprocessConfig(fill_holes=True))
    assert filled.sum() == 100 + 2
    assert postprocess(p, PostprocessConfig(threshold=0.85)).sum() == 100 - 16


def test_min_size_and_largest():
    p = ring_and_dot()
    assert postprocess(p, PostprocessConfig(min_size=3)).sum() == 84  # the 2-pixel object is gone
    assert postprocess(p, PostprocessConfig(min_size=100)).sum() == 0
    assert postprocess(p, PostprocessConfig(largest=True)).sum() == 84


def test_instances_are_unique_over_the_stack():
    p = np.concatenate([ring_and_dot(), ring_and_dot()], axis=1)  # two planes
    inst = postprocess(p, PostprocessConfig(instances=True))
    assert inst.dtype == np.int32
    assert sorted(np.unique(inst[0])) == [0, 1, 2] and sorted(np.unique(inst[1])) == [0, 3, 4]


def test_higher_classes_paint_over_lower():
    p = np.zeros((2, 10, 10), np.float32)  # class 1: optic disc, class 2: cup inside it
    p[0, 1:9, 1:9] = 0.9
    p[1, 3:7, 3:7] = 0.9
    labels = postprocess(p, PostprocessConfig())
    assert labels.dtype == np.uint8
    assert (labels == 2).sum() == 16 and (labels == 1).sum() == 64 - 16 and labels[0, 0] == 0
    inst = postprocess(p, PostprocessConfig(instances=True))
    assert sorted(np.unique(inst)) == [0, 1, 2]


def test_postprocess_into_a_preallocated_output_and_bad_shapes():
    p = ring_and_dot()
    out = np.zeros((1, 20, 20), np.uint8)
    assert postprocess(p, PostprocessConfig(), out=out) is out and out.sum() == 86
    with pytest.raises(ValueError, match=r"classes, \.\.\., H, W"):
        postprocess(np.zeros((20, 20)), PostprocessConfig())


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
