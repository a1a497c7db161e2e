"""A run of many classes (stored as a worker stores it, no model: benchmarks.audit's synthetic run), on both
databases: the report's and the summary's per-class parts show a stated number of classes, those with the most
mistakes first, and say where the rest are; the queries and commands they name give the rest. The report's sections
per class are written alone (its gallery, bounded whatever the classes, is the pipeline tests'), and the strategy
groups' order."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from itertools import chain

from sqlalchemy import select, text

from audit.service import EvidenceRate, ensure_audit, group_views
from benchmarks.audit import store_synthetic_run
from db.models import Explanation
from report.html import PAGE_CLASSES, comparison_section, confusion_section, evidence_section, looks_section
from report.summary import SHOWN_CLASSES, SHOWN_MISTAKES, evidence_line, shown_mistakes, summarise_run
from tests.conftest import invoke
from tests.db.conftest import sessions  # noqa: F401  (a fixture)

CLASSES = 60


def counted(session, run_id: int):
    """Counted here from the rows: every class in rank order (most mistakes both ways, then most images as true and
    as predicted class, then label), and per class its mistakes, its images and the images put in it."""
    mistakes, images, predicted = Counter(), Counter(), Counter()
    for true, guess in session.execute(select(Explanation.true_label, Explanation.predicted_label)
                                       .where(Explanation.run_id == run_id, Explanation.status == "ok")):
        images[true] += 1
        predicted[guess] += 1
        if true != guess:
            mistakes[true] += 1
            mistakes[guess] += 1
    order = sorted(images | predicted, key=lambda label: (-mistakes[label], -images[label] - predicted[label], label))
    return order, mistakes, images, predicted


def code(fragment: str) -> list[str]:
    return [html.unescape(found) for found in re.findall(r"<code>(.*?)</code>", fragment)]


def test_the_report_of_many_classes_shows_the_most_mistaken_and_where_the_rest_are(sessions, tmp_path):
    with sessions() as session:
        run = store_synthetic_run(session, 0, classes=CLASSES, images_per_class=(10, 20))
        # evidence figures for every image, a third of them pointing: the evidence section's table per class
        session.execute(text("UPDATE explanations SET pointing = (image_id % 3 = 0), evidence_share = 0.5 "
                             "WHERE run_id = :run"), {"run": run.id})
        session.commit()
        ensure_audit(session, run)
        order, mistakes, images, predicted = counted(session, run.id)
        names = run.class_names
        page = "".join(chain(confusion_section(session, run), looks_section(session, run),
                             evidence_section(session, run), comparison_section(session, run, run)))

        # the confusion matrix: the PAGE_CLASSES classes with the most mistakes, most first, and a column for the rest
        matrix = re.search(rf'<table id="confusion" data-classes="{CLASSES}" data-shown="{PAGE_CLASSES}">(.*?)</table>',
                           page, re.S).group(1)
        top = order[:PAGE_CLASSES]
        header, *rows, other = re.findall(r"<tr[^>]*>(.*?)</tr>", matrix)
        assert re.findall(r"<th>(\w+)</th>", header) == [names[label] for label in top] + ["other"]
        for label, row in zip(top, rows, strict=True):
            cells = [int(n) for n in re.findall(r"<td[^>]*>(\d+)</td>", row)]
            assert re.match(rf"<th>{names[label]}</th>", row) and len(cells) == PAGE_CLASSES + 1
            assert sum(cells) == images[label]  # the row's images, the other column included
        assert re.findall(r'<tr data-mistakes="(\d+)">', matrix) == [str(mistakes[label]) for label in top]
        assert mistakes[top[0]] > mistakes[order[-1]]
        assert [int(n) for n in re.findall(r"<td[^>]*>(\d+)</td>", other)] == [
            predicted[label] - sum(int(re.findall(r"<td[^>]*>(\d+)</td>", row)[i]) for row in rows)
            for i, label in enumerate(top)]
        note = re.search(r'<p class="note" id="confusion-note">(.*?)</p>', page).group(1)
        assert f"The {PAGE_CLASSES} classes with the most mistakes of {CLASSES}" in note
        every_class, every_cell = code(note)
        assert every_class == f"python -m db classes --run {run.id}"
        confusions = session.execute(text(every_cell.removeprefix("python -m db sql ").strip("'"))).all()
        wrong = session.execute(select(Explanation.true_label, Explanation.predicted_label).where(
            Explanation.run_id == run.id, Explanation.correct.is_(False)).distinct()).all()
        assert len(confusions) == len(wrong) and confusions[0].n == max(row.n for row in confusions)

        # the class maps: the same order, as many, and the command that writes every one
        shown_maps = re.findall(r'class="class-map" data-class="(\w+)"', page)
        assert shown_maps == [names[label] for label in order if predicted[label]][:PAGE_CLASSES]
        note = re.search(r'<p class="note" id="class-maps-note">(.*?)</p>', page).group(1)
        assert f"classes with the most mistakes of the {len(+predicted)} the model put images in" in note
        assert code(note) == [f"python -m db maps --run {run.id} --out DIR"]

        # the evidence: the classes where the top superpixel is least often on the evidence, and the query for all
        evidence = re.search(r'<table id="evidence-rates">(.*?)</table>', page, re.S).group(1)
        pointing = [int(p) for p in re.findall(r"<td>(\d+)%</td>", evidence)]
        assert len(pointing) == PAGE_CLASSES and pointing == sorted(pointing)
        note = re.search(r'<p class="note" id="evidence-note">(.*?)</p>', page).group(1)
        assert f"The {PAGE_CLASSES} classes of {CLASSES} whose top superpixel" in note
        every_rate = session.execute(text(code(note)[0].removeprefix("python -m db sql ").strip("'"))).all()
        assert len(every_rate) == CLASSES and round(100 * every_rate[0].pointing_rate) == pointing[0]

        # the run against itself: the comparison per class is bounded too
        assert len(re.findall(r'<tr data-class="', re.search(r'<table id="compared">(.*?)</table>', page, re.S)
                              .group(1))) == PAGE_CLASSES
        note = re.search(r'<p class="note" id="compared-note">(.*?)</p>', page).group(1)
        assert f"python -m db compare {run.id} {run.id} --by-class" in code(note)

        # the strategy groups: suspected shortcuts first, then the groups with the most errors, not class 0's first
        groups = group_views(session, run, limit=100, typical=0)
        suspected = [group.suspected for group in groups]
        assert suspected == sorted(suspected, reverse=True)
        rest = [group.errors for group in groups if not group.suspected]
        assert rest == sorted(rest, reverse=True) and rest[0] > rest[-1]

        # the summary names the classes with the most mistakes, and the command that lists every class
        summary = dict(summarise_run(session, run).rows)
        assert summary["most mistakes"].startswith(", ".join(
            f"{names[label]} {mistakes[label]}" for label in order[:SHOWN_CLASSES]) + f" (the {SHOWN_CLASSES} of ")
        assert summary["most mistakes"].endswith(f"every class: python -m db classes --run {run.id})")
        # the end of a run lists the most confident mistakes, and says how many more there are and where
        rows, more = shown_mistakes(session, summarise_run(session, run))
        total = sum(mistakes.values()) // 2
        assert len(rows) == SHOWN_MISTAKES and [r["confidence"] for r in rows] == sorted(
            (r["confidence"] for r in rows), reverse=True)
        assert more == f"and {total - SHOWN_MISTAKES} more, less confident: python -m db misclassified --run {run.id}"

    env = {"DATABASE_URL": sessions.kw["bind"].url.render_as_string(hide_password=False), "DATA_DIR": str(tmp_path)}
    listed = json.loads(invoke("db", "classes", "--run", str(run.id), "--format", "json", env=env).stdout)
    assert [(row["class"], row["mistakes"]) for row in listed] == [(names[label], mistakes[label]) for label in order]
    assert all(row["missed"] + row["taken"] == row["mistakes"] for row in listed)


def test_the_evidence_line_of_many_classes_names_those_with_the_lowest_pointing():
    few = [EvidenceRate("ring", 40, 0.95, 0.6), EvidenceRate("plus", 40, 0.75, 0.4)]
    assert evidence_line(few) == "pointing 85% (ring 95% of 40, plus 75% of 40), evidence share 0.50"
    many = [EvidenceRate(f"class{i}", 10, 1 - i / 20, 0.5) for i in range(SHOWN_CLASSES + 2)]
    lowest = ", ".join(f"class{i} {1 - i / 20:.0%} of 10" for i in range(SHOWN_CLASSES + 1, 1, -1))
    assert evidence_line(many) == f"pointing 72% (lowest: {lowest}, and 2 more classes), evidence share 0.50"
