"""The docs as a reader meets them: a README of two screens, every shell block run by a test or marked as not run
(and why), every link leading to a file and heading that exist, and every measured figure what its benchmark's saved
JSON says."""

from __future__ import annotations

import re

import pytest

from benchmarks import figures
from tests.producer.test_readme_own_model import readme_steps
from tests.services import REPO

DOCUMENTS = figures.documents()
FENCE = re.compile(r"^```(bash|sh|shell)$", re.M)
MARKER = re.compile(r"<!-- (?:run by (?P<test>tests/[\w/]+\.py)|not run[^:]*): (?P<why>[^>]+?) -->\n\Z", re.S)
LINK = re.compile(r"\]\((?!https?://)(?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)")


def names(path) -> str:
    return str(path.relative_to(REPO))


def test_the_readme_fits_on_two_screens():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("path", DOCUMENTS, ids=names)
def test_every_shell_block_is_run_by_a_test_or_says_why_not(path):
    text = path.read_text()
    for fence in FENCE.finditer(text):
        marker = MARKER.search(text[: fence.start()])
        line = text[: fence.start()].count("\n") + 1
        assert marker, f"{names(path)}:{line}: a shell block with no <!-- run by tests/...: ... --> or <!-- not run: ... -->"
        if marker.group("test"):
            test = REPO / marker.group("test")
            assert test.exists(), f"{names(path)}:{line}: {marker.group('test')} does not exist"
            assert path.name in test.read_text(), f"{names(path)}:{line}: {marker.group('test')} never reads {path.name}"


def test_the_own_model_page_shows_the_block_the_readme_test_runs():
    assert readme_steps(REPO / "docs" / "own-model.md") == readme_steps()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", DOCUMENTS, ids=names)
def test_links_lead_to_files_and_headings_that_exist(path):
    for link in LINK.finditer(path.read_text()):
        target = (path.parent / link.group("target")).resolve() if link.group("target") else path
        assert target.exists(), f"{names(path)}: {link.group(0)} leads nowhere"
        if link.group("anchor") and target.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
            assert link.group("anchor") in headings, f"{names(path)}: {link.group(0)}: no such heading"


def test_every_measured_figure_is_its_benchmarks_saved_json():
    blocks = [match.group("name") for path in DOCUMENTS for match in figures.BLOCK.finditer(path.read_text())]
    assert blocks and set(blocks) <= set(figures.RENDERERS)
    stale = [str(path) for path in figures.stale()]
    assert stale == [], f"out of date with docs/figures (run python -m benchmarks.figures): {stale}"
