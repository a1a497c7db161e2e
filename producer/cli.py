"""`python -m producer`: enqueue a validation set, follow a run, resume it."""

from __future__ import annotations

import inspect
from functools import partial
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.cli import USAGE_ERROR, Output, OutputFormat, fail, failing_on, show_pairs, write_rows
from core.settings import cpu_count, reload_settings, settings
from db import reads
from db.session import session_factory
from models.contract import PREPROCESS_FAMILIES
from models.datasets import DATASET_NAMES
from report.summary import RunSummary, check_line, describe_settings, shown_mistakes, summarise_run

app = typer.Typer(help="Send images to the workers and follow the runs.", no_args_is_help=True, add_completion=False)
console = Output()
PLAIN_PROGRESS_FROM = 1000


@app.callback()
def main() -> None:
    """Send images to the workers and follow the runs."""
    reload_settings()


# The options `enqueue` and `local` share, declared once: run_options() adds them to both commands' signatures.
RUN_OPTIONS = {
    "dataset": (Optional[str], typer.Option(
        None, help=f"Built-in data set's validation split: {' | '.join(DATASET_NAMES)} (default rectangles).")),
    "folder": (Optional[Path], typer.Option(None, help="A folder with one sub-folder of PNG/JPEG images per class.")),
    "npz": (Optional[Path], typer.Option(None, help="An .npz file with images X (n, H, W[, C]) and, optionally, labels y (n,).")),
    "model": (Optional[Path], typer.Option(None, help="A .keras model (default: the data set's demo model, trained if missing).")),
    "name": (Optional[str], typer.Option(None, help="Run name (default: source and time).")),
    "num_samples": (Optional[str], typer.Option(
        None, metavar="N|auto", help="LIME perturbations per image (default 512), or auto: block after block until the "
        "top superpixels have settled, at most 1024.")),
    "design": (Optional[str], typer.Option(
        None, help="How the masks are drawn: hadamard (default: balanced rows with their complements) | paired | "
        "independent (lime's coin flips).")),
    "estimator": (Optional[str], typer.Option(
        None, help="shrunk (default: lime's quantity with a logistic control variate, weights within their noise "
        "pulled to zero) | adjusted (the same, not shrunk) | lime (lime's own fit).")),
    "segmentation": (Optional[str], typer.Option(
        None, help="felzenszwalb (default: follows the objects' outlines) | slic | watershed (compact) | quickshift "
        "(lime's defaults).")),
    "n_segments": (Optional[int], typer.Option(None, help="slic, watershed: about how many superpixels.")),
    "hide": (Optional[str], typer.Option(
        None, help="What a hidden superpixel shows: mean (its own mean colour, lime's) | grey | black | blur | a number "
        "in [0, 1] (that share of the value range).")),
    "preset": (Optional[str], typer.Option(
        None, help="article: the article's exact settings (quickshift, mean fill, 1000 independent samples, lime's "
        "fit): equal to lime's explain_instance.")),
    "stability": (int, typer.Option(
        0, metavar="K", help="Also explain each image with K more seeds and store how much its top 5 superpixels agree.")),
    "top_labels": (Optional[int], typer.Option(None, help="Explain the K most probable labels (default: predicted and true).")),
    "seed": (int, typer.Option(0, help="LIME's random seed (results depend only on image, model, parameters and seed).")),
    "limit": (Optional[int], typer.Option(
        None, help="Only N images, taken from the classes in turn (a folder's sub-folders, an .npz's labels).")),
    "resize": (bool, typer.Option(
        False, "--resize", help="Scale images of another size to the model's input (otherwise refused).")),
    "value_range": (Optional[str], typer.Option(
        None, "--value-range", metavar="LOW,HIGH",
        help="Pixel values the model wants, e.g. 0,255 (default: the model's metadata file, else inferred from its "
        "first layer, Rescaling(1/255) -> 0,255, else 0,1).")),
    "preprocess": (Optional[str], typer.Option(
        None, help="keras.applications preprocessing the model expects (images go in as 0..255): "
        f"{' | '.join(PREPROCESS_FAMILIES)}.")),
    "class_names_file": (Optional[Path], typer.Option(
        None, help="The model's class names in output order, for a model whose metadata names none: a text file, one "
        "per line (ImageNet's LOC_synset_mapping.txt), or a JSON list or index object (imagenet_class_index.json). "
        "Class folders are matched to them by name, or by a name's first word (WordNet ids).")),
    "runtime": (str, typer.Option(
        "auto", metavar="auto|keras|openvino",
        help="What computes the predictions: auto (default: each worker process converts the model to OpenVINO once, "
        "checks it reproduces Keras on the input check's images, and takes the faster of the two), keras, or "
        "openvino (used only where it reproduces Keras; else Keras, saying why).")),
    "skip_bad": (bool, typer.Option(
        False, "--skip-bad", help="Explain the good images and record the bad ones on the run (default: list them all, stop).")),
    "evidence": (Optional[Path], typer.Option(
        None, help="With --folder: a folder of masks, one per image at the same relative path (or that path with "
        ".png); non-zero pixels are the evidence the audit's pointing is measured against.")),
    "boxes": (Optional[Path], typer.Option(
        None, help="With --folder: a CSV of evidence boxes, path,x0,y0,x1,y1 (pixels of the image as stored, x1 and y1 "
        "exclusive; several rows per image: their union).")),
    "images_mode": (str, typer.Option(
        "copy", "--images", metavar="copy|reference",
        help="copy: the pixels as PNG in the database, so results outlive the files (default); reference: the file's "
        "path and content hash only, for a folder every worker reads at the same path.")),
}


