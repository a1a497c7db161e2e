"""The input contract: what the model's config says, what the options and the metadata file say, in that order."""

from __future__ import annotations

import json
import shutil

import keras
import pytest

from models.artifacts import ModelMetadata, summarise_keras_file
from models.contract import ContractError, decide_contract, parse_value_range
from tests.conftest import invoke


def test_a_tutorial_model_wants_0_255_and_gives_logits(tutorial):
    model, _ = tutorial
    summary = summarise_keras_file(model)
    assert summary.rescaling == pytest.approx((1 / 255, 0.0))  # behind the tutorial's RandomFlip
    assert summary.output_activation == "linear"
    contract = decide_contract(summary, None)
    assert contract.value_range == (0.0, 255.0) and contract.outputs == "logits" and contract.preprocess is None
    assert any("inferred from the model's first layer, Rescaling" in note for note in contract.notes)


def test_options_beat_the_metadata_file_which_beats_the_model(tutorial):
    summary = summarise_keras_file(tutorial[0])
    said = ModelMetadata(class_names=["a", "b"], input_shape=[64, 64, 3], value_range=[-1.0, 1.0], outputs="probabilities")
    assert decide_contract(summary, said).value_range == (-1.0, 1.0)
    assert decide_contract(summary, said).outputs == "probabilities"
    assert decide_contract(summary, said, value_range=(0.0, 1.0)).value_range == (0.0, 1.0)
    plain = ModelMetadata(class_names=["a", "b"], input_shape=[64, 64, 3])  # says nothing of the contract
    assert decide_contract(summary, plain).value_range == (0.0, 255.0)


def test_preprocessing_takes_8_bit_pixels_and_the_default_is_0_1(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]).save(path)
    summary = summarise_keras_file(path)
    assert summary.rescaling is None and summary.output_activation == "softmax"
    assert decide_contract(summary, None).value_range == (0.0, 1.0)
    contract = decide_contract(summary, None, preprocess="resnet50")
    assert contract.value_range == (0.0, 255.0) and contract.preprocess == "resnet50"
    with pytest.raises(ContractError, match="unknown --preprocess 'os.system'"):
        decide_contract(summary, None, preprocess="os.system")


@pytest.mark.parametrize("text", ["0-255", "255,0", "1,1", "a,b", "0,inf", "0,1,2"])
def test_a_bad_value_range_is_refused(text):
    with pytest.raises(ContractError, match="--value-range"):
        parse_value_range(text)


def test_describe_writes_the_metadata_file_that_runs_then_read(tutorial, tmp_path):
    model = tmp_path / "mine.keras"
    shutil.copy(tutorial[0], model)
    names = tmp_path / "classes.txt"
    names.write_text("no_rectangle\nrectangle\n")
    out = invoke("models", "describe", str(model), "--class-names-file", str(names)).stdout
    assert "pixels 0..255: inferred from the model's first layer" in out and "outputs logits" in out
    written = json.loads(model.with_suffix(".json").read_text())
    assert written["class_names"] == ["no_rectangle", "rectangle"] and written["value_range"] == [0.0, 255.0]
    assert written["outputs"] == "logits" and written["input_shape"] == [64, 64, 3] and len(written["sha256"]) == 64
    again = invoke("models", "describe", str(model), "--value-range", "0,1", "--preprocess", "vgg16").stdout
    assert "pixels 0..1: from --value-range" in again
    written = json.loads(model.with_suffix(".json").read_text())
    assert written["value_range"] == [0.0, 1.0] and written["preprocess"] == "vgg16"
    assert written["class_names"] == ["no_rectangle", "rectangle"]  # kept from the first description
    refused = invoke("models", "describe", str(model), "--class-names", "a,b,c", check=False)
    assert refused.returncode == 2 and "has 2 classes, but 3 class names were given" in refused.stderr
