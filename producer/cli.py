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


DATASET = typer.Option(None, help=f"Built-in data set's validation split: {' | '.join(DATASET_NAMES)} (default rectangles).")
FOLDER = typer.Option(None, help="A folder with one sub-folder of PNG/JPEG images per class.")
NPZ = typer.Option(None, help="An .npz file with images X (n, H, W[, C]) and labels y (n,).")
MODEL = typer.Option(None, help="A .keras model (default: the data set's demo model, trained if missing).")
NAME = typer.Option(None, help="Run name (default: source and time).")
NUM_SAMPLES = typer.Option(1000, help="LIME perturbations per image.")
SEGMENTATION = typer.Option("quickshift", help="quickshift (lime's defaults) | slic.")
N_SEGMENTS = typer.Option(50, help="SLIC: about how many superpixels.")
TOP_LABELS = typer.Option(None, help="Explain the K most probable labels (default: predicted and true).")
SEED = typer.Option(0, help="LIME's random seed (results depend only on image, model, parameters and seed).")
LIMIT = typer.Option(None, help="Only the first N images.")
RESIZE = typer.Option(False, "--resize", help="Scale images of another size to the model's input (otherwise refused).")


@app.command()
def enqueue(
    dataset: Optional[str] = DATASET,
    folder: Optional[Path] = FOLDER,
    npz: Optional[Path] = NPZ,
    model: Optional[Path] = MODEL,
    name: Optional[str] = NAME,
    num_samples: int = NUM_SAMPLES,
    segmentation: str = SEGMENTATION,
    n_segments: int = N_SEGMENTS,
    top_labels: Optional[int] = TOP_LABELS,
    seed: int = SEED,
    limit: Optional[int] = LIMIT,
    resize: bool = RESIZE,
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow the run with a progress bar until it ends."),
) -> None:
    """Create a run, store its images, send one task per image, print the run id."""
    from worker.celery import app as celery_app

    prepared = prepare_run(
        dataset=dataset, folder=folder, npz=npz, model=model, num_samples=num_samples, segmentation=segmentation,
        n_segments=n_segments, top_labels=top_labels, seed=seed, limit=limit, resize=resize,
    )
    run_id = send_run(celery_app, name, *prepared)
    if wait:
        follow(run_id)


def prepare_run(*, dataset, folder, npz, model, num_samples, segmentation, n_segments, top_labels, seed, limit, resize):
    """Check the options, pick the model (training the demo one if missing) and read the source."""
    from producer import service, sources
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
    for note in source.ignored:
        console.print(f"ignored {note}")
    if resize:
        height, width = choice.metadata.input_shape[:2]
        console.print(f"resized {service.fit_to_model(choice, source)} images to {height}x{width}")
    return choice, source, params


def send_run(celery_app, name, choice, source, params) -> int:
    """Create the run and send its tasks; the run id."""
    from producer import service

    _migrate()
    with failing_on(service.EnqueueError):
        run_id, sent = service.enqueue(session_factory(), celery_app, name=name, model=choice, source=source, params=params)
    console.print(f"run {run_id}: {sent} images queued ({source.description}, model {choice.path.name})")
    return run_id


@app.command()
def local(
    dataset: Optional[str] = DATASET,
    folder: Optional[Path] = FOLDER,
    npz: Optional[Path] = NPZ,
    model: Optional[Path] = MODEL,
    name: Optional[str] = NAME,
    num_samples: int = NUM_SAMPLES,
    segmentation: str = SEGMENTATION,
    n_segments: int = N_SEGMENTS,
    top_labels: Optional[int] = TOP_LABELS,
    seed: int = SEED,
    limit: Optional[int] = LIMIT,
    resize: bool = RESIZE,
    workers: int = typer.Option(0, help="Local worker processes (0: one per core)."),
    resume_run: Optional[str] = typer.Option(None, "--resume", help="Finish this run (id or name) instead of starting one."),
) -> None:
    """The whole job on this machine, no Docker, Redis or PostgreSQL needed.

    Results go to DATABASE_URL (default: a SQLite file under DATA_DIR) and tasks through
    CELERY_BROKER_URL, or an embedded broker in a SQLite file when that is not set. Starts local
    workers, sends the run, shows its progress, stops the workers, and prints the summary and the
    misclassified images. Ctrl-C stops the workers and leaves the run resumable with --resume.
    """
    from core.localstack import Worker
    from core.settings import cpu_count, settings
    from producer import service
    from worker import local_broker
    from worker.celery import app as celery_app, use_broker

    if workers < 0:
        fail(f"--workers must be 0 or more, got {workers}")
    processes = workers or cpu_count()
    broker = settings.celery_broker_url
    if "celery_broker_url" not in settings.model_fields_set:
        broker = local_broker.url_for((settings.data_dir / "broker.db").resolve())
    use_broker(celery_app, broker)
    env = {
        "DATABASE_URL": settings.database, "CELERY_BROKER_URL": broker, "DATA_DIR": str(settings.data_dir.resolve()),
        "WORKER_CONCURRENCY": str(processes),
    }
    prepared = None
    if resume_run is None:  # the model first: training it while the workers start would slow both
        prepared = prepare_run(
            dataset=dataset, folder=folder, npz=npz, model=model, num_samples=num_samples,
            segmentation=segmentation, n_segments=n_segments, top_labels=top_labels, seed=seed, limit=limit,
            resize=resize,
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(env, concurrency=processes, log=settings.data_dir / "local-worker.log", name="local@%h")
    console.print(f"starting {processes} local worker processes (log: {worker.log})")
    worker.start(ready_timeout=None)
    run_id = None
    try:
        if resume_run is not None:
            _migrate()
            with failing_on(service.EnqueueError, queries.RunNotFound):
                run_id, sent = service.resume(session_factory(), celery_app, resume_run)
            console.print(f"run {run_id}: {sent} images sent again")
        else:
            run_id = send_run(celery_app, name, *prepared)
        follow(run_id, summary=False, watch=lambda: worker.alive() or fail(f"the local workers exited; see {worker.log}"))
    except KeyboardInterrupt:
        console.print("\n[bold]interrupted[/]: stopping the workers...")
        worker.stop()
        if run_id is not None:
            console.print(f"run {run_id} is resumable: python -m producer local --resume {run_id}")
        raise typer.Exit(130)
    finally:
        worker.stop()
    with session_factory()() as session:
        run = queries.find_run(session, run_id)
        console.print(summary_table(run, queries.run_counts(session, run_id)))
        rows = queries.misclassified(session, run_id)
    from db.cli import OutputFormat, write_rows

    write_rows(rows, queries.MISCLASSIFIED_COLUMNS, OutputFormat.table, title=f"misclassified in run {run_id}")
    console.print(f"results: {settings.database}  (python -m db misclassified --run {run_id})")


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
    from db.migrate import DatabaseUnavailable, upgrade

    with failing_on(DatabaseUnavailable):
        upgrade()


def follow(run_id: int, summary: bool = True, watch=None) -> None:
    """A live progress bar (done, failed, remaining, rate, ETA), then a one-screen summary.

    `watch`, if given, is called at every poll and may stop the wait by raising.
    """
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
            if watch is not None:
                watch()
            elapsed = time.perf_counter() - started
            rate = f"{counts.finished / elapsed:.1f} img/s" if elapsed > 0 and counts.finished else ""
            progress.update(
                task, total=counts.total, completed=counts.finished, failed=counts.failed,
                remaining=counts.remaining, rate=rate,
            )

        counts = wait_for_run(Session, run_id, update)
    if summary:
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
