"""`python -m producer`: enqueue a validation set, follow a run, resume it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from core.cli import fail, failing_on
from db import queries
from db.session import session_factory
from models.datasets import DATASET_NAMES

app = typer.Typer(help="Send images to the workers and follow the runs.", no_args_is_help=True, add_completion=False)
console = Console()


@app.callback()
def main() -> None:
    """Send images to the workers and follow the runs."""


@app.command()
def enqueue(
    dataset: Optional[str] = typer.Option(None, help=f"Built-in data set's validation split: {' | '.join(DATASET_NAMES)} (default rectangles)."),
    folder: Optional[Path] = typer.Option(None, help="A folder with one sub-folder of PNG/JPEG images per class."),
    npz: Optional[Path] = typer.Option(None, help="An .npz file with images X (n, H, W[, C]) and labels y (n,)."),
    model: Optional[Path] = typer.Option(None, help="A .keras model (default: the data set's demo model, trained if missing)."),
    name: Optional[str] = typer.Option(None, help="Run name (default: source and time)."),
    num_samples: int = typer.Option(1000, help="LIME perturbations per image."),
    segmentation: str = typer.Option("quickshift", help="quickshift (lime's defaults) | slic."),
    n_segments: int = typer.Option(50, help="SLIC: about how many superpixels."),
    top_labels: Optional[int] = typer.Option(None, help="Explain the K most probable labels (default: predicted and true)."),
    seed: int = typer.Option(0, help="LIME's random seed (results depend only on image, model, parameters and seed)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N images."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow the run with a progress bar until it ends."),
) -> None:
    """Create a run, store its images, send one task per image, print the run id."""
    from producer import service, sources
    from worker.celery import app as celery_app
    from worker.engine import ExplainParams

    if sum(x is not None for x in (dataset, folder, npz)) > 1:
        fail("give one source: --dataset, --folder or --npz")
    if limit is not None and limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    if dataset is not None and dataset not in DATASET_NAMES:
        fail(f"unknown data set {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    with failing_on(ValueError):
        params = ExplainParams(
            num_samples=num_samples, segmentation=segmentation, n_segments=n_segments, top_labels=top_labels, seed=seed
        )

    with failing_on(service.EnqueueError, sources.SourceError):
        if folder is None and npz is None:
            dataset = dataset or "rectangles"
            model = model or service.ensure_demo_model(dataset, echo=console.print)
        elif model is None:
            fail("--model is required with --folder or --npz")
        choice = service.choose_model(model)
        if folder is not None:
            source = sources.from_folder(folder, limit)
        elif npz is not None:
            source = sources.from_npz(npz, limit)
        else:
            source = sources.from_builtin(dataset, choice.metadata, limit)
        _migrate()
        run_id, sent = service.enqueue(session_factory(), celery_app, name=name, model=choice, source=source, params=params)
    console.print(f"run {run_id}: {sent} images queued ({source.description}, model {choice.path.name})")
    if wait:
        follow(run_id)


@app.command()
def status(run: str = typer.Argument(..., help="Run id or name.")) -> None:
    """Counts and timing of a run."""
    with session_factory()() as session, failing_on(queries.RunNotFound):
        found = queries.find_run(session, run)
        counts = queries.run_counts(session, found.id)
        console.print(summary_table(found, counts))


@app.command()
def resume(
    run: str = typer.Argument(..., help="Run id or name."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow the run until it ends."),
) -> None:
    """Send again every image of the run that has no result (after the broker lost its queue)."""
    from producer import service
    from worker.celery import app as celery_app

    with failing_on(service.EnqueueError, queries.RunNotFound):
        run_id, sent = service.resume(session_factory(), celery_app, run)
    console.print(f"run {run_id}: {sent} images sent again")
    if wait and sent:
        follow(run_id)


def _migrate() -> None:
    from db.migrate import upgrade

    upgrade()


def follow(run_id: int) -> None:
    """A live progress bar (done, failed, remaining, rate, ETA), then a one-screen summary."""
    from producer.service import wait_for_run

    Session = session_factory()
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}  remaining {task.fields[remaining]}  {task.fields[rate]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("explaining", total=None, run=run_id, failed=0, remaining="?", rate="")

        def update(counts: queries.RunCounts) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{counts.finished / elapsed:.1f} img/s" if elapsed > 0 and counts.finished else ""
            progress.update(
                task, total=counts.total, completed=counts.finished, failed=counts.failed,
                remaining=counts.remaining, rate=rate,
            )

        counts = wait_for_run(Session, run_id, update)
    with Session() as session:
        console.print(summary_table(queries.find_run(session, run_id), counts))


def summary_table(run, counts: queries.RunCounts) -> Table:
    wall = queries.run_wall_seconds(run)
    table = Table(title=f"run {run.id}: {run.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", run.status)
    table.add_row("images", str(counts.total))
    table.add_row("explained", str(counts.ok))
    table.add_row("failed", str(counts.failed))
    table.add_row("remaining", str(counts.remaining))
    table.add_row("accuracy", "-" if counts.accuracy is None else f"{counts.accuracy:.2%}")
    table.add_row("misclassified", str(counts.misclassified))
    table.add_row("wall time", "-" if wall is None else f"{wall:.1f} s")
    if wall and counts.finished:
        table.add_row("images per second", f"{counts.finished / wall:.2f}")
    table.add_row("model", f"{run.model_path} ({run.model_sha256[:12]})")
    return table
