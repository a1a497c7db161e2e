"""The one pixel conversion: what the producer stores and what the engine feeds a model agree with scikit-image,
and integer types other than uint8/uint16 are read by their values, not turned black."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.util import img_as_float, img_as_ubyte

from core.images import PixelError, to_uint8, to_value_range

RNG = np.random.default_rng(0)


def test_stored_pixels_are_scikit_images_bytes():
    floats = RNG.random((8, 8, 3))
    deep = RNG.integers(0, 65536, (8, 8), dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8(floats), img_as_ubyte(floats))
    np.testing.assert_array_equal(to_uint8(deep), img_as_ubyte(deep)[:, :, None])
    assert to_uint8(deep).max() > 200  # scaled, not clipped


def test_wide_integer_types_are_read_by_their_values():
    eight_bit = RNG.integers(0, 256, (8, 8, 3))  # NumPy's default int64, as a user's np.array([...]) makes it
    assert eight_bit.dtype == np.int64
    np.testing.assert_array_equal(to_uint8(eight_bit), eight_bit.astype(np.uint8))
    sixteen_bit = np.array([[0, 1000, 65535]], dtype=np.int32)
    np.testing.assert_array_equal(to_uint8(sixteen_bit), img_as_ubyte(sixteen_bit.astype(np.uint16))[:, :, None])
    np.testing.assert_allclose(to_value_range(eight_bit, (0, 255)), eight_bit, atol=1e-4)


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)])
def test_integers_are_scaled_into_the_models_range(value_range):
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    low, high = value_range
    expected = (low + img_as_float(image) * (high - low)).astype(np.float32)
    np.testing.assert_allclose(to_value_range(image, value_range), expected, rtol=0)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((4, 4), -1, np.int16), "negative pixel values"),
        (np.full((4, 4), 70_000, np.int32), "more than 16 bits"),
        (np.full((4, 4), 1.5), "float pixels must be finite and in"),
        (np.full((4, 4), np.nan), "float pixels must be finite and in"),
        (np.zeros((4, 4, 2), np.uint8), r"\(H, W, 1\|3\|4\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), "is not an image"),
        (np.zeros((0, 4, 3), np.uint8), "holds no pixels"),
        (np.zeros((4, 4), bool), "not a numeric pixel type"),
    ],
)
def test_what_is_not_an_image_is_refused_with_its_reason(array, message):
    with pytest.raises(PixelError, match=message):
        to_uint8(array)
