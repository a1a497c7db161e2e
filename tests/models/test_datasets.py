import numpy as np
import pytest

from models.datasets import class_names, load_dataset, load_digits, make_rectangles


def test_rectangles_are_deterministic_for_a_seed():
    a_x, a_y = make_rectangles(50, seed=3)
    b_x, b_y = make_rectangles(50, seed=3)
    c_x, _ = make_rectangles(50, seed=4)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert not np.array_equal(a_x, c_x)


def test_rectangles_follow_the_article_with_a_real_white():
    x, y = make_rectangles(400, seed=0)
    assert x.shape == (400, 64, 64, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (y == 0).sum() == 200 and (y == 1).sum() == 200
    for image, label in zip(x[:100], y[:100]):
        white = (image == 1.0).all(axis=2)
        if label == 1:
            continue
        rows, cols = np.nonzero(white)
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        # corners: top-left in the first half of each axis, bottom-right in the second half
        assert top < 32 and left < 32 and bottom >= 32 and right >= 32
        assert white[top : bottom + 1, left : right + 1].all()


def test_rectangle_free_images_are_smooth_colour_fields():
    x, y = make_rectangles(40, seed=1)
    free = x[y == 1]
    # each channel spans [0, 1] and neighbouring pixels differ little (smooth, not noise)
    assert np.allclose(free.min(axis=(1, 2)), 0.0) and np.allclose(free.max(axis=(1, 2)), 1.0)
    assert np.abs(np.diff(free, axis=1)).mean() < 0.05


def test_digits_are_scikit_learns_real_digits_upscaled():
    x, y = load_digits()
    assert x.shape == (1797, 32, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey replicated to RGB


def test_splits_are_stratified_and_repeatable():
    a = load_dataset("rectangles", images=200, val_fraction=0.1)
    b = load_dataset("rectangles", images=200, val_fraction=0.1)
    assert len(a.y_val) == 20 and (a.y_val == 0).sum() == 10
    np.testing.assert_array_equal(a.x_val, b.x_val)
    digits = load_dataset("digits", val_fraction=0.2)
    assert len(digits.y_val) == 360 and digits.class_names == tuple("0123456789")


def test_unknown_data_set_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        class_names("cifar")


def test_the_rectangles_known_answer_is_each_rectangles_pixels():
    from models.datasets import make_rectangles_with_masks

    x, y, masks = make_rectangles_with_masks(60, seed=2)
    assert not masks[y == 1].any()
    for image, mask in zip(x[y == 0], masks[y == 0]):
        assert mask.any() and (image[mask] == 1.0).all()
    data = load_dataset("rectangles", images=200)
    assert data.val_masks.shape == data.x_val.shape[:3]
    assert all((image[mask] == 1.0).all() and mask.any() == (label == 0)
               for image, mask, label in zip(data.x_val, data.val_masks, data.y_val))


def test_shapes_hold_three_objects_of_the_class_shape_among_clutter_and_the_answer_is_their_pixels():
    from scipy.ndimage import binary_fill_holes, label as connected

    from models.datasets import _make_shapes, make_shapes_with_masks, make_shapes_without_objects

    x, y, masks = make_shapes_with_masks(200, seed=4)
    again = make_shapes_with_masks(200, seed=4)
    np.testing.assert_array_equal(x, again[0])
    assert x.shape == (200, 64, 64, 3) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert (y == 0).sum() == (y == 1).sum() == 100
    objects = [connected(mask)[1] for mask in masks]  # three objects apart from each other (two where no room is left)
    assert set(objects) <= {2, 3} and objects.count(3) >= 198
    areas = masks.sum(axis=(1, 2))
    assert 2 * 100 <= areas.min() and areas.max() <= 3 * 160
    _, _, objects, clutter = _make_shapes(50, 5, 64)
    assert not (objects & clutter).any() and (clutter.sum(axis=(1, 2)) > 0).all()
    rings, pluses = masks[y == 0], masks[y == 1]
    # a ring has a hole (background inside it), a plus has none
    assert all((binary_fill_holes(m) & ~m).any() for m in rings[:20])
    assert not any((binary_fill_holes(m) & ~m).any() for m in pluses[:20])
    empty = make_shapes_without_objects(10, seed=1)
    assert empty.shape == (10, 64, 64, 3)
    data = load_dataset("shapes", images=200)
    assert data.class_names == ("ring", "plus") and data.val_masks.shape == data.x_val.shape[:3]
