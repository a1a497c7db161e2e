"""A known answer of another kind: one handwritten digit on a crop of a real photograph.

A third data set with a known answer, unlike the demos': one handwritten digit (0, 1 or 7, from scikit-learn's
digits, written by people) painted with soft edges on a crop of a real photograph (scikit-image's bundled ones), for
a model of another style (a user's keras.Sequential with batch normalisation and global max pooling). It checks
explanations and is never tuned on: the answer is the glyph's ink.

Everything ships inside scikit-learn and scikit-image: nothing is downloaded. The model is trained once and kept
under DATA_DIR/benchmarks, named by a hash of the recipe and of the code that makes the data and trains.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from benchmarks.known_answer import KnownAnswer, predict


@dataclass(frozen=True)
class Recipe:
    """Every setting of the data and the training: the model's cache name hashes it."""

    size: int = 64
    # scikit-image's bundled photographs (the grey ones as grey RGB): skin, fur, metal, stars, stained tissue, texture
    photos: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                               "hubble_deep_field", "camera", "grass", "gravel", "brick")
    crop_share: float = 0.5  # the largest crop's side, as a share of the photo's shorter side (the smallest: `size`)
    digits: tuple[int, ...] = (0, 1, 7)
    class_names: tuple[str, ...] = ("zero", "one", "seven")
    glyph_sizes: tuple[int, int] = (18, 30)  # pixels the digit's 8x8 cell is blown up to, both inclusive
    contrast: tuple[float, float] = (0.4, 0.6)  # each channel's move away from the background's mean under the glyph
    evidence_alpha: float = 0.25  # the ink that counts as the glyph
    # the first share of each digit's samples (in the file's order) draw the training images, the rest the validation
    # images: no handwritten sample is in both
    train_share: float = 0.75
    train_images: int = 2400
    val_images: int = 402
    train_seed: int = 0
    val_seed: int = 1
    epochs: int = 14
    batch_size: int = 32


RECIPE = Recipe()
SPLITS = ("train", "validation")


@cache
def _photo(name: str):
    """A bundled photograph as an RGB PIL image (scikit-image reads it from its own package folder)."""
    import skimage.data
    from PIL import Image

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as ink in [0, 1] (8x8) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target


def glyph_samples(split: str) -> tuple[np.ndarray, ...]:
    """Per class, the indices (into scikit-learn's digits) of the handwritten samples `split` draws its glyphs from."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    targets = _digits()[1]
    pools = []
    for digit in RECIPE.digits:
        members = np.flatnonzero(targets == digit)
        cut = round(RECIPE.train_share * len(members))
        pools.append(members[:cut] if split == "train" else members[cut:])
    return tuple(pools)


def _glyph_alpha(sample: int, cell: int) -> np.ndarray:
    """A digit's ink blown up smoothly (bicubic) so that its 8x8 cell spans `cell` pixels, with a cell/8 blank margin
    on each side so that the ink fades out instead of being cut at the cell's edge."""
    from PIL import Image

    padded = np.pad(_digits()[0][sample], 1)
    side = round(cell * 10 / 8)
    blown_up = Image.fromarray(padded).resize((side, side), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(blown_up), 0.0, 1.0)


