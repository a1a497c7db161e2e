"""One self-contained HTML report of a run, built around its audit (audit.service): the summary, the confusion
matrix, where the model looks (mean maps per class and per confusion cell), its strategies (suspected shortcuts
first), the evidence figures, a comparison with another run, and the most confident mistakes of each confusion cell.

The page is written to its file a piece at a time, and every section draws a bounded number of pictures (SHOWN_GROUPS
groups, SHOWN_EXAMPLES examples, GALLERY_PER_CELL mistakes in each of at most LARGEST_CELLS cells), loading one
image's details at a time; a section per class (the matrix, the class maps, the evidence, the comparison) shows at
most PAGE_CLASSES classes, the most telling first, and says how many there are and how to get the rest: the page
grows neither with the number of explanations nor with the model's classes. Images are inline (data URIs), nothing is
fetched from the network, and the page needs no script.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from audit.compare import ClassComparison, compare_runs
from core.images import ReferenceFileError
from audit.service import LARGEST_CELLS, MANY_CLASSES, MAX_GRID_CLASSES, evidence_rates, group_count, group_views
from db import reads
from db.formats import decode_segments
from db.models import ClassMap, Explanation, Run
from report import pictures
from report.summary import RunSummary, summarise_run

SHOWN_GROUPS = 40
# a section per class shows every class up to this many; beyond, this many, the most telling first (the most
# mistakes; the lowest pointing; the maps least alike between two runs), and says where the rest are
PAGE_CLASSES = MANY_CLASSES
SHOWN_EXAMPLES = 12  # images right for the wrong reasons
GALLERY_PER_CELL = 6
TOP_WEIGHTS = 5
THUMBNAIL_SIDE = 96  # pixels: the small pictures of strategy members and examples
CARD_SIDE = 192  # pixels: a gallery card's pictures at most (larger images are shrunk)


@dataclass
class WrittenReport:
    """What `write_report` wrote, as the command tells it."""

    path: Path
    run_id: int
    size: int  # bytes
    shown: int  # mistakes in the gallery
    mistakes: int  # in the run

    def line(self) -> str:
        return (f"{self.path}: run {self.run_id}, {self.size / 1e6:.1f} MB, {self.shown} of {self.mistakes} "
                "misclassified images in the gallery")


def write_report(session: Session, run: Run, out: Path, against: Run | None = None) -> WrittenReport:
    """Write the report of `run` to `out`, with how it differs from run `against` on the same images when given.
    Both runs' audits should be current (audit.service.ensure_audit). The page is written beside `out` and moved
    there when whole, so a failure leaves no half page behind."""
    summarised = summarise_run(session, run)
    gallery = gallery_rows(session, run.id)
    partial = out.with_name(out.name + ".part")
    sections: list[Iterable[str]] = [
        [HEAD.format(title=escape(f"run {run.id}: {run.name}"))],
        summary_section(summarised),
        confusion_section(session, run),
        looks_section(session, run),
        strategies_section(session, run),
        evidence_section(session, run),
        comparison_section(session, against, run) if against is not None else [],
        gallery_section(session, summarised, gallery),
        [END],
    ]
    try:
        with partial.open("w", encoding="utf-8") as page:
            for section in sections:
                page.writelines(section)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return WrittenReport(out, run.id, out.stat().st_size, len(gallery), summarised.counts.misclassified)


def escape(value) -> str:
    return html.escape(str(value))


def picture(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{pictures.data_uri(png)}">'


def figure(png: bytes, alt: str, caption: str) -> str:
    return f"<figure>{picture(png, alt)}<figcaption>{escape(caption)}</figcaption></figure>"


def command(line: str) -> str:
    return f"<code>{escape(line)}</code>"


def summary_section(summarised: RunSummary) -> Iterator[str]:
    run = summarised.run
    rows = [
        ("source", run.source),
        ("parameters", ", ".join(f"{k}={v}" for k, v in run.params.items() if v is not None)),
        *summarised.rows,
    ]
    yield '<h2>Summary</h2><table id="summary">'
    yield "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in rows)
    yield "</table>"
    for warning in summarised.warnings:
        yield f'<p class="warning"><b>WARNING</b>: {escape(warning)}</p>'
    if summarised.skipped:
        yield (f'<details id="skipped"><summary>{len(summarised.skipped)} files skipped with --skip-bad</summary><ul>'
               + "".join(f"<li>{escape(entry['reason'])}</li>" for entry in summarised.skipped) + "</ul></details>")


def confusion_section(session: Session, run: Run) -> Iterator[str]:
    names = run.class_names
    if len(names) > PAGE_CLASSES:
        yield from most_mistaken_matrix(session, run)
        return
    cells = {(c["true_label"], c["predicted_label"]): c["n"] for c in reads.confusion(session, run.id)}
    yield '<h2>Confusion matrix</h2><table id="confusion"><tr><th>true \\ predicted</th>'
    yield "".join(f"<th>{escape(name)}</th>" for name in names) + "</tr>"
    for true in names:
        yield f"<tr><th>{escape(true)}</th>" + "".join(
            f'<td class="{"hit" if true == p else "miss" if cells.get((true, p)) else ""}">{cells.get((true, p), 0)}</td>'
            for p in names
        ) + "</tr>"
    yield "</table>"


def most_mistaken_matrix(session: Session, run: Run) -> Iterator[str]:
    """The confusion matrix of the PAGE_CLASSES classes with the most mistakes, most first, with a column for each
    row's images put in a class not shown and a row for each column's images of a class not shown."""
    names = run.class_names
    ranked = reads.classes_by_mistakes(session, run.id, limit=PAGE_CLASSES)
    shown = [entry.label for entry in ranked]
    true, predicted = Explanation.true_label, Explanation.predicted_label
    cells = {(t, p): n for t, p, n in session.execute(
        select(true, predicted, func.count())
        .where(Explanation.run_id == run.id, Explanation.status == "ok", true.in_(shown), predicted.in_(shown))
        .group_by(true, predicted)
    )}
    every_cell = (f"SELECT true_label, predicted_label, n FROM confusion WHERE run_id = {run.id} "
                  "AND true_label <> predicted_label ORDER BY n DESC")
    yield (f'<h2>Confusion matrix</h2><p class="note" id="confusion-note">The {len(shown)} classes with the most '
           f"mistakes of {len(names)} (a class's mistakes: its images put in another class, and other classes' images "
           f'put in it), most first; "other" counts the images of a row put in one of the {len(names) - len(shown)} '
           "classes not shown, or of one of them put in a column. Every class, most mistakes first: "
           f"{command(f'python -m db classes --run {run.id}')}; every confusion: "
           f"{command(f'python -m db sql {every_cell!r}')}.</p>")
    yield (f'<table id="confusion" data-classes="{len(names)}" data-shown="{len(shown)}"><tr><th>true \\ predicted'
           "</th>" + "".join(f"<th>{escape(names[label])}</th>" for label in shown) + "<th>other</th></tr>")
    for entry in ranked:
        row = [cells.get((entry.label, p), 0) for p in shown]
        yield (f'<tr data-mistakes="{entry.mistakes}"><th>{escape(names[entry.label])}</th>' + "".join(
            f'<td class="{"hit" if entry.label == p else "miss" if n else ""}">{n}</td>' for p, n in zip(shown, row))
            + f'<td class="other">{entry.images - sum(row)}</td></tr>')
    yield ('<tr class="other"><th>other</th>' + "".join(
        f'<td class="other">{entry.taken - sum(cells.get((t, entry.label), 0) for t in shown if t != entry.label)}</td>'
        for entry in ranked) + "<td></td></tr>")
    yield "</table>"


def looks_section(session: Session, run: Run) -> Iterator[str]:
    names = run.class_names
    yield ('<h2 id="looks">Where the model looks</h2><p class="note">The mean relevance map of the images the model '
           "put in each class, over the mean of a sample of them: red pushes towards the predicted class, blue away "
           "from it.</p><h3>Per predicted class</h3>")
    many = len(names) > PAGE_CLASSES
    if many:
        per_class, mapped = most_mistaken_class_maps(session, run)
    else:
        per_class = session.scalars(
            select(ClassMap).where(ClassMap.run_id == run.id, ClassMap.true_label.is_(None))
            .order_by(ClassMap.predicted_label)
        ).all()
    if not per_class:
        yield "<p>Nothing explained yet.</p>"
        return
    if many:
        yield (f'<p class="note" id="class-maps-note">The {len(per_class)} classes with the most mistakes of the '
               f"{mapped} the model put images in, most first. Every class's map as a PNG file: "
               f"{command(f'python -m db maps --run {run.id} --out DIR')}.</p>")
    yield '<div id="class-maps" class="maps">'
    for row in per_class:
        name = names[row.predicted_label]
        yield (f'<div class="class-map" data-class="{escape(name)}" data-images="{row.images}">'
               + figure(pictures.map_picture(row.mean_map, row.mean_image), f"mean map of {name}",
                        f"{name}: {row.images} images") + "</div>")
    yield "</div>"
    if len(names) <= MAX_GRID_CLASSES:
        yield from confusion_grid(session, run)
    else:
        yield from largest_cells(session, run)


def most_mistaken_class_maps(session: Session, run: Run) -> tuple[list[ClassMap], int]:
    """The class maps of the PAGE_CLASSES predicted classes with the most mistakes, most first, and how many predicted
    classes have one."""
    mapped = set(session.scalars(
        select(ClassMap.predicted_label).where(ClassMap.run_id == run.id, ClassMap.true_label.is_(None))))
    ranked = reads.classes_by_mistakes(session, run.id)
    shown = [entry.label for entry in ranked if entry.label in mapped][:PAGE_CLASSES]
    rows = {row.predicted_label: row for row in session.scalars(
        select(ClassMap).where(ClassMap.run_id == run.id, ClassMap.true_label.is_(None),
                               ClassMap.predicted_label.in_(shown)))}
    return [rows[label] for label in shown], len(mapped)


def cell_maps(session: Session, run_id: int, largest: int | None = None):
    """The confusion cells' maps; with `largest`, only that many off the diagonal, most images first (the cells the
    audit drew mean pictures for). A query of its own: audit.service.class_maps reads every cell of a run at once."""
    query = select(ClassMap).where(ClassMap.run_id == run_id, ClassMap.true_label.is_not(None))
    if largest is not None:
        query = (query.where(ClassMap.true_label != ClassMap.predicted_label)
                 .order_by(ClassMap.images.desc(), ClassMap.true_label, ClassMap.predicted_label).limit(largest))
    return session.scalars(query)


def confusion_grid(session: Session, run: Run) -> Iterator[str]:
    names = run.class_names
    cells = {(row.true_label, row.predicted_label): row for row in cell_maps(session, run.id)}
    if not cells:
        return
    yield ('<h3>Per confusion cell</h3><p class="note">Laid out as the confusion matrix: rows are the true class, '
           'columns the predicted one; each cell shows the mean map of its images and their count.</p>'
           '<table id="map-grid"><tr><th>true \\ predicted</th>')
    yield "".join(f"<th>{escape(name)}</th>" for name in names) + "</tr>"
    for true, true_name in enumerate(names):
        yield f"<tr><th>{escape(true_name)}</th>"
        for predicted, predicted_name in enumerate(names):
            row = cells.get((true, predicted))
            if row is None:
                yield '<td class="empty"><span class="count">0</span></td>'
                continue
            png = pictures.map_picture(row.mean_map, row.mean_image)
            yield (f'<td class="{"hit" if true == predicted else "miss"}" data-true="{escape(true_name)}" '
                   f'data-predicted="{escape(predicted_name)}">{picture(png, f"{true_name} as {predicted_name}")}'
                   f'<br><span class="count">{row.images}</span></td>')
        yield "</tr>"
    yield "</table>"


def largest_cells(session: Session, run: Run) -> Iterator[str]:
    names = run.class_names
    yield (f"<h3>The {LARGEST_CELLS} largest confusions</h3><p class=\"note\">With more than {MAX_GRID_CLASSES} "
           "classes, the cells off the diagonal with the most images, each with the mean map of its images. Every "
           f"cell's map as a PNG file: {command(f'python -m db maps --run {run.id} --out DIR')}.</p>"
           '<ol id="largest-cells" class="maps">')
    for row in cell_maps(session, run.id, largest=LARGEST_CELLS):
        true_name, predicted_name = names[row.true_label], names[row.predicted_label]
        yield (f'<li data-true="{escape(true_name)}" data-predicted="{escape(predicted_name)}">'
               + figure(pictures.map_picture(row.mean_map, row.mean_image), f"{true_name} as {predicted_name}",
                        f"true {true_name}, predicted {predicted_name}: {row.images} images") + "</li>")
    yield "</ol>"


def gone(image_id: int, error: ReferenceFileError) -> str:
    """What stands for an image stored by reference whose file is gone or changed: the page goes on without it."""
    return f'<p class="gone" data-image-id="{image_id}">image {image_id}: {escape(error)}</p>'


def small_pictures(session: Session, run: Run, image_id: int, caption: str) -> str:
    """An image and its predicted label's outlined superpixels, small, with a caption under both."""
    detail = reads.explanation_details(session, run.id, image_id=image_id)[0]
    row = detail.explanation
    try:
        image = pictures.drawable(detail.image.pixels())
    except ReferenceFileError as error:
        return gone(image_id, error)
    outlined = pictures.overlays(image, decode_segments(row.segments), detail.weights[row.predicted_label],
                                 enlarge=False)[0]
    predicted = detail.label_name(row.predicted_label)
    return (f'<figure class="small" data-image-id="{image_id}">'
            + picture(pictures.thumbnail(pictures.original(image, enlarge=False), THUMBNAIL_SIDE), f"image {image_id}")
            + picture(pictures.thumbnail(outlined, THUMBNAIL_SIDE), f"why {predicted}")
            + f"<figcaption>{escape(caption)}</figcaption></figure>")


