"""What every command line of the project shares: one-line errors with a non-zero exit, a console that is plain when
stdout is not a terminal, rows as a table (fitted to the terminal, plain text when piped), CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from enum import Enum
from typing import Iterator, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print `error: message` on one line to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given (expected, user-facing) errors into a one-line `error: ...` and a non-zero exit."""
    try:
        yield
    except errors as error:
        fail(str(error))


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class Output(Console):
    """rich's console for stdout (or stderr), plain when it is not a terminal: a line is never wrapped there, so a log
    or a pipe gets each message whole."""

    def print(self, *objects, **options) -> None:
        if not self.is_terminal:
            options.setdefault("soft_wrap", True)
        super().print(*objects, **options)


def cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def show_table(console: Console, title: str, columns, rows: list[list]) -> None:
    """Rows under their column names, every header and cell whole. In a terminal: a table when it fits its width;
    else aligned columns without borders, the last columns moved out of the line as `name: value` pairs under each
    row (all of them, when not even two columns fit). Not a terminal: plain aligned text, nothing cut."""
    columns = [str(column) for column in columns]
    cells = [[cell(value) for value in row] for row in rows]
    if not cells:
        console.print(f"{title}: none", markup=False, highlight=False)
        return
    widths = [max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]
    if not console.is_terminal:
        show_aligned(console, title, columns, cells, widths)
        return
    if sum(widths) + 3 * len(columns) + 1 <= console.width:
        table = Table(title=title)
        for column, width in zip(columns, widths):
            table.add_column(column, min_width=width, no_wrap=True)
        for row in cells:
            table.add_row(*(Text(value) for value in row))
        console.print(table)
        return
    kept = len(columns)  # the first columns matter most: the last ones move out first
    while kept and sum(widths[:kept]) + 2 * (kept - 1) > console.width:
        kept -= 1
    show_aligned(console, title, columns, cells, widths, inline=kept if kept >= 2 else 0)


def show_aligned(console: Console, title: str, columns: list[str], cells: list[list[str]], widths: list[int],
                 inline: int | None = None) -> None:
    """The first `inline` columns (all by default) in line, two spaces apart, without borders; the others as
    `name: value` pairs under each row, packed into lines of the console's width."""
    inline = len(columns) if inline is None else inline
    bold = "bold" if console.is_terminal else None
    console.print(title, markup=False, highlight=False, style=bold)
    if inline:
        console.print("  ".join(column.ljust(width) for column, width in zip(columns[:inline], widths)).rstrip(),
                      markup=False, highlight=False, style=bold)
    indent = "    " if inline else ""
    for number, row in enumerate(cells):
        if number and not inline:
            console.print()
        if inline:
            console.print("  ".join(value.ljust(width) for value, width in zip(row[:inline], widths)).rstrip(),
                          markup=False, highlight=False)
        line = ""
        for column, value in zip(columns[inline:], row[inline:]):
            pair = f"{column}: {value}"
            if line and len(indent) + len(line) + 2 + len(pair) > console.width:
                console.print(indent + line, markup=False, highlight=False)
                line = ""
            line = f"{line}  {pair}" if line else pair
        if line:
            console.print(indent + line, markup=False, highlight=False)


def show_pairs(console: Console, title: str, pairs: list[tuple[str, str]]) -> None:
    """A record as `name  value` lines: a two-column table in a terminal (values wrapped to its width), plain lines
    when piped."""
    if console.is_terminal:
        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(key, Text(value))
        console.print(table)
        return
    console.print(title, markup=False, highlight=False)
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        console.print(f"  {key:<{width}}  {value}", markup=False, highlight=False)


def write_rows(rows: list[dict], columns, format: OutputFormat, title: str) -> None:
    """Query rows on stdout: a table (show_table; missing values as -), CSV with a header, or a JSON list."""
    if format is OutputFormat.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif format is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    else:
        show_table(Output(), title, list(columns), [[row.get(column) for column in columns] for row in rows])
