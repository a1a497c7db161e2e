"""Runtimes: real OpenVINO conversions predicting what Keras predicts, the fallback to Keras, conversions at once,
and the choice itself."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from models.classifier import load_classifier
from models.datasets import load_dataset
from models.runtimes import EXACT_WITHIN, Comparison, ConversionError, choose_runtime, convert_to_openvino, decide


def folder_images(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path), np.float32) for path in sorted(folder.glob("*/*.png"))])


def assert_reproduces_keras(classifier, images, tmp_path):
    served = choose_runtime(classifier, "openvino", images, cache_dir=tmp_path / "cache", threads=1)
    assert served.choice.runtime == "openvino" and served.runtime.name == "openvino", served.choice.line
    ours, keras_says = served.predict(images), classifier.predict(images)
    assert np.abs(ours - keras_says).max() <= EXACT_WITHIN
    assert (ours.argmax(axis=1) == keras_says.argmax(axis=1)).all()
    assert served.choice.max_prob_diff == pytest.approx(np.abs(ours - keras_says).max(), abs=1e-9)
    return served


def test_a_tutorial_model_with_rescaling_and_logits_converts_exactly(tutorial, tmp_path):
    model, folder = tutorial
    images = folder_images(folder)  # 0..255: the model's Rescaling(1/255) is part of what is converted
    assert_reproduces_keras(load_classifier(model, logits=True), images, tmp_path)


def test_a_single_sigmoid_output_converts_exactly(rectangles_model, tmp_path):
    classifier = load_classifier(rectangles_model)
    served = assert_reproduces_keras(classifier, load_dataset("rectangles").x_val[:40], tmp_path)
    assert served.predict(load_dataset("rectangles").x_val[:3]).shape == (3, 2)  # [1 - p, p], as with Keras


def test_a_keras_applications_network_converts_with_its_preprocessing(tmp_path):
    from models.classifier import Classifier
    from models.artifacts import ModelMetadata
    from models.realsize import calibration_images, standin_network

    # logits spread less than a trained network's: at 224x224 float32's own rounding moves a confident network's
    # probabilities by about 1e-5 (TensorFlow's with oneDNN on and off differ by as much), the bound itself
    network, family = standin_network("mobilenet_v2", side=96, classes=1000, logit_spread=1.0)
    classifier = Classifier(network, ModelMetadata([str(i) for i in range(1000)], [96, 96, 3]), "mnv2-96",
                            preprocess=family)
    images = calibration_images(96)[:16]  # photographs
    served = assert_reproduces_keras(classifier, images, tmp_path)
    assert len(set(served.predict(images).argmax(axis=1))) > 1  # the stand-in tells images apart


def a_model_openvino_cannot_convert(path: Path, side: int = 8) -> Path:
    """Keras' own preprocessing layers, safe to load, whose counting op (DenseBincount) OpenVINO has no rule for."""
    keras.Sequential([
        keras.Input((side, side, 3)), keras.layers.Flatten(), keras.layers.Discretization(bin_boundaries=[0.5]),
        keras.layers.CategoryEncoding(num_tokens=2, output_mode="count"), keras.layers.Dense(2, activation="softmax"),
    ]).save(path)
    return path


def test_a_model_the_converter_cannot_take_stays_on_keras_saying_why(tmp_path):
    classifier = load_classifier(a_model_openvino_cannot_convert(tmp_path / "counts.keras"))
    images = np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32)
    cache = tmp_path / "cache"
    for requested in ("auto", "auto", "openvino"):  # the second time from the kept choice, the third from the failure
        served = choose_runtime(classifier, requested, images, cache_dir=cache, threads=1)
        assert served.choice.runtime == "keras" and served.runtime.name == "keras"
        assert "the OpenVINO conversion failed" in served.choice.line and "DenseBincount" in served.choice.line
        np.testing.assert_array_equal(served.predict(images), classifier.predict(images))
    assert sorted(path.suffix for path in cache.iterdir() if path.suffix != ".lock") == [".failed", ".json", ".json"]
    with pytest.raises(ConversionError, match="DenseBincount"):
        convert_to_openvino(classifier, cache)


def convert_in_a_process(model: str, cache: str, barrier) -> str:
    from models.classifier import load_classifier
    from models.runtimes import OpenVinoRuntime, convert_to_openvino

    classifier = load_classifier(model, logits=True)
    barrier.wait()  # both processes convert from here at once
    path = convert_to_openvino(classifier, Path(cache))
    OpenVinoRuntime(path, threads=1)  # whole: it compiles
    return str(path)


def test_two_processes_converting_one_model_at_once_share_one_whole_conversion(tutorial, tmp_path):
    model, _ = tutorial
    context = multiprocessing.get_context("spawn")  # TensorFlow is loaded here: never fork it
    with context.Manager() as manager:
        barrier = manager.Barrier(2)
        with context.Pool(2) as pool:
            paths = pool.starmap(convert_in_a_process, [(str(model), str(tmp_path / "cache"), barrier)] * 2)
    assert paths[0] == paths[1]
    kept = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert [name for name in kept if not name.endswith(".lock")] == [Path(paths[0]).parent.name]  # no partial left
    assert sorted(path.name for path in Path(paths[0]).parent.iterdir()) == ["model.bin", "model.xml"]


def test_auto_takes_the_faster_exact_runtime_and_says_so(tutorial, tmp_path):
    model, folder = tutorial
    classifier = load_classifier(model, logits=True)
    served = choose_runtime(classifier, "auto", folder_images(folder), cache_dir=tmp_path / "cache", threads=1)
    choice = served.choice
    assert choice.speedup is not None and choice.runtime == ("openvino" if choice.speedup > 1 else "keras")
    assert served.runtime.name == choice.runtime and choice.line.startswith(f"runtime {choice.runtime}: ")
    # served at its best batch of the engine's sizes, said
    assert choice.batch_size in (16, 32, 64, 128, 256) and served.batch_size == choice.batch_size
    assert choice.line.endswith(f"; batches of {choice.batch_size}")
    keras_only = choose_runtime(classifier, "keras", folder_images(folder)[:0], cache_dir=tmp_path / "none", threads=1)
    assert keras_only.runtime.name == "keras" and not (tmp_path / "none").exists()


@pytest.mark.parametrize("keras_s, runtime, said", [
    (0.028, "openvino", "runtime openvino: 2.8x keras, max |dp| 3.0e-10 on 64 images; batches of 16"),
    (0.008, "keras", "runtime keras: 1.2x openvino (OpenVINO exact: max |dp| 3.0e-10 on 64 images); batches of 64"),
])
def test_auto_chooses_keras_where_keras_is_faster_and_openvino_where_it_is(keras_s, runtime, said):
    timed = {"keras": (64, keras_s), "openvino": (16, 0.010)}  # best batch and seconds per image of each
    choice = decide("auto", Comparison(64, 3e-10, 0, timed))
    assert (choice.runtime, choice.line, choice.batch_size) == (runtime, said, timed[runtime][0])


def test_an_inexact_conversion_is_never_used_however_fast_or_asked_for():
    fast = {"keras": (64, 0.03), "openvino": (64, 0.01)}
    for requested in ("auto", "openvino"):
        assert decide(requested, Comparison(64, 2e-3, 0, fast)).runtime == "keras"
        differing = decide(requested, Comparison(64, 1e-7, 2, fast))  # a near tie decided the other way
        assert differing.runtime == "keras" and "2 predicted classes differ" in differing.line
    assert decide("auto", Comparison(64, EXACT_WITHIN, 0, fast)).runtime == "openvino"  # the bound itself is exact