def strategies_section(session: Session, run: Run) -> Iterator[str]:
    total = group_count(session, run.id)
    yield ('<h2 id="strategies">Strategies</h2><p class="note">Groups of explanations of one predicted class that look '
           "at the same place (spectral relevance analysis), in rank order: suspected shortcuts first (a group whose "
           "error rate is well above its class's). Each with its mean map and its most typical members.</p>")
    if not total:
        yield "<p>No groups: the run has no explained images.</p>"
        return
    yield '<div id="groups">'
    for group in group_views(session, run, limit=SHOWN_GROUPS):
        yield (f'<div class="group{" suspected" if group.suspected else ""}" data-rank="{group.rank}" '
               f'data-class="{escape(group.class_name)}" data-size="{group.size}">'
               + figure(pictures.map_picture(group.mean_map), f"mean map of {group.class_name} group {group.strategy}",
                        "mean map")
               + f'<div class="meta">{escape(group.line())}</div><div class="typical">')
        for image_id, source in group.typical:
            yield small_pictures(session, run, image_id, source)
        yield "</div></div>"
    yield "</div>"
    if total > SHOWN_GROUPS:
        yield (f'<p id="more-groups">{total - SHOWN_GROUPS} more groups of {total}: '
               f'{command(f"python -m db strategies --run {run.id}")}</p>')


