"""`python -m db`: migrate the results database and query it."""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum

import typer
from rich.console import Console
from rich.table import Table

from core.cli import fail, failing_on
from core.settings import settings
from db import queries
from db.session import session_factory

app = typer.Typer(help="The results database: migrations and queries.", no_args_is_help=True, add_completion=False)
console = Console()


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.callback()
def main() -> None:
    """The results database: migrations and queries."""


@app.command()
def upgrade(revision: str = typer.Option("head", help="Alembic revision to migrate to.")) -> None:
    """Create or migrate the schema (tables and views) of DATABASE_URL with Alembic; safe to rerun."""
    from sqlalchemy.exc import OperationalError

    from db.migrate import upgrade as run_upgrade

    try:
        run_upgrade(revision=revision)
    except OperationalError as error:
        fail(f"cannot reach the database: {str(error.orig).strip().splitlines()[0]}")
    console.print(f"database at revision {revision}: {_safe(settings.database)}")


@app.command()
def runs() -> None:
    """Every run with its counts."""
    table = Table("id", "name", "status", "images", "ok", "failed", "accuracy", "wall s", "created")
    with session_factory()() as session:
        for run, counts in queries.list_runs(session):
            wall = queries.run_wall_seconds(run)
            table.add_row(
                str(run.id), run.name, run.status, str(counts.total), str(counts.ok), str(counts.failed),
                "-" if counts.accuracy is None else f"{counts.accuracy:.2%}",
                "-" if wall is None else f"{wall:.1f}", f"{run.created_at:%Y-%m-%d %H:%M}",
            )
    console.print(table)


@app.command()
def misclassified(
    run: str = typer.Option(..., help="Run id or name."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json."),
) -> None:
    """The images the model got wrong in a run, most confident mistakes first."""
    with session_factory()() as session, failing_on(queries.RunNotFound):
        found = queries.find_run(session, run)
        rows = queries.misclassified(session, found.id)
    write_rows(rows, queries.MISCLASSIFIED_COLUMNS, format, title=f"misclassified in run {found.id} ({found.name})")


def write_rows(rows: list[dict], columns, format: OutputFormat, title: str) -> None:
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
            table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
        console.print(table)


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
