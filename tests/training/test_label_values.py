"""Label values and what they can teach: class ids 1..K, the shared binarisation of masks, labels
without background, and one dtype policy with inference (issue 12.3, issue 16 items 13-15)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_madgnet.errors import UserError
from napari_madgnet.training.data import DataError, FileItem, items_from_arrays

from .conftest import blobs


def _items(labels, image=None, **kwargs):
    image = blobs()[0] if image is None else image
    notes: list[str] = []
    items, k = items_from_arrays(image, labels, notes=notes, **kwargs)
    return items, k, notes


def test_a_0_255_mask_in_multiclass_mode_suggests_binary() -> None:
    mask = (blobs()[1] > 0).astype(np.uint8) * 255
    with pytest.raises(DataError, match=r"values \{0, 255\}.*254 class id.*use label mode binary"):
        _items(mask, label_mode="multiclass")
    _, k, _ = _items(mask, label_mode="binary")
    assert k == 1


def test_class_ids_must_run_1_to_k_without_gaps() -> None:
    labels = np.zeros((96, 96), np.uint8)
    labels[10:30, 10:30], labels[40:60, 40:60], labels[70:90, 10:30] = 1, 2, 100
    with pytest.raises(DataError, match=r"\{0, 1, 2, 100\}: 97 class id\(s\) .*Renumber the classes"):
        _items(labels, label_mode="multiclass")
    with pytest.raises(DataError, match="without gaps"):
        _items(labels, label_mode="nested")
    labels[labels == 100] = 3
    _, k, notes = _items(labels, label_mode="multiclass")
    assert k == 3 and notes == []


def test_declared_classes_may_be_missing_with_a_warning() -> None:
    labels = np.zeros((96, 96), np.uint8)
    labels[10:30, 10:30], labels[40:60, 40:60] = 1, 3
    items, k, notes = _items(labels, label_mode="multiclass", num_classes=4)
    assert k == 4 and items[0].target.shape[0] == 4
    assert len(notes) == 1 and "{2, 4} of 1..4 have no pixel" in notes[0]
    with pytest.raises(DataError, match="go up to 3 but num_classes is 2"):
        _items(labels, label_mode="multiclass", num_classes=2)


def test_label_values_near_2_to_the_60() -> None:
    labels = blobs()[1].astype(np.uint64)
    labels[labels == 3] = 2**60
    with pytest.raises(DataError, match="without gaps"):  # not numpy's "array is too big"
        _items(labels, label_mode="multiclass")
    items, k, _ = _items(labels, label_mode="binary")  # instance ids: all foreground
    assert k == 1 and items[0].target.sum() == (labels > 0).sum()


def test_labels_that_cannot_teach_are_warned_about() -> None:
    everything = np.ones((96, 96), np.uint8)
    _, _, notes = _items(everything)
    assert len(notes) == 1 and "no background" in notes[0]
    scribbles = np.zeros((96, 96), np.uint8)
    scribbles[40:50, 40:50] = 1
    _, _, notes = _items(scribbles, label_mode="scribble")
    assert len(notes) == 1 and "no background (2)" in notes[0]
    scribbles[0:5, 0:5] = 2
    _, _, notes = _items(scribbles, label_mode="scribble")
    assert notes == []
    _, _, notes = _items(blobs()[1])  # instance labels with background: nothing to say
    assert notes == []


def test_an_image_with_no_signal_is_warned_about() -> None:
    noise = np.random.default_rng(0).integers(1000, 1003, size=(96, 96)).astype(np.uint16)
    items, _, notes = _items(blobs()[1], image=noise)
    assert any("too narrow to hold a signal" in n for n in notes)
    assert float(items[0].image.max()) <= 0.25


def test_complex_images_are_refused_as_inference_refuses_them() -> None:
    image = blobs()[0].astype(np.complex64)
    with pytest.raises(UserError, match=r"complex64 .*numpy\.abs"):
        _items(blobs()[1], image=image)


def test_jpeg_masks_in_folder_training_use_the_shared_rule(tmp_path) -> None:
    image, labels = blobs()
    truth = labels > 0
    iio.imwrite(tmp_path / "a.png", image)
    iio.imwrite(tmp_path / "a_mask.jpg", truth.astype(np.uint8) * 255, extension=".jpg", quality=75)
    jpeg = np.asarray(iio.imread(tmp_path / "a_mask.jpg"))
    assert len(np.unique(jpeg)) > 2
    item = FileItem(tmp_path / "a.png", tmp_path / "a_mask.jpg", "binary", 1, "auto").load()
    np.testing.assert_array_equal(item.target[0] > 0, truth)
    # The same JPEG given as labels (madgnet finetune --labels mask.jpg) is read the same way, with a note.
    items, _, notes = _items(jpeg, image=image)
    np.testing.assert_array_equal(items[0].target[0] > 0, truth)
    assert any("binarised at > 127.5" in n for n in notes)