WRONG_REASONS = "correct AND NOT pointing"  # in the reasons view: right, but the top superpixel is off the evidence


def evidence_section(session: Session, run: Run) -> Iterator[str]:
    rates = evidence_rates(session, run)
    if not rates:
        return
    yield ('<h2 id="evidence">Evidence</h2><p class="note">Against the evidence given with the images (where the '
           "answer is): pointing is how often the superpixel with the largest weight lies on it, evidence share how "
           "much of the positive weight does; per class (the true class, the predicted one for images without).</p>")
    if len(rates) > PAGE_CLASSES:
        every_class = ("SELECT COALESCE(true_label, predicted_label) AS label, COUNT(*) AS images, "
                       "AVG(CASE WHEN pointing THEN 1.0 ELSE 0.0 END) AS pointing_rate, AVG(evidence_share) AS share "
                       f"FROM reasons WHERE run_id = {run.id} GROUP BY COALESCE(true_label, predicted_label) "
                       "ORDER BY pointing_rate")
        yield (f'<p class="note" id="evidence-note">The {PAGE_CLASSES} classes of {len(rates)} whose top superpixel '
               "is least often on the evidence, lowest first. Every class: "
               f"{command(f'python -m db sql {every_class!r}')}.</p>")
        rates = sorted(rates, key=lambda rate: (rate.pointing, -rate.images, rate.class_name))[:PAGE_CLASSES]
    yield '<table id="evidence-rates"><tr><th>class</th><th>images</th><th>pointing</th><th>evidence share</th></tr>'
    yield "".join(f"<tr><td>{escape(rate.class_name)}</td><td>{rate.images}</td><td>{rate.pointing:.0%}</td>"
                  f"<td>{rate.evidence_share:.2f}</td></tr>" for rate in rates)
    yield "</table>"
    count = session.scalar(text(f"SELECT COUNT(*) FROM reasons WHERE run_id = :run_id AND {WRONG_REASONS}"),
                           {"run_id": run.id})
    examples = session.execute(
        text(f"SELECT image_id, source, evidence_share FROM reasons WHERE run_id = :run_id AND {WRONG_REASONS} "
             "ORDER BY evidence_share, image_id LIMIT :shown"),
        {"run_id": run.id, "shown": SHOWN_EXAMPLES},
    ).all()
    yield (f'<p id="wrong-reasons" data-count="{count}">{count} images right for the wrong reasons: correctly '
           "classified, but the top superpixel is off the evidence"
           + (f"; the {len(examples)} with the least evidence share:" if examples else ".") + "</p>")
    if examples:
        yield '<div class="typical">'
        for example in examples:
            yield small_pictures(session, run, example.image_id,
                                 f"{example.source} (evidence share {example.evidence_share:.2f})")
        yield "</div>"
    if count > len(examples):
        query = f"SELECT * FROM reasons WHERE run_id = {run.id} AND {WRONG_REASONS}"
        yield f"<p>All of them: {command(f'python -m db sql {query!r}')}</p>"


