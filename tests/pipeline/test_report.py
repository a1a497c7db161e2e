"""Pictures, the HTML report (in a real headless Chromium), show and compare, on runs made by the pipeline; the
report's gallery bound on a run explained in this process."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, text

from audit.compare import compare_runs
from audit.service import ensure_audit, evidence_rates
from db import reads
from db.models import Explanation, Image, Run, StrategyGroup
from db.runs import add_images, create_run, store_model_file
from models.artifacts import ModelMetadata, file_sha256, write_metadata
from report import html as report_html
from report.html import GALLERY_PER_CELL, SHOWN_EXAMPLES, SHOWN_GROUPS, gallery_rows, overlap_cell, write_report
from tests.db.conftest import claimed, new_image, save_result, sessions  # noqa: F401  (sessions: a fixture)
from tests.stack import on_backend, run_id_of
from worker.engine import ExplainParams, explain

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


@on_backend("postgresql")
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


def chromium_dom(report, profile) -> str:
    """The report's DOM as a real headless Chromium parsed it."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is needed (scripts/test.sh installs Debian's package)"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", report.as_uri()],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout


def section(dom: str, element_id: str) -> str:
    """The inside of the element with this id (a div, table, ol or p: the first closing tag of its kind)."""
    found = re.search(rf'<(\w+) id="{element_id}"[^>]*>', dom)
    assert found, f"no #{element_id} in the report"
    tag = found.group(1)
    if tag == "div":  # divs nest: count them
        depth, position = 1, found.end()
        while depth:
            following = re.compile(r"<div[\s>]|</div>").search(dom, position)
            depth += 1 if following.group().startswith("<div") else -1
            position = following.end()
        return dom[found.end():position - len("</div>")]
    return dom[found.end():dom.index(f"</{tag}>", found.end())]


def decodes(uri: str) -> bool:
    picture = PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    picture.load()
    return picture.width > 0


