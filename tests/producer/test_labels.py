"""Labels that cannot go silently wrong: a source's classes are the model's outputs only where that can be told."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from tests.conftest import invoke
from tests.producer.conftest import assert_refused, stored_rows

WORDNET = ["n01440764 tench, Tinca tinca", "n01443537 goldfish, Carassius auratus",
           "n01484850 great white shark, white shark"]  # the start of ImageNet's LOC_synset_mapping.txt


@pytest.fixture(scope="module")
def thousand_outputs(tmp_path_factory):
    """A 1000-output model with no metadata file: its outputs are numbers only."""
    import keras

    path = tmp_path_factory.mktemp("model") / "imagenet.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(1000, activation="softmax")]).save(path)
    return path


def class_folders(root, names, per_class: int = 2):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def names_file(path, count: int = 1000):
    path.write_text("\n".join(WORDNET + [f"n{i:08d} class {i}" for i in range(len(WORDNET), count)]) + "\n")
    return path


def stored_labels(env) -> list[tuple[int, str]]:
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT ri.true_label, i.true_label FROM run_images ri JOIN images i ON i.id = ri.image_id "
            "ORDER BY ri.true_label")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_two_folders_for_a_thousand_unnamed_outputs_are_refused_naming_the_fix(env, tmp_path, thousand_outputs):
    folder = class_folders(tmp_path / "val", ["a", "b"])
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(thousand_outputs), check=False, env=env)
    assert_refused(result, "has 2 classes ('a', 'b'), the model 1000 outputs and no class names: which output is which "
                           "class cannot be told; give the model's class names in its output order: --class-names-file")
    assert f"python -m models describe {thousand_outputs} --class-names-file FILE" in result.stderr
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_a_class_count_mismatch_is_refused_with_nothing_stored(env, tmp_path):
    import keras

    model = tmp_path / "ten.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(model)
    folder = class_folders(tmp_path / "val", ["cat", "dog", "fox"])
    assert_refused(invoke("producer", "enqueue", "--folder", str(folder), "--model", str(model), check=False, env=env),
                   "has 3 classes ('cat', 'dog', 'fox'), the model 10 outputs and no class names")
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_wordnet_folders_are_matched_to_a_names_file_by_their_first_word(env, tmp_path, thousand_outputs):
    folder = class_folders(tmp_path / "val", ["n01484850", "n01440764"])  # outputs 2 and 0, listed in sorted order
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(thousand_outputs),
                    "--class-names-file", str(names_file(tmp_path / "LOC_synset_mapping.txt")), env=env)
    assert "4 images stored" in result.stdout
    assert stored_labels(env) == [(0, WORDNET[0])] * 2 + [(2, WORDNET[2])] * 2


def test_a_folder_name_not_among_the_classes_is_refused(env, tmp_path, thousand_outputs):
    folder = class_folders(tmp_path / "val", ["n01440764", "n99999999"])
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(thousand_outputs),
                    "--class-names-file", str(names_file(tmp_path / "names.txt")), check=False, env=env)
    assert_refused(result, "not among the model's 1000 class names ('n01440764 tench, Tinca tinca', "
                           "'n01443537 goldfish, Carassius auratus', 'n01484850 great white shark, white shark', "
                           "'n00000003 class 3', 'n00000004 class 4' and 995 more): 'n99999999'")
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_a_names_file_must_name_every_output(env, tmp_path, thousand_outputs):
    folder = class_folders(tmp_path / "val", ["n01440764"])
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(thousand_outputs),
                    "--class-names-file", str(names_file(tmp_path / "short.txt", count=998)), check=False, env=env)
    assert_refused(result, "short.txt names 998 classes; imagenet.keras has 1000 outputs")


def test_npz_labels_that_cannot_be_told_apart_from_the_outputs_are_refused(env, tmp_path, thousand_outputs):
    rng = np.random.default_rng(0)
    npz = tmp_path / "two.npz"
    np.savez(npz, X=rng.random((4, 8, 8, 3)).astype(np.float32), y=np.array([0, 1, 1, 0]))
    model = ["--model", str(thousand_outputs)]
    assert_refused(invoke("producer", "enqueue", "--npz", str(npz), *model, check=False, env=env),
                   "has labels 0..1, the model 1000 outputs and no class names")
    # the model's names given: its labels are those outputs
    names = names_file(tmp_path / "names.txt")
    assert "4 images stored" in invoke("producer", "enqueue", "--npz", str(npz), *model, "--class-names-file",
                                       str(names), env=env).stdout
    assert sorted(set(stored_labels(env))) == [(0, WORDNET[0]), (1, WORDNET[1])]


def test_npz_class_names_are_matched_to_the_model_by_name(env, tmp_path, thousand_outputs):
    npz = tmp_path / "named.npz"
    np.savez(npz, X=np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32), y=np.array([0, 1]),
             class_names=np.array(["n01484850", "n01443537"]))
    invoke("producer", "enqueue", "--npz", str(npz), "--model", str(thousand_outputs), "--class-names-file",
           str(names_file(tmp_path / "names.txt")), env=env)
    assert stored_labels(env) == [(1, WORDNET[1]), (2, WORDNET[2])]


def test_describe_reads_keras_imagenet_class_index(tmp_path, thousand_outputs):
    index = tmp_path / "imagenet_class_index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    model = tmp_path / "described.keras"
    model.write_bytes(thousand_outputs.read_bytes())
    invoke("models", "describe", str(model), "--class-names-file", str(index))
    assert json.loads(model.with_suffix(".json").read_text())["class_names"][:2] == ["n00000000 class_0",
                                                                                   "n00000001 class_1"]
