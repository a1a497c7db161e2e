"""`python -m db`: migrate the results database and query it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from core.cli import Output, OutputFormat, fail, failing_on, show_table, write_rows
from core.images import ReferenceFileError
from core.settings import reload_settings, settings
from db import reads
from db.formats import decode_segments
from db.session import session_factory

app = typer.Typer(help="The results database: migrations and queries.", no_args_is_help=True, add_completion=False)
console = Output()


@app.callback()
def main() -> None:
    """The results database: migrations and queries."""
    reload_settings()


@app.command()
def upgrade(revision: str = typer.Option("head", help="Alembic revision to migrate to.")) -> None:
    """Create or migrate the schema (tables and views) of DATABASE_URL with Alembic; safe to rerun."""
    from db.migrate import DatabaseUnavailable, shown_url, upgrade as run_upgrade

    with failing_on(DatabaseUnavailable):
        run_upgrade(revision=revision)
    console.print(f"database at revision {revision}: {shown_url(settings.database)}")


@app.command()
def runs() -> None:
    """Every run with its counts."""
    rows = []
    with session_factory()() as session:
        for run, counts in reads.list_runs(session):
            wall = reads.run_wall_seconds(run)
            accuracy = "n/a" if counts.ok and not counts.labelled else "-"
            rows.append([
                run.id, run.name, run.status, counts.total, counts.ok, counts.failed,
                accuracy if counts.accuracy is None else f"{counts.accuracy:.2%}",
                "-" if wall is None else f"{wall:.1f}", f"{run.created_at:%Y-%m-%d %H:%M}",
            ])
    show_table(console, "runs", ["id", "name", "status", "images", "ok", "failed", "accuracy", "wall s", "created"],
               rows)


@app.command()
def misclassified(
    run: str = typer.Option(..., help="Run id or name."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json."),
) -> None:
    """The images the model got wrong in a run, most confident mistakes first."""
    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        rows = reads.misclassified(session, found.id)
    write_rows(rows, reads.MISCLASSIFIED_COLUMNS, format, title=f"misclassified in run {found.id} ({found.name})")


CLASS_COLUMNS = ("class", "images", "predicted", "missed", "taken", "mistakes")


@app.command()
def classes(
    run: str = typer.Option(..., help="Run id or name."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json."),
) -> None:
    """Every class of a run with its mistakes both ways, most mistakes first: its explained images, those the model
    put in it, its images it put in another class (missed) and other classes' images it put in it (taken). The
    report and the summary show the first few of a run of many classes."""
    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        rows = [{"class": found.class_names[entry.label], "images": entry.images, "predicted": entry.predicted,
                 "missed": entry.missed, "taken": entry.taken, "mistakes": entry.mistakes}
                for entry in reads.classes_by_mistakes(session, found.id)]
    write_rows(rows, CLASS_COLUMNS, format, title=f"classes of run {found.id} ({found.name}), most mistakes first")


@app.command()
def sql(
    query: str = typer.Argument(..., help="One SQL statement, e.g. \"SELECT * FROM misclassifications\"."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json."),
) -> None:
    """Run one SQL query on the results database (DATABASE_URL) and print its rows. Nothing is changed:
    the query runs in a transaction that is rolled back."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    with session_factory()() as session:
        try:
            result = session.execute(text(query))
            columns = list(result.keys()) if result.returns_rows else []
            rows = [dict(row._mapping) for row in result] if result.returns_rows else []
        except SQLAlchemyError as error:
            fail(f"the query failed: {str(getattr(error, 'orig', None) or error).strip().splitlines()[0]}")
        finally:
            session.rollback()
    if not columns:
        fail("the statement returns no rows; nothing was changed (sql runs queries and rolls back)")
    write_rows(rows, columns, format, title=f"{len(rows)} rows")


@app.command()
def show(
    image: int = typer.Argument(..., help="Image id."),
    run: str = typer.Option(..., help="Run id or name."),
) -> None:
    """One explained image: probabilities, weights per label, scores, where the image came from."""
    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        details = reads.explanation_details(session, found.id, image_id=image)
    if not details:
        fail(f"run {found.id} has no finished explanation of image {image}")
    detail = details[0]
    row = detail.explanation
    console.print(f"[bold]image {image}[/] of run {found.id} ({found.name}): {detail.image.source}")
    console.print(
        f"true {detail.label_name(row.true_label)}, predicted {detail.label_name(row.predicted_label)} "
        f"({'correct' if row.correct else 'wrong' if row.correct is False else 'no true label'}); "
        f"{row.n_segments} superpixels, attempts {row.attempts}"
    )
    console.print(faithfulness_line(row), markup=False, highlight=False)
    show_table(console, "probabilities", ["class", "probability"],
               [[detail.label_name(label), p] for label, p in enumerate(row.probabilities)])
    for label, weights in detail.weights.items():
        order = sorted(range(len(weights)), key=lambda s: -abs(weights[s]))
        show_table(console, f"weights for {detail.label_name(label)}", ["superpixel", "weight", "area (px)"],
                   [[segment, f"{weights[segment]:+.4f}", detail.areas[segment]] for segment in order])


