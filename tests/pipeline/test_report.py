"""Pictures, the HTML report (in a real headless Chromium), show and compare, on runs made by the pipeline."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from PIL import Image as PILImage

from db import reads
from models.artifacts import ModelMetadata, file_sha256, write_metadata
from tests.stack import run_id_of

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def always_no_rectangle(tmp_path_factory):
    """A model that answers 'no_rectangle' for every image: its runs are wrong on every rectangle."""
    path = tmp_path_factory.mktemp("constant") / "constant.keras"
    keras.Sequential([
        keras.Input((64, 64, 3)), keras.layers.Flatten(),
        keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(5.0)),
    ]).save(path)
    write_metadata(path, ModelMetadata(class_names=["rectangle", "no_rectangle"], input_shape=[64, 64, 3], sha256=file_sha256(path)))
    return path


@pytest.fixture(scope="module")
def runs(stack, always_no_rectangle):
    """Run 'demo' (the demo CNN) and run 'constant' (always no_rectangle) on the same 16 images."""
    demo = run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", "16", "--name", "demo", "--wait").stdout)
    constant = run_id_of(stack.cli(
        "producer", "enqueue", "--dataset", "rectangles", "--limit", "16", "--num-samples", "200",
        "--model", str(always_no_rectangle), "--name", "constant's \"run\"; DROP TABLE runs", "--wait",
    ).stdout)
    return demo, constant


def mistakes(stack, run_id: int) -> list[dict]:
    with stack.session() as session:
        return reads.misclassified(session, run_id)


def test_export_draws_outlines_and_hide_rest_for_both_labels(stack, runs, tmp_path):
    demo, constant = runs
    wrong = mistakes(stack, constant)
    assert wrong and all(m["true_label"] == "rectangle" for m in wrong)
    out = tmp_path / "png"
    stack.cli("db", "export", "--run", str(constant), "--misclassified", "--out", str(out))
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 6 * len(wrong)  # predicted and true label, each outlined, hide-rest and heatmap
    first = wrong[0]["image_id"]
    stem = f"image{first:06d}_true-rectangle_pred-no_rectangle"
    assert {f"{stem}_{view}-{kind}.png" for view in ("predicted", "true") for kind in ("outline", "only", "heatmap")} <= set(files)
    heat = np.asarray(PILImage.open(out / f"{stem}_true-heatmap.png").convert("RGB")).astype(int)
    assert heat.shape[0] == 192 and heat.shape[1] > 192  # the image, then its colour bar
    bar = heat[:, 192 + 6 + 7]
    assert bar[0, 0] > bar[0, 2] + 100 and bar[-1, 2] > bar[-1, 0] + 100  # red on top, blue at the bottom
    outline = np.asarray(PILImage.open(out / f"{stem}_true-outline.png"))
    assert outline.shape == (192, 192, 3)
    yellow = (outline[..., 0] == 255) & (outline[..., 1] == 255) & (outline[..., 2] == 0)
    hidden = np.asarray(PILImage.open(out / f"{stem}_true-only.png"))
    with stack.session() as session:
        weights = reads.explanation_details(session, constant, image_id=first)[0].weights[0]
    pushes = bool((weights > 0).any())  # a constant model's weights are all about zero: nothing is drawn
    assert yellow.any() == pushes and hidden.any() == pushes
    with stack.session() as session:
        shown = next(d for d in reads.explanation_details(session, demo) if (d.weights[d.explanation.predicted_label] > 0).any())
    demo_out = tmp_path / "demo"
    stack.cli("db", "export", "--run", str(demo), "--out", str(demo_out))
    outline, only = (
        np.asarray(PILImage.open(next(demo_out.glob(f"image{shown.explanation.image_id:06d}_*_predicted-{kind}.png"))))
        for kind in ("outline", "only")
    )
    assert ((outline[..., 0] == 255) & (outline[..., 1] == 255) & (outline[..., 2] == 0)).any()  # outlines drawn
    assert only.any() and not only.all()  # the pushing superpixels shown, the rest black
    everything = tmp_path / "all"
    stack.cli("db", "export", "--run", str(constant), "--out", str(everything))
    assert len(list(everything.iterdir())) == 3 * 16 + 3 * len(wrong)


def test_the_report_in_a_real_browser_shows_exactly_the_mistakes(stack, runs, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is needed (scripts/test.sh installs Debian's package)"
    _, constant = runs
    report = tmp_path / "report.html"
    result = stack.cli("db", "report", "--run", str(constant), "-o", str(report))
    wrong = mistakes(stack, constant)
    assert f"{len(wrong)} misclassified images" in result.stdout
    text = report.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched

    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1400,1800",
         report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    picture = np.asarray(PILImage.open(shot).convert("RGB")).astype(int)
    assert picture.shape[:2] == (1800, 1400) and picture.std() > 10  # a page was drawn, not a blank
    blue = (picture[..., 2] > 180) & (picture[..., 0] < 80) & (picture[..., 1] < 110)
    assert blue.sum() > 500  # the heatmaps' colour bars (nothing else on the page is blue) were drawn
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
         report.as_uri()],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    gallery = re.search(r'<div id="gallery"[^>]*>(.*?)</div>\s*<script id="items"', dom, flags=re.S).group(1)
    cards = re.findall(r'class="card" data-image-id="(\d+)" data-confidence="([0-9.e-]+)"', gallery)
    assert sorted(int(i) for i, _ in cards) == sorted(m["image_id"] for m in wrong)  # one page holds them all
    confidences = [float(c) for _, c in cards]
    assert confidences == sorted(confidences, reverse=True)  # most confident mistakes first
    assert gallery.count('alt="original"') == len(wrong) and gallery.count('alt="true"') == len(wrong)
    assert gallery.count('alt="heatmap predicted"') == len(wrong) == gallery.count('alt="heatmap true"')
    assert "faithfulness: deletion AUC" in gallery and "R&sup2;" not in gallery and "R²" not in gallery
    assert html.escape("constant's \"run\"; DROP TABLE runs", quote=False) in dom


def test_show_prints_one_explanation(stack, runs):
    demo, _ = runs
    with stack.session() as session:
        image_id = reads.explanation_details(session, demo)[0].explanation.image_id
    out = stack.cli("db", "show", "--run", "demo", str(image_id)).stdout
    assert f"image {image_id}" in out and "probabilities" in out and "weights for" in out
    assert "rectangles:validation/" in out
    refused = stack.cli("db", "show", "--run", "demo", "999999", check=False)
    assert refused.returncode != 0 and refused.stderr.startswith("error: ")


def test_compare_lists_the_predictions_that_changed(stack, runs):
    demo, constant = runs
    with stack.session() as session:
        demo_rectangles = sorted(
            d.explanation.image_id for d in reads.explanation_details(session, demo) if d.explanation.predicted_label == 0
        )
    rows = json.loads(stack.cli("db", "compare", str(demo), str(constant), "--format", "json").stdout)
    assert sorted(r["image_id"] for r in rows) == demo_rectangles
    assert all(r["predicted_a"] == "rectangle" and r["predicted_b"] == "no_rectangle" for r in rows)
    assert json.loads(stack.cli("db", "compare", str(demo), str(demo), "--format", "json").stdout) == []
