"""The image as the engine takes it: float32 (H, W, 3) in the model's value range, or a typed error."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.images import PixelError, to_value_range
from worker.engine.errors import ImageError


def conform_image(
    image: np.ndarray,
    input_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Return the image as float32 (H, W, C) in `value_range`, or raise ImageError saying what is wrong.

    Grayscale becomes RGB when the model wants 3 channels, RGBA loses its alpha, and integer images are scaled
    as core.images.to_value_range says; nothing is resized.
    """
    try:
        array = to_value_range(image, value_range)
    except PixelError as error:
        raise ImageError(str(error)) from None
    if min(array.shape[:2]) < 2:
        raise ImageError(f"image of shape {array.shape} is too small to segment")

    channels = array.shape[2]
    wanted_channels = input_shape[2] if input_shape is not None else 3
    if channels == 4:
        array, channels = array[:, :, :3], 3
    if channels == 1 and wanted_channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif channels != wanted_channels:
        raise ImageError(f"image has {channels} channels, the model wants {wanted_channels}")
    if wanted_channels != 3:
        raise ImageError(f"LIME's segmentation needs RGB images; the model wants {wanted_channels} channels")

    if input_shape is not None and tuple(array.shape[:2]) != tuple(input_shape[:2]):
        raise ImageError(
            f"image is {array.shape[0]}x{array.shape[1]}, the model wants {input_shape[0]}x{input_shape[1]}"
        )
    return np.ascontiguousarray(array)
