"""Tables for every terminal: whole headers and cells in an 80-column terminal, plain aligned text when piped."""

import io
import re

from core.cli import Output, show_table

BOX_DRAWING = re.compile("[\u2500-\u259f]")
COLUMNS = ["image_id", "source", "true_label", "predicted_label", "confidence", "deletion_auc", "insertion_auc"]
ROWS = [[75, "rectangles:validation/74", "no_rectangle", "rectangle", 0.5909, 0.5714, 0.9442],
        [281, "rectangles:validation/280", "no_rectangle", "rectangle", 0.5107, None, 0.7105]]


def shown(columns, rows, terminal: bool, width: int = 80) -> str:
    buffer = io.StringIO()
    console = Output(file=buffer, force_terminal=terminal, width=width, color_system=None)
    show_table(console, "misclassified in run 2", columns, rows)
    return buffer.getvalue()


def test_piped_rows_are_plain_aligned_and_whole():
    out = shown(COLUMNS, ROWS, terminal=False)
    lines = out.splitlines()
    assert lines[0] == "misclassified in run 2"
    assert lines[1].split() == COLUMNS
    assert lines[2].split() == ["75", "rectangles:validation/74", "no_rectangle", "rectangle", "0.5909", "0.5714",
                                "0.9442"]
    assert lines[3].split()[5] == "-"  # a missing value, marked
    assert not BOX_DRAWING.search(out)
    assert lines[1].index("source") == lines[2].index("rectangles") == lines[3].index("rectangles")  # aligned


def test_too_wide_for_80_columns_keeps_the_first_columns_in_line_and_moves_the_last_under_each_row():
    out = shown(COLUMNS, ROWS, terminal=True)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines) and not BOX_DRAWING.search(out)
    assert lines[1].split() == ["image_id", "source", "true_label", "predicted_label", "confidence"]
    assert lines[2].split() == ["75", "rectangles:validation/74", "no_rectangle", "rectangle", "0.5909"]
    assert lines[3].split() == ["deletion_auc:", "0.5714", "insertion_auc:", "0.9442"]
    assert lines[4].split()[1] == "rectangles:validation/280" and lines[5].split()[1] == "-"


def test_a_terminal_too_narrow_for_two_columns_gets_name_value_lines():
    out = shown(COLUMNS, ROWS, terminal=True, width=30)
    for column in COLUMNS:
        assert re.search(rf"^ *{column}: ", out, re.M) or re.search(rf"  {column}: ", out), column
    assert all(len(line) <= 30 for line in out.splitlines())


def test_a_table_that_fits_is_drawn_with_every_header_whole():
    out = shown(["run", "name", "images"], [[1, "rectangles-20261130-061011", 400]], terminal=True)
    assert BOX_DRAWING.search(out)
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "rectangles-20261130-061011" in out and "images" in out  # on one line each


def test_no_rows_says_none():
    assert shown(COLUMNS, [], terminal=False).strip() == "misclassified in run 2: none"
    assert shown(COLUMNS, [], terminal=True).strip() == "misclassified in run 2: none"