def comparison_section(session: Session, run_a: Run, run_b: Run) -> Iterator[str]:
    classes: list[ClassComparison] = compare_runs(session, run_a, run_b)
    yield (f'<h2 id="comparison">Compared with run {run_a.id} ({escape(run_a.name)})</h2><p class="note">Per class '
           "(the true class; for images without, the class both runs predict), over the images both runs explained: "
           "each run's mean map for that class on one colour scale, their difference, and how alike the two runs' "
           "maps of the same image are on average (rank correlation; overlap of their top tenths).</p>")
    if not classes:
        yield "<p>The two runs have no explained image in common.</p>"
        return
    if len(classes) > PAGE_CLASSES:
        yield (f'<p class="note" id="compared-note">The {PAGE_CLASSES} classes of {len(classes)} whose maps differ '
               "most between the two runs (the lowest map correlation first). Every class: "
               f"{command(f'python -m db compare {run_a.id} {run_b.id} --by-class')}, with their maps as PNG files: "
               f"{command(f'python -m db compare {run_a.id} {run_b.id} --by-class --maps DIR')}.</p>")
        classes = sorted(classes, key=lambda entry: (entry.correlation, entry.class_name))[:PAGE_CLASSES]
    yield (f'<table id="compared"><tr><th>class</th><th>images</th><th>run {run_a.id}</th><th>run {run_b.id}</th>'
           f"<th>run {run_b.id} - run {run_a.id}</th><th>map correlation</th><th>top overlap</th></tr>")
    for entry in classes:
        scale = float(max(np.abs(entry.map_a).max(), np.abs(entry.map_b).max()))
        yield (f'<tr data-class="{escape(entry.class_name)}"><td>{escape(entry.class_name)}</td><td>{entry.images}</td>'
               f'<td>{picture(pictures.map_picture(entry.map_a, scale=scale), f"run {run_a.id}")}</td>'
               f'<td>{picture(pictures.map_picture(entry.map_b, scale=scale), f"run {run_b.id}")}</td>'
               f'<td>{picture(pictures.map_picture(entry.difference), "difference")}</td>'
               f"<td>{entry.correlation:.2f}</td><td>{overlap_cell(entry.overlap)}</td></tr>")
    yield "</table>"


