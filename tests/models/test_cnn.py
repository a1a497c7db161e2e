import json

import numpy as np

from models.artifacts import file_sha256
from models.classifier import load_classifier
from models.datasets import load_dataset
from tests.conftest import invoke, run_cli, seed_model


def test_rectangles_model_trains_well_above_chance_and_saves_its_metadata(rectangles_model):
    meta = json.loads(rectangles_model.with_suffix(".json").read_text())
    assert meta["class_names"] == ["rectangle", "no_rectangle"]
    assert meta["input_shape"] == [64, 64, 3] and meta["value_range"] == [0.0, 1.0]
    assert meta["dataset"] == "rectangles" and meta["preset"] == "default" and meta["seed"] == 0
    assert meta["val_size"] == 400 and meta["val_accuracy"] > 0.85
    assert meta["val_errors"] == round((1 - meta["val_accuracy"]) * 400)
    assert meta["sha256"] == file_sha256(rectangles_model)


def test_digits_model_trains_well_above_chance(digits_model):
    classifier = load_classifier(digits_model)
    data = load_dataset("digits", val_fraction=0.2)
    probabilities = classifier.predict(data.x_val)
    assert probabilities.shape == (360, 10)
    accuracy = (probabilities.argmax(axis=1) == data.y_val).mean()
    assert accuracy > 0.6  # chance is 0.1
    assert accuracy == classifier.metadata.val_accuracy


def test_a_single_sigmoid_output_comes_out_as_two_class_probabilities(rectangles_model):
    classifier = load_classifier(rectangles_model)
    assert classifier.model.outputs[0].shape[-1] == 1  # the article's one sigmoid unit
    data = load_dataset("rectangles", images=200, val_fraction=0.1)
    probabilities = classifier.predict(data.x_val[:5])
    raw = np.asarray(classifier.model(data.x_val[:5], training=False))[:, 0]
    assert probabilities.shape == (5, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities[:, 1], raw, atol=1e-6)


def test_predict_pads_odd_batches_and_splits_large_ones(rectangles_model):
    classifier = load_classifier(rectangles_model, batch_size=64)
    images = load_dataset("rectangles", images=200, val_fraction=0.5).x_val  # 100 images
    whole = classifier.predict(images)
    assert whole.shape == (100, 2)
    for n in (1, 3, 17, 64, 65):
        np.testing.assert_allclose(classifier.predict(images[:n]), whole[:n], atol=1e-5)


def test_train_cli_seed_preset_prints_accuracy(tmp_path):
    out = tmp_path / "seed.keras"
    result = run_cli("models", "train", "--dataset", "digits", "--preset", "seed", "--out", str(out))
    assert "validation accuracy" in result.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["preset"] == "seed" and meta["val_size"] == 20  # the article's 200 images, 10% validation


def test_train_cli_refuses_bad_options_in_one_line():
    for args in (["--dataset", "cifar"], ["--preset", "huge"]):
        result = invoke("models", "train", *args, check=False)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")


def test_the_same_seed_trains_the_same_weights(tmp_path):
    """What is reproducible is the weights, byte for byte; the .keras file also holds the save time and Python
    object ids, so its own sha256 is not."""
    from models.cnn import train

    first, second, other = (
        train("rectangles", tmp_path / f"{name}.keras", preset="seed", seed=seed).metadata
        for name, seed in (("first", 0), ("second", 0), ("other", 1))
    )
    assert first.weights_sha256 == second.weights_sha256 != other.weights_sha256
    assert first.val_accuracy == second.val_accuracy


def test_the_shapes_model_is_position_invariant_and_trained_on_views_and_clutter_only_images(tmp_path_factory):
    from models.artifacts import read_metadata
    from models.cnn import PRESETS, training_set

    path = seed_model(tmp_path_factory, "shapes")  # the CLI's training, shared with the benchmarks' quick runs
    metadata = read_metadata(path)
    classifier = load_classifier(path)
    layers = [type(layer).__name__ for layer in classifier.model.layers]
    assert "GlobalAveragePooling2D" in layers and "Flatten" not in layers
    assert metadata.class_names == ["ring", "plus"] and metadata.input_shape == [64, 64, 3]
    recipe = PRESETS["seed"]
    dataset = load_dataset("shapes", images=recipe.images, val_fraction=recipe.val_fraction, seed=0,
                           split_seed=recipe.split_seed)
    x, y, batch_size = training_set(dataset, seed=0)
    n = len(dataset.x_train)
    assert len(x) == 5 * n and batch_size == 64
    np.testing.assert_array_equal(x[n : 2 * n], dataset.x_train[:, ::-1])  # flipped views, same labels
    assert (y[4 * n :] == 0.5).all() and set(np.unique(y[: 4 * n])) == {0.0, 1.0}  # clutter only: "don't know"
    accuracy = (classifier.predict(dataset.x_val).argmax(axis=1) == dataset.y_val).mean()
    assert accuracy == metadata.val_accuracy
