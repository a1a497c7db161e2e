"""Demo data sets: generated random rectangles (after the article) and scikit-learn's real digits.

Everything here is NumPy only, deterministic for a seed, and fast enough to regenerate on demand,
so a data set never needs to be stored or downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECTANGLE_SIZE = 64
DIGITS_SIZE = 32
DATASET_NAMES = ("rectangles", "digits")

# Smooth colour fields are a coarse random grid blown up with Gaussian bumps; two octaves give
# large colour regions with some texture, like the article's random colour paths.
_OCTAVES = ((5, 1.0), (11, 0.35))


@dataclass(frozen=True)
class Dataset:
    """A labelled image set split into training and validation parts (images float32 in [0, 1])."""

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_masks: np.ndarray | None = None  # rectangles: each validation image's rectangle pixels (the known answer)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _upsampling_matrix(grid: int, size: int) -> np.ndarray:
    """(size, grid) weights that spread `grid` control points smoothly over `size` pixels."""
    positions = np.linspace(0, grid - 1, size)[:, None]
    weights = np.exp(-((positions - np.arange(grid)[None, :]) ** 2) / (2 * 0.6**2))
    return weights / weights.sum(axis=1, keepdims=True)


def smooth_colour_images(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`n` random smooth RGB images of `size` x `size`, each channel stretched to span [0, 1]."""
    fields = np.zeros((n, 3, size, size), dtype=np.float32)
    for grid, amplitude in _OCTAVES:
        matrix = _upsampling_matrix(grid, size).astype(np.float32)
        noise = rng.standard_normal((n, 3, grid, grid), dtype=np.float32)
        fields += amplitude * (matrix @ noise @ matrix.T)  # batched separable upsampling
    low = fields.min(axis=(2, 3), keepdims=True)
    high = fields.max(axis=(2, 3), keepdims=True)
    fields -= low
    fields /= high - low
    return np.ascontiguousarray(fields.transpose(0, 2, 3, 1))


def make_rectangles(n: int, seed: int = 0, size: int = RECTANGLE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The article's data: half the images get a white (1.0) rectangle and label 0, the rest label 1."""
    images, labels, _ = make_rectangles_with_masks(n, seed, size)
    return images, labels


def make_rectangles_with_masks(n: int, seed: int = 0, size: int = RECTANGLE_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels, and each image's rectangle pixels (all False without a rectangle).

    The rectangle's top-left corner is drawn in the first half of each axis and its bottom-right
    corner in the second half (inclusive), so every rectangle covers the image centre.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    images = smooth_colour_images(n, size, rng)
    labels = np.ones(n, dtype=np.int64)
    labels[rng.permutation(n)[: n // 2]] = 0

    half = size // 2
    top, left = rng.integers(0, half, size=(2, n))
    bottom, right = rng.integers(half, size, size=(2, n))
    pixels = np.arange(size)
    rows = (pixels >= top[:, None]) & (pixels <= bottom[:, None])
    cols = (pixels >= left[:, None]) & (pixels <= right[:, None])
    painted = rows[:, :, None] & cols[:, None, :] & (labels == 0)[:, None, None]
    images[painted] = 1.0
    return images, labels, painted


def load_digits(size: int = DIGITS_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real handwritten digits (8x8, 0..16), upscaled to RGB `size` x `size` in [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits
    from skimage.transform import resize

    digits = sklearn_digits()
    small = digits.images.astype(np.float32) / 16.0
    big = resize(small, (len(small), size, size), order=1, anti_aliasing=False, preserve_range=True)
    images = np.repeat(big[..., None], 3, axis=-1).astype(np.float32)
    return np.clip(images, 0.0, 1.0), digits.target.astype(np.int64)


def class_names(name: str) -> tuple[str, ...]:
    if name == "rectangles":
        return ("rectangle", "no_rectangle")
    if name == "digits":
        return tuple(str(d) for d in range(10))
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def load_dataset(
    name: str,
    *,
    images: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    split_seed: int = 42,
) -> Dataset:
    """Make (rectangles) or load (digits) a data set and split it, stratified, for a fixed seed.

    `images` is how many images to generate (rectangles, default 2,000) or to keep (digits, default all).
    The same arguments always give the same split: the producer rebuilds a model's validation set this way.
    """
    from sklearn.model_selection import train_test_split

    names = class_names(name)
    masks = None
    if name == "rectangles":
        x, y, masks = make_rectangles_with_masks(images or 2000, seed=seed)
    else:
        x, y = load_digits()
        if images is not None:
            keep = np.random.default_rng(seed).permutation(len(x))[:images]
            x, y = x[keep], y[keep]
    positions = np.arange(len(y))
    train, val = train_test_split(positions, test_size=val_fraction, random_state=split_seed, stratify=y)
    return Dataset(name, names, x[train], y[train], x[val], y[val], None if masks is None else masks[val])