def run_options(command, names=tuple(RUN_OPTIONS)):
    """Give a command that takes **options the shared RUN_OPTIONS (those in `names`) as typer parameters, ahead of
    its own."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=RUN_OPTIONS[name][1],
                          annotation=RUN_OPTIONS[name][0])
        for name in names
    ]
    command.__signature__ = inspect.Signature([*shared, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)])
    return command


# What the by-construction check reads: the source, the model and its contract, the evidence, the settings.
CHECKED_IMAGES = 20
CHECK_OPTIONS = ("dataset", "folder", "npz", "model", "num_samples", "design", "estimator", "segmentation",
                 "n_segments", "hide", "preset", "seed", "limit", "resize", "value_range", "preprocess",
                 "class_names_file", "skip_bad", "evidence", "boxes")


def broker_app():
    """The Celery app, pointed at CELERY_BROKER_URL as this command read it."""
    from worker.celery import app, use_broker

    use_broker(app, settings.celery_broker_url)
    return app


@app.command()
@run_options
def enqueue(
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow the run with a progress bar until it ends."),
    **options,
) -> None:
    """Create a run, store its images, send one task per image, print the run id."""
    name = options.pop("name")
    run_id = send_run(broker_app(), name, prepare_run(**options))
    if wait:
        follow(run_id)
    else:
        console.print(f"the input check and progress: python -m producer status {run_id}")


def prepare_run(**options):
    """The service's preparation, its errors as one-line messages (every unusable image listed), what it did
    printed."""
    from models.contract import ContractError
    from producer import service, sources

    try:
        with counting("checking images") as progress:
            prepared = service.prepare_run(**options, echo=console.print, progress=progress)
    except service.BadFilesError as error:
        list_bad_files(error)
    except service.EvidenceError as error:
        print(f"error: {error}" + (":" if error.problems else ""), file=sys.stderr)
        for line in error.problems:
            print(f"  {line}", file=sys.stderr)
        raise typer.Exit(USAGE_ERROR)
    except (service.EnqueueError, sources.SourceError, ContractError, ValueError) as error:
        fail(str(error))
    source, contract = prepared.source, prepared.model.contract
    for note in source.ignored:
        console.print(f"ignored {note}")
    if prepared.resized:
        height, width = prepared.model.metadata.input_shape[:2]
        console.print(f"resized {prepared.resized} images to {height}x{width}")
    if prepared.skipped:
        console.print(f"[yellow]skipping {len(prepared.skipped)} images that cannot be explained[/] (recorded on the run):")
        for bad in prepared.skipped:
            console.print(f"  {bad.reason}", markup=False, highlight=False)
    if prepared.evidence is not None:
        console.print(f"evidence: {prepared.evidence.description}")
    console.print(f"input: {contract.describe()}")
    for note in contract.notes:
        console.print(f"  {note}", markup=False, highlight=False)
    console.print(f"runtime: {prepared.runtime}" + (
        " (each worker process checks OpenVINO against Keras on the input check's images once; the check says which "
        "it took)"
        if prepared.runtime != "keras" else ""), markup=False, highlight=False)
    console.print(f"explaining with: {describe_settings(prepared.params.to_dict())}", markup=False, highlight=False)
    return prepared


def list_bad_files(error) -> NoReturn:
    """Every image that cannot be explained, one line each, then how to go on; exits non-zero."""
    print(f"error: {error}:", file=sys.stderr)
    for bad in error.bad:
        print(f"  {bad.reason}", file=sys.stderr)
    good = error.total - len(error.bad)
    print(
        f"hint: fix or remove them and run again, or add --skip-bad to explain the other {good} "
        f"and record these {len(error.bad)} on the run",
        file=sys.stderr,
    )
    raise typer.Exit(USAGE_ERROR)


def send_run(celery_app, name, prepared) -> int:
    """Create the run and send its tasks; the run id."""
    from producer import service

    _migrate()
    with failing_on(service.EnqueueError), counting("storing images") as progress:
        run_id, stored = service.enqueue(session_factory(), celery_app, prepared, name=name, progress=progress)
    console.print(
        f"run {run_id}: {stored} images stored ({prepared.source.description}, model {prepared.model.path.name}); "
        f"the workers take them from the broker, at most {settings.max_queued} queued at a time"
    )
    return run_id


def each_new_tenth():
    """`due(done, total)`: true when `done` has reached a tenth of `total` it had not reached before (piped
    progress prints a line then, not at every image)."""
    shown = -1

    def due(done: int, total: int) -> bool:
        nonlocal shown
        tenth = done * 10 // max(total, 1)
        if tenth <= shown:
            return False
        shown = tenth
        return True

    return due


@contextmanager
def counting(description: str):
    """Progress of work on every image of a source, as a `progress(done, total)` callback: a bar in a terminal (gone
    when done), a plain line at every tenth when piped (for sources of PLAIN_PROGRESS_FROM images or more: a smaller
    one is read in a second or two)."""
    if not console.is_terminal:
        due = each_new_tenth()

        def progress(done: int, total: int) -> None:
            if total >= PLAIN_PROGRESS_FROM and due(done, total):
                console.print(f"{description}: {done} of {total}")

        yield progress
        return
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
@run_options
def local(
    workers: int = typer.Option(0, help="Local worker processes (0: one per core)."),
    resume_run: Optional[str] = typer.Option(None, "--resume", help="Finish this run (id or name) instead of starting one."),
    **options,
) -> None:
    """The whole job on this machine, no Docker, Redis or PostgreSQL needed.

    Results go to DATABASE_URL (default: a SQLite file under DATA_DIR) and tasks through
    CELERY_BROKER_URL, or an embedded broker in a SQLite file when that is not set. Starts local
    workers, sends the run, shows its progress, stops the workers, and prints the summary and the
    misclassified images. Ctrl-C stops the workers and leaves the run resumable with --resume.
    """
    from producer import service
    from producer.local import local_workers

    if workers < 0:
        fail(f"--workers must be 0 or more, got {workers}")
    processes = workers or cpu_count()
    name = options.pop("name")
    prepared = None
    if resume_run is None:  # the model first: training it while the workers start would slow both
        prepared = prepare_run(**options)
    run_id = None
    with local_workers(processes) as (celery_app, worker):
        console.print(f"started {processes} local worker processes (log: {worker.log})")
        try:
            if resume_run is not None:
                _migrate()
                with failing_on(service.EnqueueError, reads.RunNotFound):
                    run_id, sent = service.resume(session_factory(), celery_app, resume_run)
                console.print(f"run {run_id}: {sent} images sent again")
            else:
                run_id = send_run(celery_app, name, prepared)
            follow(run_id, summary=False, watch=lambda: worker.alive() or fail(f"the local workers exited; see {worker.log}"))
        except KeyboardInterrupt:
            console.print("\n[bold]interrupted[/]: stopping the workers...")
            worker.stop()
            if run_id is not None:
                console.print(f"run {run_id} is resumable: python -m producer local --resume {run_id}")
            raise typer.Exit(130)
    with session_factory()() as session:
        summary = summarise_run(session, reads.find_run(session, run_id))
        rows, more = shown_mistakes(session, summary)
    print_summary(summary)
    if summary.counts.labelled:
        write_rows(rows, reads.MISCLASSIFIED_COLUMNS, OutputFormat.table, title=f"misclassified in run {run_id}")
        if more:
            console.print(more, markup=False, highlight=False)
    print_strategies(run_id)
    console.print(f"results: {settings.database}  (python -m db misclassified --run {run_id})")


@app.command("check-explainer")
@partial(run_options, names=CHECK_OPTIONS)
def check_explainer(output: OutputFormat = typer.Option(OutputFormat.table, help="Per-image figures as a table, csv or json."),
                    **options) -> None:
    """Check the explainer on your model and images with evidence, by construction (no broker or database).

    Each image's model is wrapped twice: one sees only the evidence (the rest stays as it is, whatever the
    explainer does there), one only the background (the evidence filled). Leakage: the share of positive weight
    on superpixels with no evidence pixel, where the first cannot look; evidence share: the second's positive
    weight on the evidence. Near 0 (and pointing near 1) means the explanations show the model, not the
    explainer's noise. Two explanations per image, of the first 20 images unless --limit says. Exits 1 when a
    figure misses the benchmarks' target.
    """
    from producer import construct, service

    options["limit"] = options["limit"] or CHECKED_IMAGES
    prepared = prepare_run(**options, runtime="keras")  # explained here, by Keras itself
    with failing_on(service.EnqueueError), counting("explaining") as progress:
        checks = construct.check_run(prepared, progress=progress)
    rows = [{"image": c.name, "evidence %": round(100 * c.evidence_share_of_image, 1), "superpixels": c.superpixels,
             "pointing": c.pointing, "leakage": None if c.leakage is None else round(c.leakage, 4),
             "background evidence share": None if c.evidence_share is None else round(c.evidence_share, 4)}
            for c in checks]
    write_rows(rows, list(rows[0]), output, title="by construction: each wrapped model explained")
    verdict = construct.verdict(checks)
    if output is OutputFormat.table:
        show_pairs(console, f"by construction, {describe_settings(prepared.params.to_dict())}", [
            ("images", str(verdict.images)),
            ("pointing", "-" if verdict.pointing is None else f"{verdict.pointing:.2f}"),
            ("leakage (mean, worst)", "-" if verdict.leakage is None else f"{verdict.leakage:.4f}, {verdict.worst_leakage:.4f}"),
            ("background evidence share", "-" if verdict.evidence_share is None else f"{verdict.evidence_share:.4f}"),
            ("not responding", f"{verdict.unresponsive_evidence} evidence-only, {verdict.unresponsive_background} "
                               "background-only (left out of the means)"),
        ])
    problems = verdict.problems()
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    if problems:
        raise typer.Exit(1)


@app.command()
def status(run: str = typer.Argument(..., help="Run id or name.")) -> None:
    """Counts and timing of a run."""
    with session_factory()() as session, failing_on(reads.RunNotFound):
        summary = summarise_run(session, reads.find_run(session, run))
    print_summary(summary)


@app.command()
def resume(
    run: str = typer.Argument(..., help="Run id or name."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow the run until it ends."),
) -> None:
    """Send again every image of the run that has no result (after the broker lost its queue)."""
    from producer import service

    with failing_on(service.EnqueueError, reads.RunNotFound):
        run_id, sent = service.resume(session_factory(), broker_app(), run)
    console.print(f"run {run_id}: {sent} images sent again")
    if wait and sent:
        follow(run_id)


def _migrate() -> None:
    from db.migrate import DatabaseUnavailable, upgrade

    with failing_on(DatabaseUnavailable):
        upgrade()


def follow(run_id: int, summary: bool = True, watch=None) -> None:
    """Progress as the run goes (a live bar in a terminal, a plain line at every tenth when piped: done, failed,
    remaining, rate, ETA), the input check as soon as a worker has made it, then a one-screen summary.

    `watch`, if given, is called at every poll and may stop the wait by raising.
    """
    from producer.service import wait_for_run

    Session = session_factory()
    started = time.perf_counter()
    first_finished: int | None = None
    check_shown = False
    with run_progress(run_id) as report:

        def update(counts: reads.RunProgress, check: dict | None) -> None:
            nonlocal first_finished, check_shown
            if watch is not None:
                watch()
            if first_finished is None:
                first_finished = counts.finished  # images finished before we looked do not count in the rate
            if check is not None and not check_shown:
                show_input_check(check, console)
                check_shown = True
            report(counts, *progress_figures(counts.finished - first_finished, counts.remaining,
                                             time.perf_counter() - started))

        wait_for_run(Session, run_id, update)
    if summary:
        with Session() as session:
            print_summary(summarise_run(session, reads.find_run(session, run_id)))
        print_strategies(run_id)


@contextmanager
def run_progress(run_id: int):
    """A `report(counts, rate, eta)` callback: rich's live bar in a terminal; piped, a plain line whenever another
    tenth of the run is done (a log gets a dozen lines, not a screen's redraws)."""
    if console.is_terminal:
        columns = (
            TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}  remaining {task.fields[remaining]}  {task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("explaining", total=None, run=run_id, failed=0, remaining="?", rate="", eta="?")
            yield lambda counts, rate, eta: bar.update(
                task, total=counts.total, completed=counts.finished, failed=counts.failed, remaining=counts.remaining,
                rate=rate, eta=eta,
            )
        return
    due = each_new_tenth()

    def report(counts: reads.RunProgress, rate: str, eta: str) -> None:
        if due(counts.finished, counts.total):
            console.print(f"run {run_id}: {counts.finished} of {counts.total} done, {counts.failed} failed, "
                          f"{counts.remaining} remaining" + (f", {rate}, ETA {eta}" if rate else ""))

    yield report


def progress_figures(finished: int, remaining: int, elapsed_s: float) -> tuple[str, str]:
    """(rate, ETA) from the images finished while we watched: `12.3 img/s` for fast images, `27.4 s/img` for
    slow ones; the ETA is the remaining images at that pace, `?` until the first one is done."""
    if finished <= 0 or elapsed_s <= 0:
        return "", "?"
    seconds_per_image = elapsed_s / finished
    rate = f"{seconds_per_image:.1f} s/img" if seconds_per_image >= 1 else f"{1 / seconds_per_image:.1f} img/s"
    return rate, format_duration(remaining * seconds_per_image)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def show_input_check(check: dict, out: Console) -> None:
    if check.get("runtime"):
        out.print(check["runtime"]["line"], markup=False, highlight=False)
    if check.get("warning"):
        warning(out, check["warning"], "WARNING: input check")
    else:
        out.print(f"[green]input check[/]: {check_line(check)}")


def warning(out: Console, text: str, title: str = "WARNING") -> None:
    """A warning that stands out: a red panel in a terminal, one plain line when piped."""
    if out.is_terminal:
        out.print(Panel(text, title=title, border_style="red", style="bold red"))
    else:
        out.print(f"{title}: {text}", markup=False, highlight=False)


SHOWN_STRATEGIES = 8


def print_strategies(run_id: int) -> None:
    """The run's audit (made now), one line per strategy group, suspected shortcuts first."""
    from audit.service import ensure_audit, group_count, group_views

    with session_factory()() as session:
        run = reads.find_run(session, run_id)
        with counting("auditing") as progress:
            ensure_audit(session, run, progress=progress)
        groups = group_views(session, run, limit=SHOWN_STRATEGIES + 1, typical=0)
        total = group_count(session, run_id)
    if not groups:
        return
    console.print(f"[bold]strategies[/] (where the model looks, grouped per predicted class; "
                  f"python -m db strategies --run {run_id}):")
    for group in groups[:SHOWN_STRATEGIES]:
        console.print(f"  {group.line()}", markup=False, highlight=False, style="bold red" if group.suspected else None)
    if total > SHOWN_STRATEGIES:
        console.print(f"  and {total - SHOWN_STRATEGIES} more groups")


def print_summary(summary: RunSummary) -> None:
    show_pairs(console, f"run {summary.run.id}: {summary.run.name}", summary.rows)
    for text in summary.warnings:
        warning(console, text)
    if summary.skipped:
        console.print(f"skipped with --skip-bad ({len(summary.skipped)}):")
        for skipped in summary.skipped:
            console.print(f"  {skipped['reason']}", markup=False, highlight=False)