def overlap_cell(overlap: float) -> str:
    """A class's mean top overlap; `-` when none of its maps had a top region (no positive weight anywhere)."""
    return "-" if np.isnan(overlap) else f"{overlap:.2f}"


def gallery_rows(session: Session, run_id: int, per_cell: int = GALLERY_PER_CELL, cells: int = LARGEST_CELLS):
    """The `per_cell` most confident mistakes of each of the `cells` confusion cells with the most mistakes: rows of
    (image_id, true_label, predicted_label, confidence, mistakes in its cell), largest cell first, most confident
    first within a cell."""
    mistake = (Explanation.run_id == run_id) & (Explanation.status == "ok") & Explanation.correct.is_(False)
    true, predicted = Explanation.true_label, Explanation.predicted_label
    largest = (
        select(true, predicted, func.count().label("mistakes")).where(mistake).group_by(true, predicted)
        .order_by(func.count().desc(), true, predicted).limit(cells).subquery()
    )
    ranked = select(
        Explanation.image_id, true, predicted, Explanation.confidence,
        func.row_number().over(partition_by=(true, predicted),
                               order_by=(Explanation.confidence.desc(), Explanation.image_id)).label("place"),
    ).where(mistake).subquery()
    same_cell = (ranked.c.true_label == largest.c.true_label) & (ranked.c.predicted_label == largest.c.predicted_label)
    return session.execute(
        select(ranked.c.image_id, ranked.c.true_label, ranked.c.predicted_label, ranked.c.confidence,
               largest.c.mistakes)
        .select_from(ranked.join(largest, same_cell)).where(ranked.c.place <= per_cell)
        .order_by(largest.c.mistakes.desc(), ranked.c.true_label, ranked.c.predicted_label, ranked.c.place)
    ).all()