@on_backend("postgresql")
def test_the_report_in_a_real_browser_shows_the_audit_and_the_most_confident_mistakes(stack, runs, tmp_path):
    _, constant = runs
    report = tmp_path / "report.html"
    result = stack.cli("db", "report", "--run", str(constant), "-o", str(report))
    wrong = mistakes(stack, constant)
    shown = wrong[:GALLERY_PER_CELL]  # one cell (rectangle as no_rectangle), most confident first
    assert len(wrong) > GALLERY_PER_CELL, "the gallery's bound is not tested"
    assert re.search(rf"{re.escape(str(report))}: run {constant}, [0-9.]+ MB, {len(shown)} of {len(wrong)} "
                     "misclassified images in the gallery", result.stdout), result.stdout
    page = report.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained, static
    assert all(decodes(uri) for uri in re.findall(r'src="(data:image/png;base64,[^"]+)"', page))

    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    subprocess.run(
        [shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
         "--window-size=1400,9000", report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    picture = np.asarray(PILImage.open(shot).convert("RGB")).astype(int)
    assert picture.shape[:2] == (9000, 1400) and picture.std() > 10  # a page was drawn, not a blank
    blue = (picture[..., 2] > 180) & (picture[..., 0] < 80) & (picture[..., 1] < 110)
    assert blue.sum() > 500  # the gallery's heatmaps' colour bars (the constant model's maps are white) were drawn
    dom = chromium_dom(report, profile)
    assert html.escape("constant's \"run\"; DROP TABLE runs", quote=False) in dom
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", dom)
    assert [h.split(":")[0] for h in headings] == [
        "Summary", "Confusion matrix", "Where the model looks", "Strategies", "Evidence", "Misclassified images"]

    with stack.session() as session:
        run = reads.find_run(session, str(constant))
        confusion = {(c["true_label"], c["predicted_label"]): c["n"] for c in reads.confusion(session, constant)}
        groups = session.scalar(select(func.count()).select_from(StrategyGroup).where(StrategyGroup.run_id == constant))
        rates = evidence_rates(session, run)
    # where the model looks: one map per predicted class, and the confusion grid cell by cell
    class_maps = re.findall(r'class="class-map" data-class="([^"]+)" data-images="(\d+)">\s*<figure><img', dom)
    assert class_maps == [("no_rectangle", "16")]
    grid = section(dom, "map-grid")
    cells = re.findall(r'<td class="(?:hit|miss)" data-true="([^"]+)" data-predicted="([^"]+)">(.*?)</td>', grid, re.S)
    assert {(true, predicted) for true, predicted, _ in cells} == set(confusion)
    for true, predicted, inside in cells:
        assert inside.count("<img") == 1 and f'<span class="count">{confusion[(true, predicted)]}</span>' in inside
    assert grid.count('<td class="empty">') == 4 - len(confusion)
    # the strategies, each with its map and at most five typical members
    assert groups >= 1
    shown_groups = re.findall(r'<div class="group( suspected)?" data-rank="(\d+)"', dom)
    assert [int(rank) for _, rank in shown_groups] == list(range(min(groups, SHOWN_GROUPS)))
    for group in section(dom, "groups").split('<div class="group')[1:]:
        assert "no_rectangle group" in group and " looks " in group and 1 <= group.count('class="small"') <= 5
    # the evidence, per true class: the rectangles carry the generator's known answer
    assert rates and re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td>", section(dom, "evidence-rates")) == [
        (rate.class_name, str(rate.images)) for rate in rates]
    assert re.search(r'<p id="wrong-reasons" data-count="0">', dom)  # its correct images have no evidence
    # the gallery: the most confident mistakes of the cell, as many as stated, naming how many there are
    assert f"Misclassified images: {len(shown)} of {len(wrong)}" in dom
    assert f"python -m db misclassified --run {constant}" in dom
    assert f"python -m db export --run {constant} --misclassified --out DIR" in dom
    gallery = section(dom, "gallery")
    cards = re.findall(r'class="card" data-image-id="(\d+)" data-confidence="([0-9.e-]+)"', gallery)
    assert [int(i) for i, _ in cards] == [m["image_id"] for m in shown]
    assert gallery.count('alt="original"') == len(shown) == gallery.count('alt="true"')
    assert gallery.count('alt="heatmap predicted"') == len(shown) == gallery.count('alt="heatmap true"')
    assert "faithfulness: deletion AUC" in gallery and "R&sup2;" not in gallery and "R²" not in gallery


@on_backend("postgresql")
def test_the_report_against_another_run_compares_their_maps_per_class(stack, runs, tmp_path):
    demo, constant = runs
    report = tmp_path / "against.html"
    stack.cli("db", "report", "--run", str(demo), "--against", str(constant), "-o", str(report))
    dom = chromium_dom(report, tmp_path / "profile")
    assert f"Compared with run {constant} (" in dom
    with stack.session() as session:
        run_a, run_b = reads.find_run(session, str(constant)), reads.find_run(session, str(demo))
        expected = compare_runs(session, run_a, run_b)
        wrong_reasons = session.execute(text(
            "SELECT image_id FROM reasons WHERE run_id = :run AND correct AND NOT pointing ORDER BY evidence_share, "
            "image_id"), {"run": demo}).scalars().all()
    rows = re.findall(r'<tr data-class="([^"]+)"><td>[^<]+</td><td>(\d+)</td>(.*?)</tr>', section(dom, "compared"), re.S)
    assert [(name, int(images)) for name, images, _ in rows] == [(c.class_name, c.images) for c in expected]
    for (_, _, inside), entry in zip(rows, expected):
        assert re.findall(r'alt="([^"]+)"', inside) == [f"run {constant}", f"run {demo}", "difference"]
        assert f"<td>{entry.correlation:.2f}</td><td>{overlap_cell(entry.overlap)}</td>" in inside
    # the demo's evidence: how many images are right for the wrong reasons, and the first of them
    assert f'<p id="wrong-reasons" data-count="{len(wrong_reasons)}">' in dom
    examples = re.findall(r'<figure class="small" data-image-id="(\d+)">', dom.split('id="wrong-reasons"')[1].split("<h2")[0])
    assert [int(i) for i in examples] == wrong_reasons[:SHOWN_EXAMPLES]
    refused = stack.cli("db", "report", "--run", str(demo), "--against", "no such run", "-o",
                        str(tmp_path / "none.html"), check=False)
    assert refused.returncode != 0 and "no run with id or name 'no such run'" in refused.stderr


PLAIN_PARAMS = ExplainParams(num_samples=32, segmentation="slic", n_segments=9)


def always_b(batch: np.ndarray) -> np.ndarray:
    """Class b for every image, the surer the brighter the image: its mistakes differ in confidence."""
    sure = 0.4 + 0.5 * batch.mean(axis=(1, 2, 3))
    return np.stack([(1 - sure) / 2, sure, (1 - sure) / 2], axis=1)


def test_the_gallery_holds_the_stated_number_of_most_confident_mistakes_per_cell(sessions, tmp_path, monkeypatch):
    """A run explained in this process by the real engine, with 9 mistakes in each of two cells."""
    labels = [0, 1, 2] * 9
    with sessions() as session:
        store_model_file(session, "d" * 64, b"model", {"class_names": ["a", "b", "c"]})
        run = create_run(session, name="all b", model_path="m.keras", model_sha256="d" * 64,
                         class_names=["a", "b", "c"], params=PLAIN_PARAMS.to_dict(), source="test",
                         value_range=[0.0, 1.0])
        ids, _ = add_images(session, run, [new_image(seed, label) for seed, label in enumerate(labels)])
        run.status = "running"
        session.commit()
        for image_id in ids:
            job = claimed(session, run.id, image_id, "w")
            picture = session.get(Image, image_id).pixels().astype(np.float32) / 255
            assert save_result(session, job, explain(picture, always_b, PLAIN_PARAMS, true_label=job.true_label), "w")
        session.commit()
        ensure_audit(session, run)
        wrong = session.execute(
            select(Explanation.image_id, Explanation.true_label, Explanation.confidence)
            .where(Explanation.run_id == run.id, Explanation.correct.is_(False))
        ).all()
        assert len(wrong) == 18
        for per_cell in (1, 4):
            rows = gallery_rows(session, run.id, per_cell=per_cell)
            for true in (0, 2):
                cell = sorted((row for row in wrong if row.true_label == true), key=lambda r: (-r.confidence, r.image_id))
                assert [row.image_id for row in rows if row.true_label == true] == [r.image_id for r in cell[:per_cell]]
            assert {row.mistakes for row in rows} == {9}
        assert [(row.true_label, row.predicted_label) for row in gallery_rows(session, run.id, cells=1)] == [(0, 1)] * 6
        written = write_report(session, run, tmp_path / "report.html")
    assert (written.shown, written.mistakes) == (2 * GALLERY_PER_CELL, 18)
    page = (tmp_path / "report.html").read_text()
    cells = re.findall(r'<section class="cell" data-true="(\w)" data-predicted="(\w)" data-mistakes="9">(.*?)</section>',
                       page, re.S)
    assert [(true, predicted) for true, predicted, _ in cells] == [("a", "b"), ("c", "b")]
    assert all(inside.count('class="card"') == GALLERY_PER_CELL for _, _, inside in cells)
    assert f"Misclassified images: {2 * GALLERY_PER_CELL} of 18" in page
    assert not list(tmp_path.glob("*.part"))
    assert 'id="map-grid"' in page and 'id="largest-cells"' not in page

    # more classes than a grid holds: the largest confusions as a list instead, each with its map
    monkeypatch.setattr(report_html, "MAX_GRID_CLASSES", 2)
    with sessions() as session:
        write_report(session, session.get(Run, run.id), tmp_path / "many.html")
    page = (tmp_path / "many.html").read_text()
    assert 'id="map-grid"' not in page
    largest = re.findall(r'<li data-true="(\w)" data-predicted="(\w)"><figure><img', page)
    assert largest == [("a", "b"), ("c", "b")]


@on_backend("postgresql")
def test_show_prints_one_explanation(stack, runs):
    demo, _ = runs
    with stack.session() as session:
        image_id = reads.explanation_details(session, demo)[0].explanation.image_id
    out = stack.cli("db", "show", "--run", "demo", str(image_id)).stdout
    assert f"image {image_id}" in out and "probabilities" in out and "weights for" in out
    assert "rectangles:validation/" in out
    refused = stack.cli("db", "show", "--run", "demo", "999999", check=False)
    assert refused.returncode != 0 and refused.stderr.startswith("error: ")


@on_backend("postgresql")
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
