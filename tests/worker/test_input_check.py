"""The input check on a real model: a wrong scale, a wrong class order and a blind model are each told, with the fix,
whatever the number of classes and on a sample of one class as well as of several."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.classifier import load_classifier
from models.datasets import load_dataset
from tests.tutorial import CLASSES
from worker.input_check import SAME_DEPENDENCE, check_input, sample_positions


@pytest.fixture(scope="module")
def sample(tutorial):
    model, folder = tutorial
    files = sorted(folder.glob("*/*.png"))
    images = [np.asarray(Image.open(path)) for path in files]
    labels = [CLASSES.index(path.parent.name) for path in files]
    return load_classifier(model, logits=True), images, labels


def check(classifier, images, labels, value_range, names=CLASSES):
    return check_input(
        images, labels, classifier.predict, value_range=value_range, input_shape=classifier.input_shape,
        class_names=list(names), model_path="mine.keras",
    )


def test_the_right_contract_passes(sample):
    classifier, images, labels = sample
    result = check(classifier, images, labels, (0.0, 255.0))
    assert result["warning"] is None
    assert result["accuracy"] > 0.6 and result["chance"] == 0.5 and result["images"] == len(images)
    assert [a["value_range"] for a in result["alternatives"]] == [[0.0, 1.0], [-1.0, 1.0]]


def test_pixels_on_the_wrong_scale_are_told_with_the_fix(sample):
    classifier, images, labels = sample
    result = check(classifier, images, labels, (0.0, 1.0))
    assert result["accuracy"] <= result["chance"]
    assert "nearly the same probabilities" in result["warning"]
    assert "--value-range 0,255" in result["warning"] and "python -m models describe mine.keras" in result["warning"]


def test_classes_in_another_order_are_told(sample):
    classifier, images, labels = sample
    swapped = [1 - label for label in labels]
    result = check(classifier, images, swapped, (0.0, 255.0))
    assert "another order" in result["warning"] and "--class-names" in result["warning"]


def test_a_model_blind_to_the_images_is_told_without_labels():
    def blind(batch):
        return np.tile([0.3, 0.7], (len(batch), 1))

    images = [np.full((8, 8, 3), value, np.uint8) for value in range(0, 250, 25)]
    result = check_input(images, [None] * 10, blind, value_range=(0, 1), input_shape=(8, 8, 3), class_names=["a", "b"])
    assert result["accuracy"] is None and result["predicted"] == {"b": 10}
    assert "nearly the same probabilities" in result["warning"] and "never learned" in result["warning"]


@pytest.fixture(scope="module")
def digits(digits_model):
    """The demo digits model (10 classes, pixels in 0..1) and its validation images as 8-bit pixels."""
    data = load_dataset("digits")
    return load_classifier(digits_model), [np.round(x * 255).astype(np.uint8) for x in data.x_val], data.y_val


def one_class(images, labels, label: int, count: int = 8) -> list[np.ndarray]:
    return [image for image, known in zip(images, labels) if known == label][:count]


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "unlabelled"])
def test_a_trained_model_on_images_of_one_class_passes(sample, digits, labelled):
    """A model sure of the one class it sees gives nearly the same top probability to every image: the check looks
    at how its unlikely classes move, so it is not taken for a blind one (the weak tutorial model included)."""
    for classifier, images, labels, value_range, classes in [
        (*sample, (0.0, 255.0), CLASSES),
        (*digits, (0.0, 1.0), [str(d) for d in range(10)]),
    ]:
        for label in sorted(set(labels)):
            sample_images = one_class(images, labels, label)
            known = [label if labelled else None] * len(sample_images)
            result = check(classifier, sample_images, known, value_range, classes)
            assert result["warning"] is None, (classes[label], result)


def test_pixels_on_the_wrong_scale_are_told_on_images_of_one_class(digits):
    classifier, images, labels = digits
    for known in ([3] * 8, [None] * 8):
        result = check(classifier, one_class(images, labels, 3), known, (0.0, 255.0), [str(d) for d in range(10)])
        assert "nearly the same probabilities" in result["warning"] and "--value-range 0,1" in result["warning"]


def untrained_mobilenet(tmp_path, statistics: str):
    """keras.applications.MobileNetV2(weights=None) with 1000 classes at 96x96 (224 would only be slower), its
    batch-norm layers as built ("default"), or with gamma and beta from a seeded RNG and the moving statistics from it
    too ("random") or from the photos it is checked on ("photos")."""
    import keras
    from keras.applications.mobilenet_v2 import preprocess_input

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, classes=1000, input_shape=(96, 96, 3))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or statistics == "default":
            continue
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
        layer.beta.assign(rng.normal(0.0, 0.5, layer.beta.shape))
        if statistics == "random":
            layer.moving_mean.assign(rng.normal(0.0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.01, 0.5, layer.moving_variance.shape))
        else:
            layer.momentum = 0.0  # so that the training pass below sets the statistics to the photos' own
    if statistics == "photos":
        model(preprocess_input(np.stack(cat_photos()).astype(np.float32)), training=True)
    model.save(tmp_path / "mobilenet.keras")
    return load_classifier(tmp_path / "mobilenet.keras", preprocess="mobilenet_v2")


def cat_photos() -> list[np.ndarray]:
    """Six views of scikit-image's cat photograph at 96x96: a sample of one class."""
    import skimage.data
    from skimage.transform import resize

    cat = skimage.data.chelsea()
    views = [cat[y : y + 240, x : x + 240] for y, x in [(0, 0), (0, 100), (60, 50), (60, 200), (30, 150), (0, 211)]]
    return [np.round(resize(view, (96, 96), preserve_range=True)).astype(np.uint8) for view in views]


@pytest.mark.parametrize("statistics", ["default", "random", "photos"])
def test_an_untrained_network_of_1000_classes_is_told_on_photos_of_one_class(tmp_path, statistics):
    """Untrained, MobileNetV2 gives every photo the same uniform probabilities (default statistics), the same
    probabilities held by one large bias (random ones), or probabilities that differ from photo to photo but stay
    near uniform (statistics of the photos themselves): each is told, and no value range is named as the fix."""
    classifier = untrained_mobilenet(tmp_path, statistics)
    result = check_input(
        cat_photos(), [0] * 6, classifier.predict, value_range=(0.0, 255.0), input_shape=classifier.input_shape,
        class_names=[str(i) for i in range(1000)], model_path="mobilenet.keras",
    )
    warning = result["warning"]
    assert "never learned to tell these images apart" in warning and "weights=None" in warning, warning
    assert "--value-range" not in warning
    if statistics == "photos":  # the photos do move its outputs: it is its near-uniform top class that tells
        assert result["dependence"] > SAME_DEPENDENCE and "nearly uniform" in warning
    else:
        assert "nearly the same probabilities to every image" in warning


def test_the_sample_takes_the_classes_in_turn():
    labels = [0] * 100 + [1] * 100 + [2] * 5
    picked = sample_positions(labels, size=12)
    assert len(picked) == 12 and picked == sorted(picked)
    assert sorted(labels[p] for p in picked) == [0] * 4 + [1] * 4 + [2] * 4
    assert sample_positions([None] * 3) == [0, 1, 2]
