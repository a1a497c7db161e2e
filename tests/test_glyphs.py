"""The glyphs data set (benchmarks.glyphs): a known answer is only worth its masks, so check that they lie where the
digit was painted on the photo, and that validation glyphs are other handwritten samples than the training ones. No
training here."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.glyphs import _make_glyphs, glyph_samples, make_glyphs, photo_crops


@pytest.fixture(scope="module")
def glyphs():
    return make_glyphs(60, seed=3)


def test_images_are_64x64_rgb_in_the_unit_range(glyphs):
    images, labels, masks = glyphs
    assert images.shape == (60, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert masks.shape == (60, 64, 64) and masks.dtype == bool
    assert labels.dtype.kind == "i"


def test_the_same_seed_gives_the_same_images_and_another_seed_others(glyphs):
    again = make_glyphs(60, seed=3)
    for first, second in zip(glyphs, again):
        np.testing.assert_array_equal(first, second)
    other_images, _, other_masks = make_glyphs(60, seed=4)
    assert not np.array_equal(glyphs[0], other_images)
    assert not np.array_equal(glyphs[2], other_masks)


def test_labels_are_balanced(glyphs):
    assert np.bincount(glyphs[1], minlength=3).tolist() == [20, 20, 20]
    assert sorted(np.bincount(make_glyphs(7, seed=0)[1], minlength=3)) == [2, 2, 3]


def test_masks_are_glyph_sized(glyphs):
    """Not a speck, not the photo: a 0, 1 or 7 of 18-30 px has some 90-500 pixels of ink (of 4,096)."""
    area = glyphs[2].sum(axis=(1, 2))
    assert area.min() >= 40 and area.max() <= 0.15 * 64 * 64


def test_the_mask_is_where_painting_changed_the_photo():
    """Against the same photo crops without their glyphs: the image moved by at least 0.1 on average inside the
    mask, and ten times less outside it (only the glyph's faint fringe)."""
    images, _, masks = make_glyphs(12, seed=5)
    change = np.abs(images - photo_crops(12, seed=5)).mean(axis=-1)
    for moved, mask in zip(change, masks):
        assert moved[mask].mean() > 0.1
        assert moved[~mask].mean() < 0.1 * moved[mask].mean()


def test_training_and_validation_glyphs_are_different_handwritten_samples():
    train, validation = glyph_samples("train"), glyph_samples("validation")
    for train_pool, validation_pool in zip(train, validation):
        assert len(train_pool) > 2 * len(validation_pool) > 0
        assert not set(train_pool) & set(validation_pool)
    used = _make_glyphs(90, 0, "train")[3]
    assert set(used) <= set(np.concatenate(train))