def faithfulness_line(row) -> str:
    """How far the explanation's ranking is what the model uses; R^2 is only how well the linear fit matches."""
    if row.insertion_auc is None:  # made before the fixed reference: its deletion AUC used the run's own fill
        return f"deletion AUC {row.deletion_auc:.4f} (against the run's own fill); surrogate R^2 {row.score:.4f}"
    stability = "" if row.stability is None else f", stability {row.stability:.2f} (top 5 across seeds)"
    return (
        f"faithfulness: deletion AUC {row.deletion_auc:.4f} (lower is better), insertion AUC {row.insertion_auc:.4f} "
        f"(higher is better){stability}; reference: {row.auc_reference}. Surrogate R^2 {row.score:.4f} "
        "(how well the linear fit matches the model near this image, not a quality figure)"
    )


STRATEGY_COLUMNS = ("rank", "label", "strategy", "size", "errors", "error_rate", "class_error_rate", "where",
                    "suspected", "typical")


@app.command()
def strategies(
    run: str = typer.Option(..., help="Run id or name."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json (json: every member)."),
) -> None:
    """Where the model looks, per predicted class: groups of explanations that look at the same place (spectral
    relevance analysis), suspected shortcuts first (a group whose error rate is well above its class's). The run is
    audited first if it has changed since its last audit."""
    from audit.service import ensure_audit, group_members, group_views

    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        with console.status(f"auditing run {found.id}..."):
            ensure_audit(session, found)
        groups = group_views(session, found)
        if format is OutputFormat.json:
            rows = [{
                "label": group.class_name, "strategy": group.strategy, "size": group.size, "errors": group.errors,
                "error_rate": group.error_rate, "class_error_rate": group.class_error_rate, "where": group.location,
                "suspected": group.suspected,
                "members": [{"image_id": image_id, "source": source}
                            for image_id, source in group_members(session, found.id, group.label, group.strategy)],
            } for group in groups]
        else:
            rows = [{
                "rank": group.rank + 1, "label": group.class_name, "strategy": group.strategy, "size": group.size,
                "errors": group.errors, "error_rate": group.error_rate, "class_error_rate": group.class_error_rate,
                "where": group.location, "suspected": group.suspected,
                "typical": " ".join(str(image_id) for image_id, _ in group.typical),
            } for group in groups]
    if not groups:
        fail(f"run {found.id} has no explained images to group")
    write_rows(rows, STRATEGY_COLUMNS, format, title=f"strategies in run {found.id} ({found.name}), suspected first")


@app.command()
def maps(
    run: str = typer.Option(..., help="Run id or name."),
    out: Path = typer.Option(..., help="Folder for the PNG files (made if missing)."),
) -> None:
    """The run's mean maps as PNGs over the mean of their images: one per predicted class
    (class_<name>.png), one per confusion cell (cell_<true>_as_<predicted>.png), one per strategy group
    (strategy_<class>_<n>.png). Red: towards the class, blue: away."""
    from audit.service import class_maps, ensure_audit, group_views
    from report import pictures

    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        with console.status(f"auditing run {found.id}..."):
            ensure_audit(session, found)
        out.mkdir(parents=True, exist_ok=True)
        names = found.class_names
        written = 0
        for row in class_maps(session, found.id):
            if row.true_label is None:
                stem = f"class_{safe_name(names[row.predicted_label])}"
            else:
                stem = f"cell_{safe_name(names[row.true_label])}_as_{safe_name(names[row.predicted_label])}"
            (out / f"{stem}.png").write_bytes(pictures.map_picture(row.mean_map, row.mean_image))
            written += 1
        for group in group_views(session, found, typical=0):
            (out / f"strategy_{safe_name(group.class_name)}_{group.strategy}.png").write_bytes(
                pictures.map_picture(group.mean_map))
            written += 1
    console.print(f"{written} PNG files of run {found.id} in {out}")


COMPARE_CLASS_COLUMNS = ("class", "images", "map_correlation", "top_overlap")


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="First run (id or name)."),
    run_b: str = typer.Argument(..., help="Second run (id or name)."),
    every: bool = typer.Option(False, "--all", help="Every image both runs explained, not only those whose prediction changed."),
    by_class: bool = typer.Option(False, "--by-class", help="One row per class: how alike the two runs' maps are."),
    maps_out: Optional[Path] = typer.Option(None, "--maps", help="Also write per class A's mean map, B's, and B - A as PNGs here."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table | csv | json."),
) -> None:
    """Two runs on the same images (e.g. two models): the images whose prediction changed, with how alike the two
    explanations of the same label are (the true label; for an unlabelled image, the label both predict, else none):
    map_correlation, Spearman's rank correlation of the two maps; top_overlap, the overlap of their top tenths;
    --by-class for the mean per class."""
    from audit.compare import compare_runs
    from audit.service import ensure_audit

    with session_factory()() as session, failing_on(reads.RunNotFound):
        a, b = reads.find_run(session, run_a), reads.find_run(session, run_b)
        with console.status("auditing both runs (their maps)..."):
            ensure_audit(session, a)
            ensure_audit(session, b)
        per_image: dict[int, tuple] = {}

        def keep(image_id: int, correlation: float, overlap: float | None) -> None:
            per_image[image_id] = (correlation, overlap)

        classes = compare_runs(session, a, b, on_image=None if by_class else keep)
        if not by_class:
            changed = (reads.shared_predictions if every else reads.prediction_changes)(session, a.id, b.id)
    if maps_out is not None:
        from report.pictures import map_picture

        maps_out.mkdir(parents=True, exist_ok=True)
        for entry in classes:
            stem = safe_name(entry.class_name)
            scale = float(max(np.abs(entry.map_a).max(), np.abs(entry.map_b).max()))
            (maps_out / f"{stem}_a.png").write_bytes(map_picture(entry.map_a, scale=scale))
            (maps_out / f"{stem}_b.png").write_bytes(map_picture(entry.map_b, scale=scale))
            (maps_out / f"{stem}_b-minus-a.png").write_bytes(map_picture(entry.difference))
        console.print(f"{3 * len(classes)} PNG files in {maps_out}")
    if by_class:
        rows = [{"class": c.class_name, "images": c.images, "map_correlation": round(c.correlation, 4),
                 "top_overlap": None if np.isnan(c.overlap) else round(c.overlap, 4)} for c in classes]
        write_rows(rows, COMPARE_CLASS_COLUMNS, format, title=f"run {a.id} against run {b.id}, per class")
        return
    for row in changed:
        correlation, overlap = per_image.get(row["image_id"], (None, None))
        row["map_correlation"] = None if correlation is None else round(correlation, 4)
        row["top_overlap"] = None if overlap is None else round(overlap, 4)
    title = f"{'images of' if every else 'predictions that changed from'} run {a.id} {'and' if every else 'to'} run {b.id}"
    write_rows(changed, (*reads.CHANGE_COLUMNS, "map_correlation", "top_overlap"), format, title=title)


