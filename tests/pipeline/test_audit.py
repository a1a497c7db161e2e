"""The audit on runs made by the pipeline: the user's own folder with evidence as masks and as boxes, the strategies
and evidence at the end of the run, in the views and in the commands, and two runs compared by their maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.datasets import load_dataset
from tests.stack import flat, run_id_of

COUNT = 24
FIRST = 100  # images the other pipeline tests do not use: an image is stored once, with the source it came with first


@pytest.fixture(scope="module")
def rectangles_folder(tmp_path_factory):
    """The demo's first validation images as a user's folder, their rectangles as masks and as boxes."""
    root = tmp_path_factory.mktemp("own")
    data = load_dataset("rectangles")
    lines = ["path,x0,y0,x1,y1"]
    for index in range(FIRST, FIRST + COUNT):
        name = data.class_names[data.y_val[index]]
        for folder in ("images", "masks"):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(data.x_val[index] * 255).astype(np.uint8)).save(root / "images" / name / f"{index}.png")
        mask = data.val_masks[index]
        if mask.any():
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / name / f"{index}.png")
            rows, cols = np.nonzero(mask)
            lines.append(f"{name}/{index}.png,{cols.min()},{rows.min()},{cols.max() + 1},{rows.max() + 1}")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root, int(sum(data.val_masks[i].any() for i in range(FIRST, FIRST + COUNT)))


@pytest.fixture(scope="module")
def evidence_runs(stack, rectangles_folder, rectangles_model):
    root, _ = rectangles_folder
    common = ("--folder", str(root / "images"), "--model", str(rectangles_model), "--wait")
    by_mask = stack.enqueue(*common, "--evidence", str(root / "masks"), "--name", "by-mask")
    by_box = stack.enqueue(*common, "--boxes", str(root / "boxes.csv"), "--name", "by-box")
    return run_id_of(by_mask.stdout), by_mask.stdout, run_id_of(by_box.stdout)


def test_the_run_ends_with_its_strategies_and_pointing_per_class(evidence_runs, rectangles_folder):
    _, output, _ = evidence_runs
    _, with_evidence = rectangles_folder
    text = flat(output)
    assert "evidence: masks in" in text
    assert "pointing" in text and "rectangle" in text and f"of {with_evidence})" in text
    assert "strategies (where the model looks" in text
    assert " group 0: " in text and " looks " in text


def test_strategies_in_json_cover_every_image_and_match_the_view(stack, evidence_runs):
    run, _, _ = evidence_runs
    groups = json.loads(stack.cli("db", "strategies", "--run", str(run), "--format", "json").stdout)
    members = [m["image_id"] for group in groups for m in group["members"]]
    assert len(members) == len(set(members)) == COUNT
    assert {"label", "strategy", "size", "error_rate", "where", "members"} <= set(groups[0])
    assert all(group["size"] == len(group["members"]) for group in groups)
    rows = json.loads(stack.cli("db", "sql", f"SELECT image_id, label, strategy FROM strategies WHERE run_id = {run}",
                                "--format", "json").stdout)
    assert sorted(row["image_id"] for row in rows) == sorted(members)
    table = stack.cli("db", "strategies", "--run", str(run)).stdout
    assert "rectangle" in table and "where" in table


def test_boxes_and_masks_give_the_same_pointing(stack, evidence_runs, rectangles_folder):
    by_mask, _, by_box = evidence_runs
    _, with_evidence = rectangles_folder

    def reasons(run):
        return {row["image_id"]: (row["pointing"], row["evidence_share"]) for row in json.loads(
            stack.cli("db", "sql", f"SELECT image_id, pointing, evidence_share FROM reasons WHERE run_id = {run}",
                      "--format", "json").stdout)}

    from_masks, from_boxes = reasons(by_mask), reasons(by_box)
    assert len(from_masks) == with_evidence and from_masks.keys() == from_boxes.keys()
    for key, (pointing, share) in from_masks.items():
        assert bool(pointing) == bool(from_boxes[key][0]) and share == pytest.approx(from_boxes[key][1], abs=1e-12)


def test_two_runs_compared_by_their_maps(stack, evidence_runs, tmp_path):
    by_mask, _, by_box = evidence_runs  # the same model, images and seed: the same explanations
    rows = json.loads(stack.cli("db", "compare", str(by_mask), str(by_box), "--by-class", "--format", "json",
                                "--maps", str(tmp_path)).stdout.split("\n", 1)[1])
    assert {row["class"] for row in rows} == {"rectangle", "no_rectangle"}
    assert all(row["map_correlation"] == pytest.approx(1.0) and row["top_overlap"] == 1.0 for row in rows)
    assert sum(row["images"] for row in rows) == COUNT
    assert {p.name for p in tmp_path.iterdir()} >= {"rectangle_a.png", "rectangle_b.png", "rectangle_b-minus-a.png"}
    every = json.loads(stack.cli("db", "compare", str(by_mask), str(by_box), "--all", "--format", "json").stdout)
    assert len(every) == COUNT and all(row["map_correlation"] == pytest.approx(1.0) for row in every)


def test_maps_are_exported_per_class_cell_and_group(stack, evidence_runs, tmp_path):
    run, _, _ = evidence_runs
    stack.cli("db", "maps", "--run", str(run), "--out", str(tmp_path))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"class_rectangle.png", "cell_rectangle_as_rectangle.png", "strategy_rectangle_0.png"} <= names
    picture = np.asarray(Image.open(tmp_path / "class_rectangle.png"))
    assert picture.shape[:2] == (128, 128) and picture.std() > 0


def test_the_audit_pages_queries_run_as_written(stack, evidence_runs):
    """docs/audit.md's queries name run 1: here they ask for the run with evidence."""
    import re
    from pathlib import Path

    from sqlalchemy import text

    run, _, _ = evidence_runs
    page = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    queries = [sql.replace("run_id = 1", f"run_id = {run}") for sql in re.findall(r"```sql\n(.*?)```", page, flags=re.S)]
    assert len(queries) == 3 and all(f"run_id = {run}" in sql for sql in queries)
    with stack.session() as session:
        for sql in queries:
            session.execute(text(sql)).all()
