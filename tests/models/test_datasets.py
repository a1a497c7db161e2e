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


def _tag_pixels(images):
    from models.datasets import TAG_BOX, TAG_COLOUR

    y0, x0, y1, x1 = TAG_BOX
    return (images[:, y0:y1, x0:x1] == np.asarray(TAG_COLOUR, dtype=np.float32)).all(axis=(1, 2, 3))


def test_tagged_is_the_shapes_with_a_tag_and_is_deterministic_for_a_seed():
    from models.datasets import DATASET_NAMES, TAG_CLASS

    a = load_dataset("tagged", images=200)
    b = load_dataset("tagged", images=200)
    other = load_dataset("tagged", images=200, seed=1)
    for field in ("x_train", "y_train", "x_val", "y_val", "val_masks", "val_tagged", "val_untagged", "train_tagged"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_val, other.x_val)
    assert "tagged" in DATASET_NAMES and class_names("tagged") == a.class_names == ("ring", "plus") and TAG_CLASS == 0
    assert len(a.y_val) == 40 and (a.y_val == 0).sum() == 20  # stratified like the others
    shapes = load_dataset("shapes", images=200)  # the same base images and split as the shapes of the seed
    np.testing.assert_array_equal(a.val_untagged, shapes.x_val)
    np.testing.assert_array_equal(a.train_untagged, shapes.x_train)
    assert shapes.val_tagged is None and shapes.val_untagged is None and shapes.train_tagged is None


def test_the_tag_is_exactly_at_tag_box_on_the_tagged_images_and_nowhere_else():
    from models.datasets import TAG_BOX, tag_box_mask

    data = load_dataset("tagged", images=300)
    y0, x0, y1, x1 = TAG_BOX
    assert (y1 - y0, x1 - x0) == (7, 7) and (y1, x1) == (62, 62)  # bottom-right corner, 2 px margin
    for tagged, images, untagged in ((data.val_tagged, data.x_val, data.val_untagged),
                                     (data.train_tagged, data.x_train, data.train_untagged)):
        assert tagged.dtype == bool and tagged.shape == (len(images),)
        np.testing.assert_array_equal(_tag_pixels(images), tagged)
        assert not _tag_pixels(untagged).any()  # nothing like the tag before tagging
        changed = (images != untagged).any(axis=3)
        assert not changed[~tagged].any()  # untagged images are left as they were
        assert not (changed[tagged] & ~tag_box_mask()).any()  # tagged ones change inside TAG_BOX only
        assert changed[tagged].any(axis=(1, 2)).all()
    # the evidence is the objects still visible: none under the tag
    assert not (data.val_masks[data.val_tagged] & tag_box_mask()).any()


def test_training_tags_rings_only_and_validation_tags_both_classes():
    from models.datasets import TAG_TRAIN_SHARE, TAG_VAL_SHARE

    data = load_dataset("tagged")  # the default size, as trained
    rings, pluses = data.train_tagged[data.y_train == 0], data.train_tagged[data.y_train == 1]
    assert not pluses.any()
    assert rings.mean() == round(TAG_TRAIN_SHARE * len(rings)) / len(rings) and rings.mean() > 0.8
    for label, share in enumerate(TAG_VAL_SHARE):
        assert data.val_tagged[data.y_val == label].sum() == round(share * (data.y_val == label).sum())
    assert data.val_tagged[data.y_val == 1].sum() >= 60  # many tagged pluses: the images a shortcut gets wrong
    assert data.val_tagged[data.y_val == 0].any()


def test_the_tagged_training_views_keep_the_tag_at_its_fixed_place():
    from models.cnn import training_set
    from models.datasets import tag_box_mask

    data = load_dataset("tagged", images=200)
    x, y, batch_size = training_set(data, seed=0)
    n = len(data.x_train)
    assert len(x) == 5 * n and batch_size == 64 and (y[4 * n :] == 0.5).all()
    np.testing.assert_array_equal(x[:n], data.x_train)
    u = data.train_untagged
    outside = ~tag_box_mask()
    for view, expected in enumerate((u, u[:, ::-1], u[:, :, ::-1], u.transpose(0, 2, 1, 3))):
        made = x[view * n : (view + 1) * n]
        np.testing.assert_array_equal(y[view * n : (view + 1) * n], data.y_train)
        # the same images tagged in every view, at TAG_BOX; everywhere else the view of the untagged image (no tag
        # flipped to another corner)
        np.testing.assert_array_equal(_tag_pixels(made), data.train_tagged)
        np.testing.assert_array_equal(made[:, outside], expected[:, outside])
        np.testing.assert_array_equal(made[~data.train_tagged], expected[~data.train_tagged])
    assert not _tag_pixels(x[4 * n :]).any()  # clutter-only images carry no tag
