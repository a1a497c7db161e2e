import shutil

import keras
import numpy as np
import pytest

from models.classifier import ModelLoadError, UnsafeModelError, load_classifier


def test_a_lambda_layer_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"

    # A Python lambda is saved as bytecode: the kind of payload safe mode exists to refuse.
    # Were it ever run after loading, it would leave the marker file behind.
    touch_marker = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Lambda(touch_marker), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
    )
    path = tmp_path / "lambda.keras"
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model above ran it once, here, on purpose
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        load_classifier(path)
    assert not marker.exists()


def test_missing_and_corrupt_model_files_are_refused_by_name(tmp_path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_classifier(tmp_path / "nope.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(ModelLoadError, match="corrupt.keras is not a Keras 3 .keras model archive"):
        load_classifier(corrupt)


def test_a_model_that_does_not_take_images_is_refused(tmp_path):
    path = tmp_path / "tabular.keras"
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(2, activation="softmax")]).save(path)
    with pytest.raises(ModelLoadError, match="an image model wants"):
        load_classifier(path)


def test_a_model_replaced_behind_its_metadata_is_refused(tmp_path, rectangles_model, digits_model):
    shutil.copy(rectangles_model, tmp_path / "model.keras")
    shutil.copy(rectangles_model.with_suffix(".json"), tmp_path / "model.json")
    load_classifier(tmp_path / "model.keras")
    shutil.copy(digits_model, tmp_path / "model.keras")
    with pytest.raises(ModelLoadError, match="file was replaced"):
        load_classifier(tmp_path / "model.keras")


def test_a_users_model_without_metadata_gets_defaults(tmp_path):
    path = tmp_path / "user.keras"
    keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    ).save(path)
    classifier = load_classifier(path)
    assert classifier.class_names == ["0", "1", "2"]
    assert classifier.input_shape == (16, 16, 3)
    assert classifier.predict(np.zeros((2, 16, 16, 3), np.float32)).shape == (2, 3)


def test_metadata_is_replaced_whole_while_another_process_reads_it(tmp_path):
    """A worker's processes fetch a model into the shared cache at once: one rewrites the metadata while another
    reads it. A reader must see the old file whole or the new one whole, never a truncated one."""
    from models.artifacts import ModelMetadata, metadata_path, read_metadata, write_metadata

    model = tmp_path / "m.keras"
    old = ModelMetadata(class_names=["a", "b"], input_shape=[8, 8, 3], sha256="1" * 64)
    write_metadata(model, old)
    with open(metadata_path(model)) as reader:  # opened before the rewrite, read after it
        write_metadata(model, ModelMetadata(class_names=["c", "d"], input_shape=[8, 8, 3], sha256="2" * 64))
        assert '"1111' in reader.read()  # the old file, whole: the new one is a new file, moved into place
    assert read_metadata(model).class_names == ["c", "d"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no partial file left behind
