"""The input check on a real model: a wrong scale, a wrong class order and a blind model are each told, with the fix."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from models.classifier import load_classifier
from tests.tutorial import CLASSES
from worker.input_check import check_input, sample_positions


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


def test_the_sample_takes_the_classes_in_turn():
    labels = [0] * 100 + [1] * 100 + [2] * 5
    picked = sample_positions(labels, size=12)
    assert len(picked) == 12 and picked == sorted(picked)
    assert sorted(labels[p] for p in picked) == [0] * 4 + [1] * 4 + [2] * 4
    assert sample_positions([None] * 3) == [0, 1, 2]
