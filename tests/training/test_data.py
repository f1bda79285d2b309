from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_madgnet.training import DataError, TrainConfig, data_from_arrays
from napari_madgnet.training.data import TrainStream, items_from_arrays, pair_files, split_items
from napari_madgnet.training.losses import esdm_loss
from napari_madgnet.training.targets import boundary_target, distance_target, labels_to_masks

from .conftest import blobs


def test_bad_inputs_fail_before_work(tiny_cfg) -> None:
    image, labels = blobs()
    with pytest.raises(DataError, match="do not match"):
        data_from_arrays(image, labels[:50], tiny_cfg)
    with pytest.raises(DataError, match="no foreground"):
        data_from_arrays(image, np.zeros_like(labels), tiny_cfg)
    with pytest.raises(DataError, match="not integers"):
        data_from_arrays(image, labels.astype(np.float32), tiny_cfg)
    with pytest.raises(DataError, match="larger than the training image"):
        data_from_arrays(image, labels, tiny_cfg.replace(patch_size=128))
    stack = np.zeros((3, 96, 96), np.uint16)
    with pytest.raises(DataError, match="no foreground"):
        data_from_arrays(np.stack([image] * 3), stack, tiny_cfg)


def test_sparse_stack_uses_only_annotated_planes_and_rgb() -> None:
    image, labels = blobs()
    stack = np.stack([labels, np.zeros_like(labels), labels])
    items, k = items_from_arrays(np.stack([image] * 3), stack)
    assert len(items) == 2 and k == 1 and items[0].image.shape == (1, 96, 96)
    rgb = np.stack([image] * 3, axis=-1)
    items, _ = items_from_arrays(rgb, labels)
    assert items[0].image.shape == (3, 96, 96) and items[0].image.max() <= 1.0


def test_label_modes() -> None:
    lab = np.array([[0, 1, 2], [2, 1, 0]])
    t, v = labels_to_masks(lab, "nested", 2)
    assert t[0].tolist() == [[0, 1, 1], [1, 1, 0]] and t[1].tolist() == [[0, 0, 1], [1, 0, 0]]
    t, _ = labels_to_masks(lab, "multiclass", 2)
    assert t[0].tolist() == [[0, 1, 0], [0, 1, 0]]
    t, v = labels_to_masks(lab, "scribble", 1)
    assert t[0].tolist() == [[0, 1, 0], [0, 1, 0]] and v[0].tolist() == [[0, 1, 1], [1, 1, 0]]
    with pytest.raises(DataError, match="Scribble"):
        items_from_arrays(np.zeros((40, 40)), np.full((40, 40), 3), label_mode="scribble")


def test_targets() -> None:
    m = np.zeros((1, 40, 40), np.float32)
    m[0, 10:30, 10:30] = 1
    b = boundary_target(m)
    assert b[0, 20, 8:13].tolist() == [0, 1, 1, 0, 0]  # about 2 px, across the edge
    assert b[0, 0].sum() == 0
    d = distance_target(m)
    assert d.min() == 0 and d.max() == 1 and d[0, 5, 5] == 0


def test_edge_weight_is_pranets_31x31_pool() -> None:
    import torch
    import torch.nn.functional as F

    from napari_madgnet.training.losses import edge_weight

    mask = (torch.rand(3, 2, 47, 80, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    direct = 1 + 5 * torch.abs(F.avg_pool2d(mask, 31, stride=1, padding=15) - mask)
    torch.testing.assert_close(edge_weight(mask), direct, rtol=0, atol=1e-5)


def test_split_is_deterministic_and_never_empty(tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    data = data_from_arrays(image, labels, tiny_cfg)
    assert len(data.val) == 1 and data.train[0].image.shape[1] + data.val[0].image.shape[1] == 128
    items = list(range(10))
    assert split_items(items, 0.2, 3) == split_items(items, 0.2, 3)
    assert len(split_items(items, 0.2, 3).val) == 2
    off = split_items(items, 0.0, 3)  # a validation share of 0 means: no validation, said so
    assert off.train == items and off.val == [] and "last model" in off.note


def test_stream_is_deterministic_and_visits_foreground(tiny_cfg) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg.replace(patch_size=32, scales=(1.0, 1.5)))
    stream = TrainStream(data.train, tiny_cfg.replace(patch_size=32, scales=(1.0, 1.5)), 2)
    a, b = stream[5], stream[5]
    assert all(torch.equal(a[k], b[k]) for k in a)
    sizes = {stream[i]["image"].shape[-1] for i in range(0, 40, 2)}
    assert sizes == {32, 64}  # multi-scale: one size per batch, rounded to 32
    assert stream[0]["image"].shape[-1] == stream[1]["image"].shape[-1]
    assert sum(float(stream[i]["mask"].mean()) > 0 for i in range(20)) >= 10


def test_loss_ignores_unannotated_pixels() -> None:
    torch.manual_seed(0)
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    valid = torch.zeros_like(mask)
    valid[..., :16] = 1
    batch = {"mask": mask, "valid": valid, "boundary": mask * 0, "distance": mask * 0.5}
    from napari_madgnet.training import LossConfig

    stages = [tuple(torch.randn(2, 1, 32, 32) for _ in range(3)) for _ in range(4)]
    changed = [tuple(t.clone() for t in s) for s in stages]
    for s in changed:
        for t in s:
            t[..., 16:] = 100.0
    for scribble in (False, True):
        la, _ = esdm_loss(stages, batch, LossConfig(), scribble=scribble)
        lb, _ = esdm_loss(changed, batch, LossConfig(), scribble=scribble)
        assert torch.allclose(la, lb)


def test_pair_files(tmp_path) -> None:
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    for n in ("a", "b"):
        np.save(tmp_path / "i" / f"{n}.npy", np.zeros((4, 4)))
    np.save(tmp_path / "m" / "a.npy", np.zeros((4, 4)))
    np.save(tmp_path / "m" / "b_mask.npy", np.zeros((4, 4)))
    assert [(p.name, q.name) for p, q in pair_files(tmp_path / "i", tmp_path / "m")] == [
        ("a.npy", "a.npy"),
        ("b.npy", "b_mask.npy"),
    ]
    (tmp_path / "m" / "b_mask.npy").unlink()
    with pytest.raises(DataError, match="no mask"):
        pair_files(tmp_path / "i", tmp_path / "m")


def test_preset_config_is_used(tiny_cfg) -> None:
    assert isinstance(tiny_cfg, TrainConfig)
