"""Every segmenter gives contiguous ids of the image's shape, bad settings are refused, and the outline figures
(benchmarks.outlines) give known values on hand-made segmentations."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.outlines import boundary_recall, measure, undersegmentation_error
from models.datasets import make_rectangles
from worker.engine import ExplainParams
from worker.engine.params import SEGMENTERS
from worker.engine.segmentation import segment

IMAGES, _ = make_rectangles(2, seed=5)


def photograph(size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    return resize(data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)


def noisy(size: int) -> np.ndarray:
    return np.random.default_rng(size).random((size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("options", [
    {"segmentation": "quickshift"}, {}, {"slic_lab": False}, {"segmentation": "felzenszwalb"},
    {"segmentation": "watershed"}, {"segmentation": "watershed", "compactness": 0.0, "sigma": 0.0},
    {"segmentation": "felzenszwalb", "n_segments": 100, "scale": 5.0, "min_size": 0.0},
], ids=["quickshift", "slic", "slic-rgb", "felzenszwalb", "watershed", "watershed-plain", "felzenszwalb-fine"])
@pytest.mark.parametrize("image", [IMAGES[0], noisy(48)], ids=["rectangle", "noise-48"])
def test_every_segmenter_gives_contiguous_ids_of_the_images_shape(options, image):
    segments = segment(image, ExplainParams(**options))
    assert segments.shape == image.shape[:2] and segments.dtype == np.int32
    np.testing.assert_array_equal(np.unique(segments), np.arange(segments.max() + 1))
    assert segments.max() >= 1


def test_the_parameters_name_every_segmenter():
    for name in SEGMENTERS:
        assert ExplainParams(segmentation=name).segmentation == name


def test_the_default_segmentation_is_the_quality_benchmarks_choice():
    params = ExplainParams()  # benchmarks.quality's grid chooses it; the article's preset keeps lime's quickshift
    assert (params.segmentation, params.scale, params.min_size, params.sigma) == ("felzenszwalb", 25.0, 20.0, 1.0)
    assert ExplainParams(segmentation="slic").compactness == 10.0


@pytest.mark.parametrize("size", [64, 224])
def test_grid_segmenters_give_about_n_segments_at_any_size(size):
    image = photograph(size)
    for name in ("slic", "watershed"):
        count = int(segment(image, ExplainParams(segmentation=name, n_segments=50)).max()) + 1
        assert 25 <= count <= 75, (name, size, count)


def test_felzenszwalbs_min_size_grows_with_the_mean_superpixel_area():
    params = ExplainParams(segmentation="felzenszwalb", scale=1.0, min_size=20.0, sigma=0.0)
    for size in (64, 224):
        areas = np.bincount(segment(noisy(size), params).ravel())
        assert areas.min() >= round(20 * size * size / 4096)  # noise: every region is held at min_size


@pytest.mark.parametrize("bad", [
    {"segmentation": "grid"}, {"n_segments": 0}, {"n_segments": 2.5}, {"n_segments": True}, {"compactness": -1.0},
    {"segmentation": "slic", "compactness": 0.0}, {"compactness": float("nan")}, {"sigma": -0.5}, {"scale": 0.0}, {"scale": -3.0},
    {"min_size": -1.0}, {"slic_lab": "yes"}, {"sigma": "1"},
])
def test_bad_segmenter_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ExplainParams(**bad)


MASK = np.zeros((10, 10), dtype=bool)
MASK[2:6, 3:8] = True  # 20 pixels of 100


def test_a_segmentation_equal_to_the_mask_follows_it_exactly():
    segments = MASK.astype(np.int32)
    assert undersegmentation_error(segments, MASK) == 0.0
    assert boundary_recall(segments, MASK, tolerance=0) == 1.0 == boundary_recall(segments, MASK)


def test_a_single_superpixel_straddles_the_whole_outline():
    segments = np.zeros((10, 10), dtype=np.int32)
    assert undersegmentation_error(segments, MASK) == pytest.approx(min(20, 80) / 100)
    assert boundary_recall(segments, MASK) == 0.0


def test_the_undersegmentation_error_counts_each_straddling_superpixels_smaller_side():
    segments = np.zeros((10, 10), dtype=np.int32)
    segments[:, 5:] = 1  # left: 8 mask pixels of 50; right: 12 of 50
    assert undersegmentation_error(segments, MASK) == pytest.approx((8 + 12) / 100)
    segments[:, :] = np.arange(10)[:, None] // 5  # rows 0-4 (15 mask pixels of 50), rows 5-9 (5 of 50)
    assert undersegmentation_error(segments, MASK) == pytest.approx((15 + 5) / 100)


def test_the_boundary_recall_tolerance_is_chebyshev():
    segments = np.zeros((10, 10), dtype=np.int32)
    segments[:, 8:] = 1  # a boundary between columns 7 and 8, along the mask's right edge (column 7)
    outline = 14  # the mask's outline: its 20 pixels less the 6 inside (rows 3-4, columns 4-6)
    assert boundary_recall(segments, MASK, tolerance=0) == pytest.approx(4 / outline)  # column 7, rows 2-5
    segments[:, 8:] = 0
    segments[:, 9:] = 1  # one column further: within 1 of column 7 only through the dilation
    assert boundary_recall(segments, MASK, tolerance=0) == 0.0
    assert boundary_recall(segments, MASK, tolerance=1) == pytest.approx(4 / outline)
    # and column 6 at 2 (the boundary pixels are columns 8 and 9): the outline's top and bottom rows there
    assert boundary_recall(segments, MASK, tolerance=2) == pytest.approx(6 / outline)


def test_an_outline_that_does_not_exist_has_no_recall_and_bad_shapes_are_refused():
    segments = np.zeros((10, 10), dtype=np.int32)
    assert np.isnan(boundary_recall(segments, np.zeros((10, 10), dtype=bool)))
    assert np.isnan(boundary_recall(segments, np.ones((10, 10), dtype=bool)))
    with pytest.raises(ValueError):
        undersegmentation_error(segments, MASK[:5])
    with pytest.raises(ValueError):
        boundary_recall(segments, MASK, tolerance=-1)


def test_measure_averages_each_setting_over_the_images():
    images = [IMAGES[0], IMAGES[1]]
    masks = [np.zeros(IMAGES[0].shape[:2], dtype=bool)] * 2
    masks[0] = masks[0].copy()
    masks[0][10:30, 10:30] = True
    rows = measure([("slic", {}), ("watershed", {"segmentation": "watershed"})], images, masks)
    assert [row["name"] for row in rows] == ["slic", "watershed"]
    for row in rows:
        assert row["superpixels"] > 1 and row["seconds"] > 0 and 0 <= row["undersegmentation_error"] <= 0.5
        assert 0 <= row["boundary_recall"] <= 1  # the empty mask's NaN is left out of the mean
    timed = measure([("slic", {})], images)
    assert timed[0]["undersegmentation_error"] is None and timed[0]["boundary_recall"] is None
