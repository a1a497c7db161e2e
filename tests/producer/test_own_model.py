"""A user's own model and folder, run exactly as a user runs them: the accuracy is Keras' own, a wrong input is told."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from tests.services import REPO
from tests.producer.test_local import local_env, results
from tests.tutorial import keras_evaluate


def local(tmp_path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "producer", "local", "--num-samples", "100", "--workers", "2", *args],
        cwd=REPO, env={**local_env(tmp_path), "COLUMNS": "200"}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("own")


def test_the_accuracy_of_a_tutorial_model_is_keras_own(tutorial, workdir):
    model, folder = tutorial
    keras_accuracy, images = keras_evaluate(model, folder)
    result = local(workdir, "--folder", str(folder), "--model", str(model), "--name", "mine")
    assert "pixels 0..255: inferred from the model's first layer, Rescaling(scale=0.00392157" in result.stdout
    assert "outputs logits" in result.stdout
    correct, labelled = map(int, re.search(r"accuracy +[0-9.]+% \((\d+) of (\d+) labelled images\)", result.stdout).groups())
    assert labelled == images
    assert abs(correct - round(keras_accuracy * images)) <= 1, (correct, keras_accuracy)
    assert 0.55 < correct / labelled < 1  # a real, imperfect model: some images are misclassified
    assert "looks right" in result.stdout and "WARNING" not in result.stdout
    stored = results(workdir, "SELECT value_range, outputs, input_check FROM runs WHERE name = 'mine'")[0]
    assert stored[0] == "[0.0, 255.0]" and stored[1] == "logits" and '"warning": null' in stored[2]


def test_the_same_model_fed_the_wrong_range_is_caught_early(tutorial, workdir):
    model, folder = tutorial
    result = local(workdir, "--folder", str(folder), "--model", str(model), "--name", "wrong", "--value-range", "0,1")
    warning = re.search(r"^WARNING: input check: (.*)$", result.stdout, re.M).group(1)  # one line: stdout is a pipe
    assert "fed 0..1" in warning and "--value-range 0,255" in warning
    # Told while the images were being explained: the check is the run's first task, before any LIME.
    check = json.loads(results(workdir, "SELECT input_check FROM runs WHERE name = 'wrong'")[0][0])
    finished = [
        datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)
        for (stamp,) in results(workdir, "SELECT e.updated_at FROM explanations e JOIN runs r ON r.id = e.run_id "
                                         "WHERE r.name = 'wrong'")
    ]
    before = sum(moment < datetime.fromisoformat(check["checked_at"]) for moment in finished)
    assert before < len(finished) / 2, (before, len(finished))
    status = subprocess.run(
        [sys.executable, "-m", "producer", "status", "wrong"], cwd=REPO, env={**local_env(workdir), "COLUMNS": "200"},
        capture_output=True, text=True, check=True,
    ).stdout
    assert "WARNING" in status and "--value-range 0,255" in " ".join(status.split())
    report = workdir / "wrong.html"
    subprocess.run(
        [sys.executable, "-m", "db", "report", "--run", "wrong", "-o", str(report)], cwd=REPO, env=local_env(workdir),
        check=True, capture_output=True,
    )
    assert 'class="warning"' in report.read_text() and "--value-range 0,255" in report.read_text()
