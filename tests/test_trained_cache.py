"""The suite's cache of trained models: the same code and settings hit it, a changed trainer misses it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.trained_cache import TRAINING_CODE, from_cache, training_key


def test_a_changed_trainer_misses_the_cache_and_the_same_one_hits_it(tmp_path):
    code = []
    for root in TRAINING_CODE:  # a copy of the code that trains the models, to change
        copy = tmp_path / "code" / root.name
        (shutil.copytree if root.is_dir() else shutil.copy)(root, copy)
        code.append(copy)
    trainings = []

    def train(folder: Path) -> None:
        trainings.append(folder)
        (folder / "model.keras").write_text(f"weights of training {len(trainings)}")

    def model(settings, run: int) -> str:
        folder = tmp_path / f"run-{run}"
        folder.mkdir()
        from_cache("demo", training_key(settings, code), train, folder, cache=str(tmp_path / "cache"))
        return (folder / "model.keras").read_text()

    assert model(["rectangles", "default"], 1) == "weights of training 1"
    assert model(["rectangles", "default"], 2) == "weights of training 1"  # hit: nothing trained
    assert len(trainings) == 1

    trainer = tmp_path / "code" / "models" / "cnn.py"
    changed = trainer.read_text().replace("epochs=recipe.epochs", "epochs=recipe.epochs + 1")
    assert changed != trainer.read_text()
    trainer.write_text(changed)
    assert model(["rectangles", "default"], 3) == "weights of training 2"  # the changed trainer trained again
    assert model(["rectangles", "seed"], 4) == "weights of training 3"  # other settings: another model
    assert model(["rectangles", "seed"], 5) == "weights of training 3"
    assert len(trainings) == 3
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()) == ["demo"]  # older entries gone
