"""What a switched-off superpixel shows, and the perturbed images built from 0/1 masks."""

from __future__ import annotations

import numpy as np


def hidden_image(
    image: np.ndarray, segments: np.ndarray, hide: str, value_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """What a switched-off superpixel shows (see ExplainParams.hide); constants are shares of the value range."""
    if hide == "mean":
        n = int(segments.max()) + 1
        flat = segments.ravel()
        counts = np.bincount(flat, minlength=n)
        means = np.stack(
            [np.bincount(flat, weights=image[..., c].ravel(), minlength=n) / counts for c in range(image.shape[2])],
            axis=1,
        )
        return means[segments].astype(image.dtype)
    if hide == "blur":
        from skimage.filters import gaussian

        sigma = max(image.shape[:2]) / 16
        return gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True).astype(image.dtype)
    share = {"grey": 0.5, "black": 0.0}.get(hide)
    share = float(hide) if share is None else share
    low, high = value_range
    return np.full_like(image, low + share * (high - low))


def fill_perturbed(out: np.ndarray, image: np.ndarray, hidden: np.ndarray, segments: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Write one image per row of the 0/1 matrix `rows` into `out`: superpixels with a 0 show `hidden`.

    Filling a reused buffer in place avoids allocating (and page-faulting) a fresh batch every time. The mask is
    gathered per channel, (b, H, W, C): a mask broadcast over the channels makes copyto 2-3x slower, and at 224x224
    this fill is the engine's largest cost besides the model.
    """
    keep = rows.astype(bool)[:, np.broadcast_to(segments[..., None], image.shape)]
    out[:] = hidden
    np.copyto(out, image, where=keep)
    return out
