"""Evidence from the user (--evidence masks, --boxes): every unusable mask or box named, nothing stored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import invoke
from tests.producer.conftest import stored_rows


@pytest.fixture
def folder(tmp_path):
    """Two classes of 64x64 images, with a mask folder and a boxes file that fit them."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    rng = np.random.default_rng(0)
    for name in ("rectangle", "no_rectangle"):
        (images / name).mkdir(parents=True)
        (masks / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / name / f"{i}.png")
            mask = np.zeros((64, 64), dtype=np.uint8)
            mask[10:20, 10:30] = 255
            Image.fromarray(mask).save(masks / name / f"{i}.png")
    (tmp_path / "boxes.csv").write_text("path,x0,y0,x1,y1\nrectangle/0.png,10,10,30,20\n")
    return images, masks, tmp_path / "boxes.csv"


def refused(env, *args) -> list[str]:
    result = invoke("producer", "enqueue", *args, check=False, env=env)
    assert result.returncode == 2, result.stdout
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}
    return result.stderr.strip().splitlines()


def test_every_unusable_mask_is_named_and_nothing_is_stored(env, folder, rectangles_model):
    images, masks, _ = folder
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(masks / "rectangle" / "1.png")  # wrong size
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(masks / "rectangle" / "7.png")  # no such image
    lines = refused(env, "--folder", str(images), "--model", str(rectangles_model), "--evidence", str(masks))
    assert lines[0] == f"error: 2 problems with masks in {masks} (nothing was stored):"
    assert any(f"{masks / 'rectangle' / '1.png'} is 32x32, its image rectangle/1.png is 64x64" in line for line in lines)
    assert any(f"{masks / 'rectangle' / '7.png'}: a mask for no image" in line for line in lines)


def test_boxes_outside_their_image_or_for_no_image_are_named(env, folder, rectangles_model):
    images, _, boxes = folder
    boxes.write_text("path,x0,y0,x1,y1\nrectangle/0.png,10,10,65,20\nrectangle/9.png,0,0,4,4\nrectangle/1.png,5,5,5,9\n")
    lines = refused(env, "--folder", str(images), "--model", str(rectangles_model), "--boxes", str(boxes))
    assert lines[0] == f"error: 3 problems with boxes in {boxes} (nothing was stored):"
    text = "\n".join(lines)
    assert "box (10,10)-(65,20) of rectangle/0.png reaches outside its 64x64 pixels as stored" in text
    assert "boxes for no image (rectangle/9.png" in text
    assert "line 4: an empty box (5,5)-(5,9)" in text


def test_evidence_needs_a_folder_and_one_kind(env, folder, rectangles_model):
    images, masks, boxes = folder
    assert refused(env, "--dataset", "rectangles", "--limit", "2", "--evidence", str(masks)) == [
        "error: --evidence and --boxes go with --folder: their paths are relative to it"]
    assert refused(env, "--folder", str(images), "--model", str(rectangles_model), "--evidence", str(masks),
                   "--boxes", str(boxes)) == ["error: give one of --evidence and --boxes"]
