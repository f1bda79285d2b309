"""Annotate next: ranked regions and slices from an uncertainty map; object F1 and PQ."""

from __future__ import annotations

import numpy as np
import pytest

from napari_madgnet.errors import UserError
from napari_madgnet.qc import compare_masks, object_scores
from napari_madgnet.suggest import (
    Suggestion,
    features,
    points_data,
    random_regions,
    shapes_data,
    suggest_corrections,
)


def test_regions_are_ranked_by_mean_uncertainty_and_exclusions_are_skipped() -> None:
    # grid of a 150 x 200 plane at 64 px: rows start 0, 64, 86 (shifted to the border), columns 0,
    # 64, 128, 136
    unc = np.zeros((1, 150, 200), np.float32)
    unc[0, 0:64, 64:128] = 0.9  # one region is hot
    unc[0, 64:128, 0:64] = 0.5  # one lukewarm; the shifted last row's (86:150, 0:64) sees 42 rows of it
    unc[0, 146:, 196:] = 1.0  # a hot corner, only in the last row and column's region
    got = suggest_corrections(unc, "YX", region_size=64, count=3)
    assert [s.rank for s in got] == [0, 1, 2]
    assert [s.box for s in got] == [(0, 64, 64, 128), (64, 0, 128, 64), (86, 0, 150, 64)]
    assert [s.score for s in got] == pytest.approx([0.9, 0.5, 0.5 * 42 / 64])
    again = suggest_corrections(unc, "YX", region_size=64, count=1, exclude=got[:2])
    assert again[0].box == (86, 136, 150, 200)  # the third overlaps the second: skipped
    assert again[0].score == pytest.approx(16 / 64**2)


def test_stacks_rank_whole_slices_and_the_layer_data_fits_napari() -> None:
    unc = np.zeros((1, 4, 32, 40), np.float32)  # (K, Z, Y, X)
    unc[0, 2] = 0.7
    unc[0, 0, :16, :16] = 1.0  # plane 0: one hot region, a cool plane on average
    got = suggest_corrections(unc, "ZYX", count=2)
    assert [s.index for s in got] == [(2,), (0,)] and got[0].box == (0, 0, 32, 40)
    rects = shapes_data(got)
    assert rects[0].shape == (4, 3) and np.all(rects[0][:, 0] == 2)
    assert rects[0][:, 1].min() == -0.5 and rects[0][:, 2].max() == 39.5
    assert points_data(got).tolist()[0] == [2.0, 15.5, 19.5]
    cols = features(got)
    assert cols["rank"].tolist() == [1, 2] and cols["x1"].tolist() == [40, 40]
    regions = suggest_corrections(unc, "ZYX", mode="regions", region_size=16, count=1)
    assert regions[0].index == (0,) and regions[0].box == (0, 0, 16, 16)
    with pytest.raises(UserError, match="axes"):
        suggest_corrections(unc[0, 0], "ZYX")
    with pytest.raises(UserError, match="mode"):
        suggest_corrections(unc, "ZYX", mode="tiles")


def test_random_regions_come_from_the_same_grid_and_avoid_corrected_ones() -> None:
    first = random_regions((128, 192), region_size=64, count=2, seed=3)
    assert len(first) == 2 and all(s.box[2] - s.box[0] == 64 for s in first)
    rest = random_regions((128, 192), region_size=64, count=10, seed=4, exclude=first)
    assert len(rest) == 4 and not any(a.overlaps(b) for a in rest for b in first)
    assert random_regions((128, 192), count=2, seed=3) == first


def test_object_scores_count_matches_and_compare_masks_agrees() -> None:
    ref = np.zeros((30, 60), np.int32)
    ref[2:12, 2:12] = 1  # found exactly
    ref[2:12, 20:30] = 2  # found, IoU 0.8
    ref[20:28, 40:48] = 3  # missed
    pred = np.zeros_like(ref)
    pred[2:12, 2:12] = 5
    pred[2:12, 22:30] = 6
    pred[20:25, 2:7] = 7  # false positive
    s = object_scores(pred, ref)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert s["sq"] == pytest.approx((1.0 + 0.8) / 2)
    assert s["pq"] == pytest.approx((1.0 + 0.8) / (2 + 0.5 * 2))
    overall = compare_masks(pred, ref).overall
    assert overall["object_f1"] == pytest.approx(s["f1"]) and overall["panoptic_quality"] == pytest.approx(
        s["pq"]
    )
    assert object_scores(np.zeros_like(ref), np.zeros_like(ref))["pq"] == 1.0
    with pytest.raises(UserError, match="shape"):
        object_scores(pred[:10], ref)


def test_suggestion_overlap_is_per_plane() -> None:
    a = Suggestion((1,), (0, 0, 10, 10), 0.5)
    assert a.overlaps(((1,), (9, 9, 20, 20))) and not a.overlaps(((1,), (10, 0, 20, 10)))
    assert not a.overlaps(((0,), (0, 0, 10, 10)))
