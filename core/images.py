"""Pixels: the one place that turns a caller's array into image pixels (rank, channels, integer types), for the
producer (uint8, to store) and the engine (floats in a model's value range), and encodes and decodes the PNGs.

scikit-image does the scaling (`img_as_ubyte`, `img_as_float`); what it cannot know is what a wide integer
type means, so any integer type but uint8 and uint16 is read by its values (a NumPy default int64 array of
0..255 is 8-bit, not a black image at 1/2**55 of the int64 range)."""

from __future__ import annotations

import io

import numpy as np


class PixelError(ValueError):
    """An array that is not an image; the message is one line, for the user."""


def image_array(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of a numeric type as (H, W, C), uint8/uint16/float kept, other integers as
    uint8 or uint16 by their values."""
    array = np.asarray(array)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise PixelError(f"pixel type {array.dtype} is not a numeric pixel type")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise PixelError(f"shape {array.shape} is not an image (H, W) or (H, W, C)")
    if array.size == 0:
        raise PixelError(f"shape {array.shape} holds no pixels")
    if np.issubdtype(array.dtype, np.integer) and array.dtype not in (np.uint8, np.uint16):
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise PixelError(f"negative pixel values ({array.dtype}, minimum {low})")
        if high > np.iinfo(np.uint16).max:
            raise PixelError(f"{array.dtype} pixel values up to {high}: more than 16 bits; convert to uint8 or uint16")
        array = array.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)
    return array


def to_uint8(array: np.ndarray, name: str | None = None) -> np.ndarray:
    """Pixels to store, as uint8 (H, W, C) with 1, 3 or 4 channels: floats must be in [0, 1], 16-bit values are
    scaled (not clipped). A PixelError names the image when `name` is given."""
    from skimage.util import img_as_ubyte

    try:
        array = image_array(array)
        if array.shape[2] not in (1, 3, 4):
            raise PixelError(f"shape {array.shape} is not an image (H, W) or (H, W, 1|3|4)")
        if np.issubdtype(array.dtype, np.floating) and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
            raise PixelError("float pixels must be finite and in [0, 1]")
    except PixelError as error:
        raise PixelError(f"{name}: {error}" if name else str(error)) from None
    return img_as_ubyte(array)


def to_value_range(array: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Pixels as float32 (H, W, C) for a model fed `value_range`: integers are scaled from 0..their type's maximum,
    floats are taken as already in the model's range and checked."""
    from skimage.util import img_as_float

    array = image_array(array)
    low, high = value_range
    if np.issubdtype(array.dtype, np.integer):
        array = low + img_as_float(array) * (high - low)  # in float64, then one rounding to float32
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise PixelError("image has non-finite pixels (NaN or inf)")
    if array.min() < low - 1e-6 or array.max() > high + 1e-6:
        raise PixelError(
            f"pixel values span [{array.min():.4g}, {array.max():.4g}], outside the model's range [{low}, {high}]"
        )
    return array


def pil_image(pixels: np.ndarray):
    """uint8 (H, W, 1|3|4) pixels as a Pillow image (one channel: greyscale)."""
    from PIL import Image

    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, 1|3|4) pixels as PNG bytes: how every image is stored, and every picture drawn."""
    buffer = io.BytesIO()
    pil_image(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_pixels(blob: bytes) -> np.ndarray:
    """PNG bytes -> the stored pixels as they are (grey, RGB or RGBA; uint8)."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as picture:
        return np.asarray(picture)


MAX_PIXELS = 40_000_000  # a file that claims more is refused from its header, before decoding
PNG_MODES = ("L", "RGB", "RGBA")  # 8-bit PNGs whose own bytes decode to the pixels the project stores


def decode_file(data: bytes, name: str) -> tuple[np.ndarray, bool]:
    """A PNG or JPEG file's bytes -> its pixels as uint8 (H, W, C), and whether the bytes are already the PNG the
    project would store for them (an 8-bit grey, RGB or RGBA PNG: kept as they are, never re-encoded). Raises
    PixelError naming the file (`name`): unreadable, or claiming more than MAX_PIXELS (checked from the header,
    before decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            if width * height > MAX_PIXELS:
                raise PixelError(f"{name} claims {width}x{height} pixels, more than {MAX_PIXELS:,}: refused before decoding")
            picture.load()
            is_png = picture.format == "PNG" and picture.mode in PNG_MODES
            if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
                return to_uint8(np.asarray(picture).astype(np.uint16), name), False
            if picture.mode not in PNG_MODES:
                picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
            return to_uint8(np.asarray(picture), name), is_png
    except Image.DecompressionBombError:  # Pillow's own header check, for claims far beyond ours
        raise PixelError(f"{name} claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels: refused before decoding") from None
    except PixelError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise PixelError(f"{name}: not a readable image ({type(error).__name__}: {error})") from None


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 pixels scaled (bilinear) to height x width."""
    from PIL import Image

    scaled = pil_image(pixels).resize((width, height), Image.Resampling.BILINEAR)
    return to_uint8(np.asarray(scaled))


def pixels_sha256(pixels: np.ndarray) -> str:
    """Content hash of stored pixels and their shape: the same picture is stored once, and a file referenced by a run
    is known to be unchanged."""
    import hashlib

    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


class ReferenceFileError(PixelError):
    """An image stored by reference whose file is gone or changed since the run stored it."""


def stored_pixels(png: bytes, path: str | None, sha256: str, size: tuple[int, int]) -> np.ndarray:
    """An image's pixels as the run stored them: its PNG, or (stored by reference) its file, read, scaled to the
    stored `size` (height, width) when the run scaled it, and checked against the content hash taken then."""
    if not path:
        return png_pixels(png)
    try:
        data = open(path, "rb").read()
    except OSError as error:
        raise ReferenceFileError(f"{path} is missing or unreadable ({type(error).__name__}): it was stored by reference") from None
    pixels, _ = decode_file(data, path)
    if pixels.shape[:2] != tuple(size):
        pixels = resize(pixels, *size)
    if pixels_sha256(pixels) != sha256:
        raise ReferenceFileError(f"{path} changed since the run stored it by reference (its content hash differs)")
    return pixels
