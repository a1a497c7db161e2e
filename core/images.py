"""Stored images: every image is kept as PNG bytes; the worker and the pictures decode them here."""

from __future__ import annotations

import io

import numpy as np


def png_pixels(blob: bytes) -> np.ndarray:
    """PNG bytes -> the stored pixels as they are (grey, RGB or RGBA; uint8)."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as picture:
        return np.asarray(picture)