def gallery_section(session: Session, summarised: RunSummary, rows) -> Iterator[str]:
    run, counts = summarised.run, summarised.counts
    if not counts.labelled:
        yield ('<h2 id="gallery-heading">No true labels: nothing is known to be misclassified (the summary shows the '
               "predicted classes)</h2>")
        return
    mistakes = counts.misclassified
    if not mistakes:
        yield '<h2 id="gallery-heading">Misclassified images: none</h2>'
        return
    cells = session.scalar(select(func.count()).select_from(
        select(Explanation.true_label, Explanation.predicted_label)
        .where(Explanation.run_id == run.id, Explanation.status == "ok", Explanation.correct.is_(False))
        .group_by(Explanation.true_label, Explanation.predicted_label).subquery()
    ))
    which = "each confusion cell" if cells <= LARGEST_CELLS else (
        f"each of the {LARGEST_CELLS} confusion cells (of {cells}) with the most mistakes")
    yield (f'<h2 id="gallery-heading">Misclassified images: {len(rows)} of {mistakes}</h2>'
           f'<p class="note">The {GALLERY_PER_CELL} most confident mistakes of {which}. All {mistakes} are a query '
           f'away: {command(f"python -m db misclassified --run {run.id}")}, or drawn as PNG files: '
           f'{command(f"python -m db export --run {run.id} --misclassified --out DIR")}.</p>'
           f'<div id="gallery" data-mistakes="{mistakes}" data-shown="{len(rows)}" data-per-cell="{GALLERY_PER_CELL}">')
    for (true, predicted), cell in groupby(rows, key=lambda row: (row.true_label, row.predicted_label)):
        cell = list(cell)
        true_name, predicted_name = run.class_names[true], run.class_names[predicted]
        yield (f'<section class="cell" data-true="{escape(true_name)}" data-predicted="{escape(predicted_name)}" '
               f'data-mistakes="{cell[0].mistakes}"><h3>true {escape(true_name)}, predicted '
               f"{escape(predicted_name)}: {cell[0].mistakes} mistakes"
               + ("" if len(cell) == cell[0].mistakes else f", the {len(cell)} most confident") + "</h3>")
        for row in cell:
            yield card(reads.explanation_details(session, run.id, image_id=row.image_id)[0])
        yield "</section>"
    yield "</div>"