@app.command()
def export(
    run: str = typer.Option(..., help="Run id or name."),
    out: Path = typer.Option(..., help="Folder for the PNG files (made if missing)."),
    misclassified_only: bool = typer.Option(False, "--misclassified", help="Only the images the model got wrong."),
) -> None:
    """Three PNGs per explanation: the predicted label's positive superpixels outlined, only them (hide-rest),
    and a heatmap of every superpixel's weight with a colour bar; three more for the true label when it differs."""
    from rich.progress import track

    from report import pictures

    with session_factory()() as session, failing_on(reads.RunNotFound):
        found = reads.find_run(session, run)
        details = reads.explanation_details(session, found.id, misclassified_only=misclassified_only)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for detail in track(details, description="drawing", console=console):
        row = detail.explanation
        with failing_on(ReferenceFileError):  # an image stored by reference whose file is gone: one line
            image = pictures.drawable(detail.image.pixels())
        segments = decode_segments(row.segments)
        stem = (
            f"image{row.image_id:06d}_true-{safe_name(detail.label_name(row.true_label))}"
            f"_pred-{safe_name(detail.label_name(row.predicted_label))}"
        )
        views = [("predicted", row.predicted_label)]
        if row.true_label is not None and row.true_label != row.predicted_label and row.true_label in detail.weights:
            views.append(("true", row.true_label))
        for view, label in views:
            outlined, only = pictures.overlays(image, segments, detail.weights[label])
            (out / f"{stem}_{view}-outline.png").write_bytes(outlined)
            (out / f"{stem}_{view}-only.png").write_bytes(only)
            (out / f"{stem}_{view}-heatmap.png").write_bytes(pictures.heatmap(image, segments, detail.weights[label]))
            written += 3
    console.print(f"{written} PNG files for {len(details)} explanations in {out}")


@app.command()
def report(
    run: str = typer.Option(..., help="Run id or name."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="Where to write the HTML file."),
    against: Optional[str] = typer.Option(
        None, "--against", help="Another run on the same images (id or name), e.g. an older model: adds per class "
        "both runs' mean maps, their difference, and how alike their maps are."),
) -> None:
    """A self-contained HTML report around the run's audit: summary, confusion matrix, where the model looks (per
    class and per confusion cell), its strategies (suspected shortcuts first), evidence, and the most confident
    mistakes of each confusion cell. The runs are audited first if they have changed since their last audit."""
    from audit.service import ensure_audit
    from report.html import write_report

    with session_factory()() as session, failing_on(reads.RunNotFound, ReferenceFileError):
        found = reads.find_run(session, run)
        other = None if against is None else reads.find_run(session, against)
        for audited in [found] if other is None else [found, other]:
            with console.status(f"auditing run {audited.id}..."):
                ensure_audit(session, audited)
        with console.status("writing the report..."):
            written = write_report(session, found, output, against=other)
    console.print(written.line())


def safe_name(text: str) -> str:
    """A class name as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"
