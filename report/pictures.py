"""Pictures of explanations, as the article draws them: a label's positive superpixels outlined with
scikit-image's `mark_boundaries`, and a hide-rest variant. NumPy, scikit-image and Pillow only."""

from __future__ import annotations

import base64
import io

import numpy as np

from audit.maps import NEGLIGIBLE
from core.images import png_bytes, to_uint8

TOP_FEATURES = 5  # lime's get_image_and_mask(num_features=5) default, as the article used it
MIN_SIDE = 192  # small images are scaled up (nearest) so outlines stay visible


def drawable(pixels: np.ndarray) -> np.ndarray:
    """Stored uint8 pixels -> float RGB (H, W, 3) in [0, 1], for drawing."""
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels[:, :, :3].astype(np.float32) / 255.0


def encode_png(image: np.ndarray) -> bytes:
    """A float picture in [0, 1] (blending may overshoot by a rounding error) as PNG bytes."""
    return png_bytes(to_uint8(np.clip(image, 0.0, 1.0)))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def positive_mask(segments: np.ndarray, weights: np.ndarray, top: int = TOP_FEATURES) -> np.ndarray:
    """Pixels of the `top` superpixels with the largest positive weights (lime's positive_only=True)."""
    order = [s for s in np.argsort(-weights, kind="stable")[:top] if weights[s] > 0]
    return np.isin(segments, order)


def scale_up(image: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    factor = max(1, MIN_SIDE // max(image.shape[:2]))
    if factor == 1:
        return image, segments
    return (
        np.repeat(np.repeat(image, factor, axis=0), factor, axis=1),
        np.repeat(np.repeat(segments, factor, axis=0), factor, axis=1),
    )


def overlays(image: np.ndarray, segments: np.ndarray, weights: np.ndarray, *, enlarge: bool = True) -> tuple[bytes, bytes]:
    """(outlined, hide-rest) PNGs for one label: its positive superpixels outlined in yellow on the
    image, and the image with everything but those superpixels blacked out. `enlarge=False` keeps the image's own
    size (a page scales it up itself, for a fraction of the bytes)."""
    from skimage.segmentation import mark_boundaries

    big, big_segments = scale_up(image, segments) if enlarge else (image, segments)
    mask = positive_mask(big_segments, weights)
    outlined = mark_boundaries(big, mask.astype(np.int32), color=(1, 1, 0))
    hidden = big * mask[..., None]
    return encode_png(outlined), encode_png(hidden)


def original(image: np.ndarray, *, enlarge: bool = True) -> bytes:
    big, _ = scale_up(image, np.zeros(image.shape[:2], np.int32)) if enlarge else (image, None)
    return encode_png(big)


def diverging_colours(values: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] -> RGB in [0, 1]: blue (negative) through white (zero) to red (positive)."""
    values = np.clip(values, -1.0, 1.0)[..., None]
    red, blue, white = np.array([0.80, 0.10, 0.10]), np.array([0.10, 0.25, 0.80]), np.ones(3)
    return np.where(values >= 0, white + values * (red - white), white - values * (blue - white))


def heatmap(image: np.ndarray, segments: np.ndarray, weights: np.ndarray) -> bytes:
    """A PNG of one label's superpixel weights over the image (greyed, so the colours read): red pushes towards
    the label, blue away, white neither; with a colour bar from -max to +max |weight| on the right."""
    from PIL import Image, ImageDraw

    big, big_segments = scale_up(image, segments)
    scale = float(np.abs(weights).max())
    if scale <= NEGLIGIBLE:  # no superpixel matters (a model blind to the image): white, not amplified round-off
        scale = 0.0
    colours = diverging_colours(weights[big_segments] / (scale or 1.0) * bool(scale))
    grey = big.mean(axis=2, keepdims=True)
    blended = 0.35 * grey + 0.65 * colours
    height = blended.shape[0]
    bar_width, label_width = 14, 58
    bar = diverging_colours(np.linspace(1, -1, height))[:, None, :].repeat(bar_width, axis=1)
    canvas = np.ones((height, blended.shape[1] + 6 + bar_width + label_width, 3))
    canvas[:, : blended.shape[1]] = blended
    canvas[:, blended.shape[1] + 6 : blended.shape[1] + 6 + bar_width] = bar
    picture = Image.fromarray(np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    x = blended.shape[1] + 6 + bar_width + 3
    for text, y in ((f"+{scale:.3g}", 0), ("0", height // 2 - 5), (f"-{scale:.3g}", height - 11)):
        draw.text((x, y), text, fill=(0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


MAP_SIDE = 128  # pixels: a mean map drawn at this size, whatever its grid


def map_picture(mean_map: np.ndarray | bytes, mean_image: bytes | None = None, *, scale: float | None = None) -> bytes:
    """A PNG of a relevance map (audit.maps; encoded or an array), red towards the class, blue away, scaled by its
    largest absolute value (or `scale`), over the greyed mean image (a PNG) when there is one."""
    from PIL import Image

    from core.images import png_pixels
    from db.formats import decode_maps

    values = decode_maps(mean_map) if isinstance(mean_map, bytes) else np.asarray(mean_map, dtype=np.float32)
    peak = float(np.abs(values).max()) if scale is None else scale
    side = MAP_SIDE / max(values.shape)
    size = (max(1, round(values.shape[1] * side)), max(1, round(values.shape[0] * side)))
    colours = diverging_colours(values / peak if peak > NEGLIGIBLE else np.zeros_like(values))
    big = np.asarray(Image.fromarray(to_uint8(np.clip(colours, 0, 1))).resize(size, Image.Resampling.BILINEAR)) / 255.0
    if mean_image is not None:
        picture = drawable(png_pixels(mean_image))
        grey = to_uint8(picture.mean(axis=2))[..., 0]  # to_uint8 gives (H, W, 1); Pillow wants (H, W) for grey
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR)) / 255.0
        big = 0.35 * grey[..., None] + 0.65 * big
    return encode_png(big)


def thumbnail(png: bytes, side: int) -> bytes:
    """A PNG shrunk (never enlarged) to at most `side` pixels a side: the report's many small pictures stay small
    whatever the size of the images."""
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