def rounded(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def card(detail: reads.ExplanationDetail) -> str:
    """One mistake: the image, why the model chose its label and why the true one (outlines and weight heatmaps),
    its faithfulness figures, its top superpixels and where it came from."""
    row = detail.explanation
    try:
        image = pictures.drawable(detail.image.pixels())
    except ReferenceFileError as error:
        return gone(row.image_id, error)
    segments = decode_segments(row.segments)
    predicted, true = detail.label_name(row.predicted_label), detail.label_name(row.true_label)
    views = [(row.predicted_label, "predicted", predicted)]
    if row.true_label in detail.weights:
        views.append((row.true_label, "true", true))
    # the image and outlines at the image's own size (the page scales them up, pixelated): a third of the bytes
    drawn = [figure(pictures.thumbnail(pictures.original(image, enlarge=False), CARD_SIDE), "original", "original")]
    for label, kind, name in views:
        outlined = pictures.overlays(image, segments, detail.weights[label], enlarge=False)[0]
        drawn.append(figure(pictures.thumbnail(outlined, CARD_SIDE), kind, f"why {name}"))
        drawn.append(figure(pictures.heatmap(image, segments, detail.weights[label]), f"heatmap {kind}",
                            f"weights for {name}"))
    weights = detail.weights[row.predicted_label]
    top = sorted(range(len(weights)), key=lambda s: -weights[s])[:TOP_WEIGHTS]
    stability = "" if row.stability is None else f"; stability {rounded(row.stability)}"
    return (f'<div class="card" data-image-id="{row.image_id}" data-confidence="{row.confidence!r}">' + "".join(drawn)
            + f'<div class="meta">image {row.image_id}: true <b>{escape(true)}</b>, predicted <b>{escape(predicted)}</b>, '
            f"confidence {rounded(row.confidence)}; faithfulness: deletion AUC {rounded(row.deletion_auc)} (lower is "
            f"better), insertion AUC {rounded(row.insertion_auc)} (higher is better){stability}</div>"
            '<div class="meta">top superpixels: '
            + ", ".join(f"#{s} {weights[s]:.3f} ({int(detail.areas[s])} px)" for s in top) + "</div>"
            f'<div class="meta">{escape(detail.image.source)}</div></div>')


HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
td.hit {{ background: #e6f4e6; }} td.miss {{ background: #fbe3e3; }}
.warning {{ border: 2px solid #c00; background: #fdecec; padding: .6rem; max-width: 60rem; }}
.note {{ max-width: 60rem; color: #444; }}
figure {{ display: inline-block; margin: 0 4px 4px 0; text-align: center; font-size: .8rem; vertical-align: top; }}
.maps {{ display: flex; flex-wrap: wrap; gap: .6rem; }}
#map-grid td {{ text-align: center; }} #map-grid img {{ width: 88px; }}
.group {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem; margin-bottom: .6rem; }}
.group.suspected {{ border: 2px solid #c00; background: #fdf3f3; }}
.typical figure.small img {{ height: 72px; margin-right: 2px; image-rendering: pixelated; }}
.typical figure.small figcaption {{ max-width: 150px; overflow-wrap: anywhere; }}
.cell {{ margin-bottom: 1rem; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem; margin-bottom: .6rem; }}
.card img {{ height: 160px; image-rendering: pixelated; }}
.meta {{ font-size: .9rem; margin: .3rem 0; }}
</style></head>
<body>
<h1>{title}</h1>
"""

END = "</body></html>\n"
