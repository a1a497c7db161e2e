"""What every command line of the project shares: one-line errors with a non-zero exit, rows as a table, CSV
or JSON."""

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


def write_rows(rows: list[dict], columns, format: OutputFormat, title: str) -> None:
    """Query rows on stdout: a rich table (missing values as -), CSV with a header, or a JSON list."""
    if format is OutputFormat.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif format is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*(f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row.values()))
        Console().print(table)
