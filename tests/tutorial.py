"""A user's model and folder, made the way the Keras image-classification tutorial makes them: 8-bit PNGs in
one sub-folder per class, a model that starts with Rescaling(1/255) (so it wants pixels in 0..255) and ends
in logits, saved as `.keras` with no metadata file beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("no_rectangle", "rectangle")  # folder names; sorted, as image_dataset_from_directory numbers them
SIZE = 64


def write_class_folders(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """uint8 PNGs under folder/<class name>/, as a user's validation folder."""
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / CLASSES[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:04d}.png")


def rectangles_uint8(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo's rectangles as 8-bit pixels, labelled in CLASSES' order (1 = rectangle)."""
    from models.datasets import make_rectangles

    images, demo_labels = make_rectangles(n, seed=seed)
    return np.round(images * 255).astype(np.uint8), (demo_labels == 0).astype(np.int64)


def make_tutorial_model(root: Path, *, train_images: int = 240, val_images: int = 48, epochs: int = 2) -> tuple[Path, Path]:
    """Train a small tutorial-style CNN on 8-bit rectangles; returns (mine.keras, val folder). A short training,
    so that the model is good but not perfect and some validation images are misclassified."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train = rectangles_uint8(train_images, seed=11)
    x_val, y_val = rectangles_uint8(val_images, seed=12)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.Sequential([keras.layers.RandomFlip("horizontal")]),  # the tutorial's augmentation: inactive at inference
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(len(CLASSES)),  # logits, as in the tutorial
    ])
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    model.fit(x_train.astype(np.float32), y_train, epochs=epochs, batch_size=32, verbose=0)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "mine.keras"
    model.save(path)
    write_class_folders(root / "val", x_val, y_val)
    return path, root / "val"


def keras_evaluate(model_path: Path, folder: Path) -> tuple[float, int]:
    """Keras' own accuracy on a class-per-folder set, read as the tutorial reads it; (accuracy, images)."""
    import keras

    model = keras.saving.load_model(model_path)
    dataset = keras.utils.image_dataset_from_directory(
        folder, image_size=(SIZE, SIZE), shuffle=False, batch_size=32, label_mode="int", verbose=False,
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    _, accuracy = model.evaluate(dataset, verbose=0)
    return float(accuracy), sum(len(labels) for _, labels in dataset)
