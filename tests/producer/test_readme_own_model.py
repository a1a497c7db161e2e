"""README's "Explain your own model" steps, run as they stand on a tutorial-style model and folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.services import REPO
from tests.producer.test_local import local_env
from tests.tutorial import keras_evaluate


def readme_steps(document: Path = REPO / "README.md") -> str:
    """The own-model block of the README (docs/own-model.md shows the same one: tests/test_docs.py holds them
    equal)."""
    return re.search(r"<!-- run by tests/producer/test_readme_own_model.py.*?-->\n```bash\n(.*?)```",
                     document.read_text(), flags=re.S).group(1)


def test_the_readme_steps_run_as_they_stand(tutorial, tmp_path):
    model, folder = tutorial
    shutil.copy(model, tmp_path / "mine.keras")
    shutil.copytree(folder, tmp_path / "val")
    env = {**local_env(tmp_path), "COLUMNS": "200", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("DATA_DIR")  # as a user has it: results under ./data
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_steps()], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    keras_accuracy, images = keras_evaluate(model, folder)
    correct = [int(n) for n in re.findall(rf"^  accuracy +[0-9.]+% \((\d+) of {images} labelled images\)$", out, re.M)]
    assert len(correct) == 2 and all(abs(n - round(keras_accuracy * images)) <= 1 for n in correct)  # local, status
    assert "looks right" in out and "WARNING" not in out
    assert (tmp_path / "mine.html").stat().st_size > 10_000 and (tmp_path / "data" / "results.db").exists()
    table = out[out.index("\ntrue_label "):]  # `db sql`'s rows, plain text: the output is a pipe here
    confusion = {(true, predicted): int(n) for true, predicted, n in re.findall(r"^(\w+) +(\w+) +(\d+)$", table, re.M)}
    assert sum(confusion.values()) == images
    assert sum(n for (true, predicted), n in confusion.items() if true == predicted) in correct
    written = json.loads((tmp_path / "mine.json").read_text())
    assert written["class_names"] == ["no_rectangle", "rectangle"] and written["value_range"] == [0.0, 255.0]
