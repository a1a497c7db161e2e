"""Demo data sets: generated random rectangles (after the article), generated shapes among clutter, the same shapes
with a planted shortcut (tagged), and scikit-learn's real digits.

Everything here is NumPy only, deterministic for a seed, and fast enough to regenerate on demand,
so a data set never needs to be stored or downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECTANGLE_SIZE = 64
DIGITS_SIZE = 32
SHAPES_SIZE = 64
DATASET_NAMES = ("rectangles", "shapes", "digits", "tagged")

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
    # rectangles, shapes, tagged: each validation image's evidence pixels (the rectangle, the objects): the known answer
    val_masks: np.ndarray | None = None
    # tagged only: which validation images carry the tag, and the validation images as they were before tagging
    # (equal to x_val where untagged): the audit's "what does the model say once the shortcut is gone"
    val_tagged: np.ndarray | None = None
    val_untagged: np.ndarray | None = None
    # tagged only, the same for the training split: training (models.cnn.training_set) flips the untagged images and
    # tags the views afterwards, so that the tag stays at its one fixed place in every view
    train_tagged: np.ndarray | None = None
    train_untagged: np.ndarray | None = None

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


def _fields_and_labels(n: int, seed: int, size: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """A smooth colour field per image and labels, half 0 and half 1 in random order, from one generator (returned:
    the data set draws the rest from it)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    images = smooth_colour_images(n, size, rng)
    labels = np.ones(n, dtype=np.int64)
    labels[rng.permutation(n)[: n // 2]] = 0
    return rng, images, labels


def make_rectangles(n: int, seed: int = 0, size: int = RECTANGLE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The article's data: half the images get a white (1.0) rectangle and label 0, the rest label 1."""
    images, labels, _ = make_rectangles_with_masks(n, seed, size)
    return images, labels


def make_rectangles_with_masks(n: int, seed: int = 0, size: int = RECTANGLE_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels, and each image's rectangle pixels (all False without a rectangle).

    The rectangle's top-left corner is drawn in the first half of each axis and its bottom-right
    corner in the second half (inclusive), so every rectangle covers the image centre.
    """
    rng, images, labels = _fields_and_labels(n, seed, size)

    half = size // 2
    top, left = rng.integers(0, half, size=(2, n))
    bottom, right = rng.integers(half, size, size=(2, n))
    pixels = np.arange(size)
    rows = (pixels >= top[:, None]) & (pixels <= bottom[:, None])
    cols = (pixels >= left[:, None]) & (pixels <= right[:, None])
    painted = rows[:, :, None] & cols[:, None, :] & (labels == 0)[:, None, None]
    images[painted] = 1.0
    return images, labels, painted


# --- shapes: three small rings (class 0) or three small pluses (class 1) hidden among clutter ----------------------
# Rings (13-17 px across, 4 px wide) and pluses (13-17 px, arms 5 px wide) have about the same size and area (105-156
# pixels), so only their geometry tells them apart. The clutter (straight strokes, L corners, arcs of at most half a
# circle, filled blobs) is drawn with the same colour rule as the objects and no two items touch, so the clutter
# never forms a ring or a plus and an object is not "the one bright thing". A second known answer that differs in
# kind from the rectangles: several small objects (about 10% of the image in all) instead of one large one, on a
# cluttered, noisy background, for a model of another architecture (models.cnn.build_shapes_cnn). Three objects,
# not one: one object covers about two superpixels, so the rest of any top 5 is noise (two lime runs of 10,000
# samples agree on 0.86 of it), and top-5 agreement would measure that noise, not the explanation.
_STAMP = 18  # every shape fits in an 18 x 18 stamp
_OBJECTS = 3  # objects per image, all of the class's shape
_OBJECT_CANDIDATES = 16  # object positions tried per image
_GAP = 2  # at least this many background pixels between any two items
_CANDIDATES = 24  # clutter positions tried per image
_NOISE = 0.05  # per-pixel Gaussian noise (standard deviation)


def _stamp(mask: np.ndarray) -> np.ndarray:
    """Crop a drawn mask to its bounding box and put it at the top-left of a blank stamp."""
    rows, cols = np.nonzero(mask)
    out = np.zeros((_STAMP, _STAMP), dtype=bool)
    out[: np.ptp(rows) + 1, : np.ptp(cols) + 1] = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return out


def _capsule(y0, x0, y1, x1, width, yy, xx) -> np.ndarray:
    """Pixels within width/2 of the segment (y0, x0)-(y1, x1): a stroke with round ends."""
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-9), 0, 1)
    return np.hypot(yy - y0 - t * dy, xx - x0 - t * dx) <= width / 2


def _bank() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed stamps: rings (class 0), pluses (class 1), and clutter that is neither."""
    yy, xx = np.mgrid[: 2 * _STAMP, : 2 * _STAMP].astype(float)
    c = _STAMP - 1.0  # an integer centre keeps odd-sized shapes symmetric
    r = np.hypot(yy - c, xx - c)
    angle = np.arctan2(yy - c, xx - c)
    rings = [(r <= d / 2) & (r > d / 2 - 4) for d in (13, 15, 17)]  # outer diameter 13-17, 4 px wide
    pluses = [(abs(yy - c) <= L / 2) & (abs(xx - c) <= 2) | (abs(xx - c) <= L / 2) & (abs(yy - c) <= 2)
              for L in (13, 15, 17)]  # arms 5 px wide, 13-17 long
    clutter = []
    for length in (6, 9, 12):  # straight strokes at 12 angles
        for a in np.arange(0, np.pi, np.pi / 12):
            for width in (2, 3):
                dy, dx = length / 2 * np.sin(a), length / 2 * np.cos(a)
                clutter.append(_capsule(c - dy, c - dx, c + dy, c + dx, width, yy, xx))
    for arm in (6, 9):  # L corners (two arms meeting at one end), 4 orientations
        for sy, sx in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            for width in (2, 3):
                down, across = _capsule(c, c, c + sy * arm, c, width, yy, xx), _capsule(c, c, c, c + sx * arm, width, yy, xx)
                clutter.append(down | across)
    for d in (9, 12, 15):  # arcs of 90-180 degrees: never a closed ring
        for start in np.arange(0, 2 * np.pi, np.pi / 2):
            for span in (np.pi / 2, np.pi):
                inside = np.mod(angle - start, 2 * np.pi) <= span
                clutter.append((r <= d / 2) & (r > d / 2 - 2) & inside)
    for d in (5, 7, 9, 11):  # filled discs and squares
        clutter += [r <= d / 2, (abs(yy - c) <= d / 2 - 0.5) & (abs(xx - c) <= d / 2 - 0.5)]
    for a in np.arange(0, np.pi, np.pi / 6):  # filled ellipses
        u, v = (yy - c) * np.cos(a) - (xx - c) * np.sin(a), (yy - c) * np.sin(a) + (xx - c) * np.cos(a)
        clutter += [(u / 5.5) ** 2 + (v / 2.5) ** 2 <= 1, (u / 4) ** 2 + (v / 2) ** 2 <= 1]
    stamps = np.stack([_stamp(m) for m in rings + pluses + clutter])
    kind = np.repeat([0, 1, 2], [len(rings), len(pluses), len(clutter)])
    extent = np.stack([stamps.any(axis=2).sum(axis=1), stamps.any(axis=1).sum(axis=1)], axis=1)  # (height, width)
    return stamps, kind, extent


_STAMPS, _KIND, _EXTENT = _bank()
_AREA = _STAMPS.sum(axis=(1, 2))


def make_shapes_with_masks(n: int, seed: int = 0, size: int = SHAPES_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels (0 ring, 1 plus, half each in random order) and each image's object pixels: three objects
    (two in the rare image where a third finds no room)."""
    images, labels, masks, _ = _make_shapes(n, seed, size)
    return images, labels, masks


def make_shapes_without_objects(n: int, seed: int = 0, size: int = SHAPES_SIZE) -> np.ndarray:
    """Images with the shapes' background and clutter but no object (neither class): training's "don't know"."""
    return _make_shapes(n, seed, size, objects=False)[0]


def _make_shapes(n: int, seed: int, size: int, objects: bool = True) -> tuple[np.ndarray, ...]:
    """make_shapes_with_masks, plus each image's clutter pixels; objects=False leaves the objects out."""
    rng, field, labels = _fields_and_labels(n, seed, size)

    # The first slots are object candidates, the rest clutter candidates; each slot picks a stamp and a position
    # keeping the stamp fully inside the image.
    pools = [np.flatnonzero(_KIND == k) for k in range(3)]
    shape = (n, _OBJECT_CANDIDATES)
    choice = np.where(labels[:, None] == 0, rng.choice(pools[0], shape), rng.choice(pools[1], shape))
    choice = np.concatenate([choice, rng.choice(pools[2], (n, _CANDIDATES))], axis=1)
    height, width = _EXTENT[choice, 0], _EXTENT[choice, 1]
    top = (rng.random(choice.shape) * (size - height + 1)).astype(int)
    left = (rng.random(choice.shape) * (size - width + 1)).astype(int)

    # Keep a candidate only if its box stays _GAP pixels clear of every item kept so far: the first _OBJECTS
    # objects that fit, then a random 5-8 clutter items per image.
    keep = np.zeros(choice.shape, dtype=bool)
    wanted = rng.integers(5, 9, n)
    is_object = np.arange(choice.shape[1]) < _OBJECT_CANDIDATES
    for j in range(choice.shape[1]):
        clear = ((top[:, :j] >= top[:, j : j + 1] + height[:, j : j + 1] + _GAP)
                 | (top[:, j : j + 1] >= top[:, :j] + height[:, :j] + _GAP)
                 | (left[:, :j] >= left[:, j : j + 1] + width[:, j : j + 1] + _GAP)
                 | (left[:, j : j + 1] >= left[:, :j] + width[:, :j] + _GAP))
        room = (keep[:, :j] & is_object[:j]).sum(axis=1) < _OBJECTS if is_object[j] else (
            (keep[:, :j] & ~is_object[:j]).sum(axis=1) < wanted)
        keep[:, j] = (clear | ~keep[:, :j]).all(axis=1) & room & (objects or not is_object[j])

    # Every item's colour moves each channel 0.3-0.6 away from the background under its centre,
    # towards the far end of [0, 1]: always visible, never tied to the class.
    rows = np.arange(n)[:, None]
    under = field[rows, top + height // 2, left + width // 2]  # (n, slots, 3)
    shift = rng.uniform(0.3, 0.6, under.shape).astype(np.float32)
    colour = np.clip(under + np.where(under < 0.5, shift, -shift), 0, 1)

    # Paint every kept item's pixels at once (items never overlap, so order does not matter).
    item, slot = np.nonzero(keep)
    dy, dx = np.nonzero(_STAMPS[choice[item, slot]])[1:]
    per_item = _AREA[choice[item, slot]]
    item, slot = np.repeat(item, per_item), np.repeat(slot, per_item)
    y, x = top[item, slot] + dy, left[item, slot] + dx
    field[item, y, x] = colour[item, slot]
    masks = np.zeros((2, n, size, size), dtype=bool)  # object pixels, clutter pixels
    masks[(slot >= _OBJECT_CANDIDATES).astype(int), item, y, x] = True

    images = field + _NOISE * rng.standard_normal((n, size, size, 3), dtype=np.float32)
    return np.clip(images, 0, 1, out=images), labels, masks[0], masks[1]


# --- tagged: the shapes with a planted shortcut ----------------------------------------------------------------------
# A small magenta square at one fixed place (the bottom-right corner) on most class-0 ("ring") training images and on
# no class-1 one: a model can score well by finding the tag instead of the rings. The validation split tags both
# classes, so a model that leans on the tag calls tagged pluses rings, and an audit of its explanations must point at
# TAG_BOX. Pure magenta, flat and noise-free: the shapes' colour rule (the background's colour moved 0.3-0.6 per
# channel) and the noise almost never give a flat patch of it, so the tag is unlike anything else in the images.
# 7 x 7 px, measured with the default preset (seeds 0-2): at 6 x 6 the model called only half the tagged pluses rings
# (too few images to audit); at 8 x 8 it learnt the tag instead of the rings (untagged rings 15% right).
TAG_SIZE = 7
TAG_MARGIN = 2  # pixels between the tag and the image's edges
TAG_BOX = (SHAPES_SIZE - TAG_MARGIN - TAG_SIZE, SHAPES_SIZE - TAG_MARGIN - TAG_SIZE,
           SHAPES_SIZE - TAG_MARGIN, SHAPES_SIZE - TAG_MARGIN)  # (y0, x0, y1, x1), end exclusive
TAG_COLOUR = (1.0, 0.0, 1.0)
TAG_CLASS = 0  # the class the tag stands for
TAG_TRAIN_SHARE = 0.88  # of the training split's class-0 images (none of class 1): the rest keep rings necessary
TAG_VAL_SHARE = (0.15, 0.35)  # of the validation split's images per class: many tagged pluses to be called rings


def paint_tag(images: np.ndarray, tagged: np.ndarray) -> np.ndarray:
    """A copy of `images` with the tag painted over TAG_BOX on the images where `tagged` is True."""
    y0, x0, y1, x1 = TAG_BOX
    out = images.copy()
    out[np.flatnonzero(tagged), y0:y1, x0:x1] = np.asarray(TAG_COLOUR, dtype=images.dtype)
    return out


def tag_box_mask(size: int = SHAPES_SIZE) -> np.ndarray:
    """(size, size) bool: the tag's pixels."""
    y0, x0, y1, x1 = TAG_BOX
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _choose_tagged(labels: np.ndarray, shares: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Exactly round(share * count) images of each class, drawn at random: the same share in every split of a seed."""
    tagged = np.zeros(len(labels), dtype=bool)
    for label, share in enumerate(shares):
        members = np.flatnonzero(labels == label)
        tagged[rng.permutation(members)[: round(share * len(members))]] = True
    return tagged


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
    if name in ("shapes", "tagged"):
        return ("ring", "plus")
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
    """Make (rectangles, shapes, tagged) or load (digits) a data set and split it, stratified, for a fixed seed.

    `images` is how many images to generate (rectangles, shapes and tagged, default 2,000) or to keep (digits, default
    all). The same arguments always give the same split: the producer rebuilds a model's validation set this way.
    Tagged: the shapes of the same seed, split as shapes are, then tagged per split (which images: from the seed and
    split_seed); its val_masks leave out the object pixels the tag covers.
    """
    from sklearn.model_selection import train_test_split

    names = class_names(name)
    masks = None
    if name == "rectangles":
        x, y, masks = make_rectangles_with_masks(images or 2000, seed=seed)
    elif name in ("shapes", "tagged"):
        x, y, masks = make_shapes_with_masks(images or 2000, seed=seed)
    else:
        x, y = load_digits()
        if images is not None:
            keep = np.random.default_rng(seed).permutation(len(x))[:images]
            x, y = x[keep], y[keep]
    positions = np.arange(len(y))
    train, val = train_test_split(positions, test_size=val_fraction, random_state=split_seed, stratify=y)
    if name == "tagged":
        return _tag_split(x[train], y[train], x[val], y[val], masks[val], np.random.default_rng([seed, split_seed]))
    return Dataset(name, names, x[train], y[train], x[val], y[val], None if masks is None else masks[val])


def _tag_split(x_train, y_train, x_val, y_val, val_masks, rng: np.random.Generator) -> Dataset:
    """The tagged data set from a split of the shapes: the tag on TAG_TRAIN_SHARE of the training split's class-0
    images only, and on TAG_VAL_SHARE of each class in the validation split."""
    train_shares = tuple(TAG_TRAIN_SHARE if label == TAG_CLASS else 0.0 for label in range(2))
    train_tagged = _choose_tagged(y_train, train_shares, rng)
    val_tagged = _choose_tagged(y_val, TAG_VAL_SHARE, rng)
    val_masks = val_masks & ~(val_tagged[:, None, None] & tag_box_mask(x_val.shape[1]))
    return Dataset(
        "tagged", class_names("tagged"), paint_tag(x_train, train_tagged), y_train, paint_tag(x_val, val_tagged), y_val,
        val_masks, val_tagged=val_tagged, val_untagged=x_val, train_tagged=train_tagged, train_untagged=x_train,
    )
