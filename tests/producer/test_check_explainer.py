"""`python -m producer check-explainer`: the by-construction check on a user's own model, folder and evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import invoke
from tests.tutorial import CLASSES


@pytest.fixture(scope="module")
def evidence(tutorial, tmp_path_factory):
    """The tutorial folder's rectangles as a mask folder and as a boxes file (a rectangle is its own box)."""
    from models.datasets import make_rectangles_with_masks

    _, folder = tutorial
    root = tmp_path_factory.mktemp("evidence")
    _, demo_labels, masks = make_rectangles_with_masks(48, seed=12)  # tests.tutorial's validation images
    lines = ["path,x0,y0,x1,y1"]
    for i, (label, mask) in enumerate(zip((demo_labels == 0).astype(int), masks)):
        if not mask.any():
            continue
        key = f"{CLASSES[label]}/{i:04d}.png"
        assert (folder / key).is_file()
        (root / "masks" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / key)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        lines.append(f"{key},{cols[0]},{rows[0]},{cols[-1] + 1},{rows[-1] + 1}")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root / "masks", root / "boxes.csv"


def check(*args: str):
    return invoke("producer", "check-explainer", *args, check=False)


def test_the_check_runs_on_a_users_model_and_masks_and_boxes_agree(tutorial, evidence):
    model, folder = tutorial
    masks, boxes = evidence
    by_masks = check("--folder", str(folder), "--model", str(model), "--evidence", str(masks), "--limit", "6",
                     "--output", "json")
    by_boxes = check("--folder", str(folder), "--model", str(model), "--boxes", str(boxes), "--limit", "6",
                     "--output", "json")
    assert by_masks.returncode in (0, 1) and by_boxes.returncode == by_masks.returncode, by_masks.stderr
    rows = json.loads(by_masks.stdout[by_masks.stdout.index("["):])
    assert rows == json.loads(by_boxes.stdout[by_boxes.stdout.index("["):])
    # --limit takes the classes in turn: 3 rectangles have evidence, the 3 images without a rectangle have none
    assert [row["image"].split("/")[0] for row in rows] == ["rectangle"] * 3
    for row in rows:
        assert 0 < row["evidence %"] < 100 and row["superpixels"] > 1
        for key in ("leakage", "background evidence share"):
            assert row[key] is None or 0 <= row[key] <= 1
    # what the command says about its figures agrees with its exit code
    assert (by_masks.returncode == 1) == ("warning:" in by_masks.stderr)


def test_the_table_names_the_settings_and_the_figures(tutorial, evidence):
    model, folder = tutorial
    masks, _ = evidence
    result = check("--folder", str(folder), "--model", str(model), "--evidence", str(masks), "--limit", "2")
    assert result.returncode in (0, 1), result.stderr
    for words in ("by construction", "pointing", "leakage (mean, worst)", "background evidence share", "not responding"):
        assert words in result.stdout


def test_without_evidence_the_check_says_what_to_give(tutorial):
    model, folder = tutorial
    result = check("--folder", str(folder), "--model", str(model), "--limit", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the check needs each image's evidence: give --evidence DIR or --boxes FILE.csv with --folder (the "
        "built-in data sets bring their own)"]


def test_the_command_in_docs_engine_md_runs_as_written(tutorial, evidence, tmp_path, monkeypatch):
    """docs/engine.md's line, in a folder holding its val/, mine.keras and boxes.csv."""
    import shlex
    import shutil

    from tests.services import REPO

    model, folder = tutorial
    _, boxes = evidence
    text = (REPO / "docs" / "engine.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("python -m producer check-explainer"))
    shutil.copytree(folder, tmp_path / "val")
    shutil.copy(model, tmp_path / "mine.keras")
    shutil.copy(boxes, tmp_path / "boxes.csv")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)
    assert argv[:4] == ["python", "-m", "producer", "check-explainer"]
    argv[argv.index("--limit") + 1] = "4"  # the docs' 20 images, trimmed: the same command, on less
    result = check(*argv[4:])
    assert result.returncode in (0, 1), result.stderr
    assert "leakage (mean, worst)" in result.stdout
