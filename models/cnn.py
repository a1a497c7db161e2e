"""The demo CNNs (the article's, and a small position-invariant one for shapes and tagged), their training recipes,
and saving a trained model with its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.artifacts import ModelMetadata, file_sha256, weights_sha256, write_metadata
from models.datasets import Dataset, load_dataset
from models.outputs import class_columns


@dataclass(frozen=True)
class Preset:
    images: int | None  # None: the data set's default size
    val_fraction: float
    epochs: int
    split_seed: int = 42


PRESETS = {
    # The article's recipe: 200 images, 10% validation (20 images), 10 epochs, batch 32.
    "seed": Preset(images=200, val_fraction=0.1, epochs=10),
    # Large enough that the validation set (400 rectangles, 360 digits) says something.
    "default": Preset(images=None, val_fraction=0.2, epochs=10),
}


def build_cnn(input_shape: tuple[int, int, int], num_classes: int):
    """Conv2D(32, 3x3, same, relu) -> MaxPooling(2) -> Flatten -> Dense(32, relu) -> output.

    Two classes get the article's single sigmoid output (the predict wrapper turns it into two
    probabilities); more classes get a softmax.
    """
    import keras

    binary = num_classes == 2
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid") if binary else keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_shapes_cnn(input_shape: tuple[int, int, int]):
    """Three 3x3 convolutions (receptive field 18 px, more than the largest object) -> global average pooling ->
    Dense(32) -> one sigmoid: shape detectors that fire wherever the objects are, each object adding its evidence.
    The article's Flatten -> Dense head cannot learn a shape at a random position (it stayed near 50%)."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(16, (3, 3), padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def training_set(dataset: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """What the model is fitted on, and the batch size: the training split as it is, except for shapes and tagged.

    Shapes: each image in four views (as it is, flipped both ways, transposed: neither shape changes) so that 1,600
    images are not learnt by heart, and as many clutter-only images with target 0.5, so that "no ring" does not
    come to mean "plus": without them a model can learn to find rings only and call everything else a plus, and
    LIME then finds nothing on a plus image.
    Tagged: the same, but the views are made of the images before tagging and the same images are tagged in every
    view afterwards: a flip would move the tag, and the shortcut is a fixed place.
    """
    if dataset.name not in ("shapes", "tagged"):
        return dataset.x_train, dataset.y_train, 32
    from models.datasets import make_shapes_without_objects, paint_tag

    x = dataset.x_train if dataset.name == "shapes" else dataset.train_untagged
    views = np.concatenate([x, x[:, ::-1], x[:, :, ::-1], x.transpose(0, 2, 1, 3)])
    if dataset.name == "tagged":
        views = paint_tag(views, np.tile(dataset.train_tagged, 4))
    targets = np.tile(dataset.y_train, 4).astype(np.float32)
    empty = make_shapes_without_objects(len(x), seed=seed + 1)
    return np.concatenate([views, empty]), np.concatenate([targets, np.full(len(x), 0.5, np.float32)]), 64


@dataclass
class TrainResult:
    path: Path
    metadata: ModelMetadata
    dataset: Dataset


def train(dataset_name: str, out: Path, *, preset: str = "default", seed: int = 0, verbose: int = 0) -> TrainResult:
    """Train the demo CNN on a built-in data set and save `out` (.keras) with `out`.json metadata."""
    import keras

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    recipe = PRESETS[preset]
    dataset = load_dataset(
        dataset_name, images=recipe.images, val_fraction=recipe.val_fraction, seed=seed, split_seed=recipe.split_seed
    )
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # Same seed, same weights: without this, multi-threaded kernels make every training a little different.
    tf.config.experimental.enable_op_determinism()
    if dataset_name in ("shapes", "tagged"):
        model = build_shapes_cnn(dataset.input_shape)
    else:
        model = build_cnn(dataset.input_shape, len(dataset.class_names))
    x, y, batch_size = training_set(dataset, seed)
    model.fit(x, y, epochs=recipe.epochs, batch_size=batch_size, validation_data=(dataset.x_val, dataset.y_val), verbose=verbose)
    predicted = predicted_labels(model.predict(dataset.x_val, verbose=0))
    errors = int((predicted != dataset.y_val).sum())

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    metadata = ModelMetadata(
        class_names=list(dataset.class_names),
        input_shape=list(dataset.input_shape),
        value_range=[0.0, 1.0],
        outputs="probabilities",
        dataset=dataset_name,
        preset=preset,
        seed=seed,
        images=recipe.images,
        val_fraction=recipe.val_fraction,
        split_seed=recipe.split_seed,
        val_size=len(dataset.y_val),
        val_errors=errors,
        val_accuracy=1.0 - errors / len(dataset.y_val),
        sha256=file_sha256(out),
        weights_sha256=weights_sha256(model.get_weights()),
    )
    write_metadata(out, metadata)
    return TrainResult(out, metadata, dataset)


def predicted_labels(output: np.ndarray) -> np.ndarray:
    """Class index per row of a model's output, for one sigmoid or a softmax."""
    return class_columns(output).argmax(axis=1)
