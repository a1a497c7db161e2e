"""`--images reference`: a folder every worker reads at the same path is stored as paths and content hashes only; a
worker that finds a file changed or gone fails that image with the reason, and the run goes on."""

from __future__ import annotations

import numpy as np
from PIL import Image as Picture
from sqlalchemy import func, select

from db.models import Explanation, Image, RunImage
from producer.sources import IMAGE_SUFFIXES
from tests.stack import on_backend, run_id_of

pytestmark = on_backend("sqlite")


def demo_folder(folder, count: int = 6):
    """`count` validation rectangles as PNG files in a class-per-folder tree."""
    from models.datasets import load_dataset

    data = load_dataset("rectangles", images=200, val_fraction=0.1)
    names = ("rectangle", "no_rectangle")
    for i in range(count):
        path = folder / names[data.y_val[i]] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Picture.fromarray((data.x_val[i] * 255).round().astype(np.uint8)).save(path)
    return folder


def repaint(path, change) -> None:
    with Picture.open(path) as picture:
        pixels = np.asarray(picture)
    Picture.fromarray(change(pixels).astype(np.uint8)).save(path)


def stored_bytes(stack, run_id: int) -> int:
    with stack.session() as session:
        return session.scalar(
            select(func.sum(func.length(Image.png))).join(RunImage, RunImage.image_id == Image.id)
            .where(RunImage.run_id == run_id)
        )


def test_images_stored_by_reference_are_explained_from_their_files(stack, tmp_path):
    folder = demo_folder(tmp_path / "shared")
    by_copy = run_id_of(stack.enqueue("--folder", str(folder), "--name", "by-copy", "--wait").stdout)
    assert stored_bytes(stack, by_copy) > 6 * 1000  # six PNGs of 64x64
    # the same pictures are known already (stored by copy): a new folder's, to be referenced
    other = demo_folder(tmp_path / "elsewhere", 8)
    for path in other.rglob("*.png"):
        repaint(path, lambda pixels: np.where(np.arange(64)[:, None, None] == 0, 255 - pixels, pixels))  # new content
    stack.worker.stop()
    out = stack.enqueue("--folder", str(other), "--images", "reference", "--name", "by-reference").stdout
    run_id = run_id_of(out)
    assert stored_bytes(stack, run_id) == 0
    with stack.session() as session:
        paths = session.scalars(select(Image.path).join(RunImage, RunImage.image_id == Image.id)
                                .where(RunImage.run_id == run_id)).all()
    assert sorted(paths) == sorted(str(p.resolve()) for p in other.rglob("*") if p.suffix in IMAGE_SUFFIXES)
    changed, gone = sorted(other.rglob("*.png"))[:2]
    repaint(changed, lambda pixels: 255 - pixels)
    gone.unlink()
    stack.start_worker()
    counts = stack.wait_finished(run_id)
    assert (counts.ok, counts.failed) == (6, 2)
    with stack.session() as session:
        errors = dict(session.execute(
            select(Image.path, Explanation.error).join(Explanation, Explanation.image_id == Image.id)
            .where(Explanation.run_id == run_id, Explanation.status == "failed")
        ).all())
    assert "changed since the run stored it by reference" in errors[str(changed.resolve())]
    assert "is missing or unreadable" in errors[str(gone.resolve())]

    # the pictures and the report read the referenced files too; one gone since is named in one line
    pictures = tmp_path / "pictures"
    stack.cli("db", "export", "--run", str(run_id), "--out", str(pictures))
    assert len(list(pictures.glob("*.png"))) >= 6 * 3
    stack.cli("db", "report", "--run", str(run_id), "-o", str(tmp_path / "report.html"))
    explained = sorted(set(other.rglob("*.png")) - {changed, gone})[0]
    explained.unlink()
    refused = stack.cli("db", "export", "--run", str(run_id), "--out", str(tmp_path / "again"), check=False)
    assert refused.returncode != 0
    assert f"error: {explained.resolve()} is missing or unreadable" in refused.stderr


def test_only_a_folder_can_be_referenced(stack):
    refused = stack.enqueue("--dataset", "rectangles", "--images", "reference", check=False)
    assert refused.returncode == 2 and "--images reference needs --folder" in refused.stderr