def make_glyphs(n: int, seed: int, split: str = "validation") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` images (float32 in [0, 1]), their labels (the classes in turn, shuffled: balanced) and evidence masks (the
    glyph's pixels of ink alpha >= RECIPE.evidence_alpha): photo_crops(n, seed) with a glyph from `split`'s
    handwritten samples painted on each."""
    images, labels, masks, _ = _make_glyphs(n, seed, split)
    return images, labels, masks


def photo_crops(n: int, seed: int) -> np.ndarray:
    """The backgrounds of make_glyphs(n, seed): crops of a random photo at a random place and scale (from `size` to
    RECIPE.crop_share of its shorter side, log-uniform), shrunk to `size` by area averaging."""
    from PIL import Image

    size = RECIPE.size
    rng = np.random.default_rng([seed, 0])  # a stream of its own: the glyphs' draws leave the crops alone
    photos = rng.integers(len(RECIPE.photos), size=n)
    scale, left_share, top_share = rng.random((3, n))
    crops = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        photo = _photo(RECIPE.photos[photos[i]])
        largest = max(size, RECIPE.crop_share * min(photo.size))
        side = size * (largest / size) ** scale[i]
        left, top = left_share[i] * (photo.width - side), top_share[i] * (photo.height - side)
        crop = photo.resize((size, size), Image.Resampling.BOX, box=(left, top, left + side, top + side))
        crops[i] = np.asarray(crop, np.float32) / 255.0
    return crops


def _make_glyphs(n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """make_glyphs, plus the handwritten sample each image's glyph is."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    size, pools = RECIPE.size, glyph_samples(split)
    rng = np.random.default_rng([seed, 1])
    labels = rng.permutation(np.arange(n) % len(pools))
    samples = np.array([rng.choice(pools[label]) for label in labels])
    cells = rng.integers(RECIPE.glyph_sizes[0], RECIPE.glyph_sizes[1] + 1, size=n)
    places = rng.random((n, 2))  # top, left, as shares of the room the glyph leaves
    shifts = rng.uniform(*RECIPE.contrast, size=(n, 3)).astype(np.float32)

    images = photo_crops(n, seed)
    masks = np.zeros((n, size, size), bool)
    for i, image in enumerate(images):
        alpha = _glyph_alpha(samples[i], cells[i])
        y, x = (places[i] * (size - len(alpha) + 1)).astype(int)
        window = (slice(y, y + len(alpha)), slice(x, x + len(alpha)))
        ink = alpha >= RECIPE.evidence_alpha
        under = image[window][ink].mean(axis=0)
        colour = np.clip(under + np.where(under < 0.5, shifts[i], -shifts[i]), 0.0, 1.0)
        image[window] += alpha[..., None] * (colour - image[window])
        masks[i][window] = ink
    return images, labels, masks, samples


def build_glyphs_model():
    """As a user writes one: convolution blocks with batch normalisation, global pooling, a softmax. Max pooling, not
    average: one small glyph's evidence is diluted by the average over the photo (measured on an earlier draw of these
    data, 15 epochs: validation accuracy 0.80 and swinging between epochs with average pooling, 0.93 and steady with
    max)."""
    import keras
    from keras import layers

    def block(filters: int) -> list:
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(),
                layers.Activation("relu")]

    model = keras.Sequential(
        [keras.Input((RECIPE.size, RECIPE.size, 3)),
         *block(16), layers.MaxPooling2D(), *block(32), layers.MaxPooling2D(), *block(64), layers.MaxPooling2D(),
         *block(64), layers.GlobalMaxPooling2D(), layers.Dense(len(RECIPE.digits), activation="softmax")],
        name="glyphs",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train_glyphs(out: Path) -> float:
    """Train the model deterministically, save it at `out` with the metadata the loader wants; the training seconds.
    Written under a temporary name and moved into place, metadata first: a reader never sees half a model."""
    import keras
    import tensorflow as tf

    from models.artifacts import ModelMetadata, file_sha256, weights_sha256, write_metadata

    x_train, y_train, _ = make_glyphs(RECIPE.train_images, RECIPE.train_seed, "train")
    x_val, y_val, _ = make_glyphs(RECIPE.val_images, RECIPE.val_seed, "validation")
    keras.utils.set_random_seed(RECIPE.train_seed)
    tf.config.experimental.enable_op_determinism()
    model = build_glyphs_model()
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=RECIPE.epochs, batch_size=RECIPE.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    errors = int((model.predict(x_val, verbose=0).argmax(axis=1) != y_val).sum())

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.stem}.{os.getpid()}.partial.keras")
    model.save(partial)
    write_metadata(out, ModelMetadata(
        class_names=list(RECIPE.class_names), input_shape=[RECIPE.size, RECIPE.size, 3], value_range=[0.0, 1.0],
        outputs="probabilities", dataset="glyphs", seed=RECIPE.train_seed, images=RECIPE.train_images,
        val_size=RECIPE.val_images, val_errors=errors, val_accuracy=1.0 - errors / RECIPE.val_images,
        sha256=file_sha256(partial), weights_sha256=weights_sha256(model.get_weights()),
    ))
    os.replace(partial, out)
    return seconds


def recipe_key() -> str:
    """What the cached model depends on: the recipe and the code that makes the data, builds and trains."""
    code = (_photo, _digits, glyph_samples, _glyph_alpha, photo_crops, _make_glyphs, build_glyphs_model, train_glyphs)
    text = repr(RECIPE) + "".join(inspect.getsource(part) for part in code)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def glyphs_model_path() -> Path:
    from core.settings import settings

    return settings.data_dir / "benchmarks" / f"glyphs-{recipe_key()}.keras"


def ensure_glyphs_model() -> Path:
    """The cached model, trained first if missing, in a subprocess: training seeds TensorFlow and makes its kernels
    deterministic, which the caller's process should not inherit."""
    path = glyphs_model_path()
    if not path.exists():
        done = subprocess.run([sys.executable, "-m", "benchmarks.glyphs"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"training the glyphs model failed: {done.stderr.strip().splitlines()[-1:]}")
    return path


def glyphs_answer(pool, count: int | None) -> KnownAnswer:
    """The first `count` validation images the glyphs model (trained if missing) gets right, all classes, with their
    evidence masks; predicted in `pool` (a benchmark's worker processes) or, without one, here."""
    from models.artifacts import read_metadata

    path = str(ensure_glyphs_model())
    images, labels, masks = make_glyphs(RECIPE.val_images, RECIPE.val_seed, "validation")
    outputs = pool.submit(predict, path, images).result() if pool is not None else predict(path, images)
    keep = np.flatnonzero(outputs.argmax(axis=1) == labels)[:count]
    return KnownAnswer("glyphs", path, images[keep], masks[keep], labels[keep], read_metadata(path).val_accuracy)


def contact_sheet(images: np.ndarray, masks: np.ndarray, labels: np.ndarray, path: Path, scale: int = 3) -> None:
    """Each image as it is and with its evidence's outline in red, its class name above, four pairs a row."""
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    side, caption, columns = RECIPE.size * scale, 12, 4
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (2 * side + 8), rows * (side + caption + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, mask, label) in enumerate(zip(images, masks, labels)):
        outlined = image.copy()
        outlined[find_boundaries(mask, mode="outer")] = (1.0, 0.0, 0.0)
        pair = np.concatenate([image, outlined], axis=1).repeat(scale, axis=0).repeat(scale, axis=1)
        x, y = (i % columns) * (2 * side + 8), (i // columns) * (side + caption + 4)
        draw.text((x, y), RECIPE.class_names[label], fill="black")
        sheet.paste(Image.fromarray((pair * 255).round().astype(np.uint8)), (x, y + caption))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, default=None, metavar="PATH",
                        help="Save a PNG of 16 validation images with their evidence outlined here.")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    path = glyphs_model_path()
    if path.exists():
        print(f"model: {path} (cached)")
    else:
        print(f"model: {path}: training ({RECIPE.train_images} images, {RECIPE.epochs} epochs)...")
        print(f"trained in {train_glyphs(path):.0f} s")
    images, labels, masks, samples = _make_glyphs(RECIPE.val_images, RECIPE.val_seed, "validation")
    right = predict(str(path), images).argmax(axis=1) == labels
    print(f"validation accuracy: {right.mean():.3f} ({right.sum()} of {len(right)}; "
          f"{len(np.unique(samples))} distinct handwritten glyphs)")
    print("per class: " + ", ".join(f"{name} {right[labels == label].mean():.3f}"
                                    for label, name in enumerate(RECIPE.class_names)))
    print(f"evidence: {masks.mean():.3f} of the pixels on average")
    if args.sheet:
        contact_sheet(images[:16], masks[:16], labels[:16], args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
