"""The workers' protocol: claim the one row of a (run, image), save its result or failure into it only while it is
unfinished, count it and mark the run done; the window (which images to send next); the input check's sample and
figures; what the sweeper looks for. Every query here is a primary-key or index lookup whose cost does not grow with
the run's size. Functions take the caller's session and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.formats import encode_segments
from db.models import FINISHED, Explanation, Image, ImageEvidence, Run, RunImage, SegmentWeight, utcnow
from db.reads import RunNotFound


class RunImageDoesNotExist(LookupError):
    """The (run, image) pair of a task is not in the database (the run was deleted, or never committed)."""

@dataclass
class Job:
    """What a task needs for one (run, image), and its row's state (None before its first claim)."""

    run_id: int
    image_id: int
    true_label: int | None
    png: bytes
    path: str | None  # an image stored by reference: its file, to be read and checked against `sha256`
    sha256: str
    height: int  # as stored (after --resize): the size a file stored by reference is scaled to
    width: int
    params: dict
    model_sha256: str
    value_range: list[float]
    preprocess: str | None
    outputs: str
    runtime: str  # the runtime the run asked for (models.runtimes.RUNTIMES)
    evidence: bytes | None  # the image's evidence mask (db.formats.encode_mask), when the user gave one
    explanation_id: int | None = None
    status: str | None = None
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

def _no_disk_wait(session: Session):
    """A column for the RETURNING of a statement the transaction makes anyway: on PostgreSQL it makes this
    transaction's commit not wait for the disk (set_config, local to the transaction; no round trip of its own, no
    fsync per image). Safe for a claim, a result and the window's records alike: what a database crash takes back
    from its last moments goes together (a result with its count), those rows are unfinished again (or the window's
    cursor is back before them), and the sweep (or the window) sends the images again: nothing is lost, nothing is
    counted twice."""
    if session.get_bind().dialect.name == "postgresql":
        return func.set_config("synchronous_commit", "off", True)
    return literal(None)

def _upsert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert

def read_job(session: Session, run_id: int, image_id: int) -> Job:
    """What the task needs and the state of its row, in one primary-key lookup (reading only: a worker may load its
    model next, and on SQLite a write transaction held that long would stop every other worker)."""
    row = session.execute(
        select(RunImage.true_label, Image.png, Image.path, Image.sha256, Image.height, Image.width, Run.params, Run.model_sha256,
               Run.value_range, Run.preprocess, Run.outputs, Run.runtime, ImageEvidence.mask, Explanation.id, Explanation.status,
               Explanation.attempts)
        .join(Image, Image.id == RunImage.image_id)
        .outerjoin(ImageEvidence, ImageEvidence.image_id == RunImage.image_id)
        .join(Run, Run.id == RunImage.run_id)
        .outerjoin(Explanation, (Explanation.run_id == RunImage.run_id) & (Explanation.image_id == RunImage.image_id))
        .where(RunImage.run_id == run_id, RunImage.image_id == image_id)
    ).first()
    if row is None:
        raise RunImageDoesNotExist(f"image {image_id} is not part of run {run_id}")
    return Job(run_id, image_id, *row[:-3], explanation_id=row[-3], status=row[-2], attempts=row[-1] or 0)

def claim(session: Session, job: Job, host: str) -> Job:
    """Make or take the one row of (run, image), counting this delivery as an attempt; the job with its row's state.

    A finished row is left alone (a redelivered task then does nothing); any other row (queued by the window, or
    running in a delivery that died) gets attempts + 1, so a poison image that kills its worker every time is seen
    coming back. One statement.
    """
    now = utcnow()
    statement = _upsert(session)(Explanation).values(
        run_id=job.run_id, image_id=job.image_id, status="running", attempts=1, true_label=job.true_label,
        worker_host=host, updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["run_id", "image_id"],
        set_={"attempts": Explanation.attempts + 1, "status": "running", "true_label": job.true_label,
              "worker_host": host, "updated_at": now},
        where=Explanation.status.not_in(FINISHED),
    ).returning(Explanation.id, Explanation.status, Explanation.attempts, _no_disk_wait(session))
    row = session.execute(statement).first()
    if row is None:  # finished meanwhile: the conditional update did nothing
        row = session.execute(
            select(Explanation.id, Explanation.status, Explanation.attempts).where(
                Explanation.run_id == job.run_id, Explanation.image_id == job.image_id
            )
        ).one()
    job.explanation_id, job.status, job.attempts = row[:3]
    return job

def save_explanation(
    session: Session, job: Job, result, host: str, *, audited: dict, maps_s: float | None = None,
    runtime: str | None = None,
) -> bool:
    """Write an engine result (worker.engine.Explanation) and the runtime whose predictions it used (a worker's always
    says; None for a result of another predict function), the audit columns the caller made of it (`audited`: its
    maps and, against the image's evidence, pointing: audit.maps.audit_columns; `maps_s`, the seconds that took, is
    kept in the row's timings) and its segment weights into the job's row; False, writing nothing, if the row was
    finished meanwhile.

    Two deliveries of one image can run at once (a redelivery after a lost connection): the row is
    updated only while unfinished, so the later one finds it finished (on PostgreSQL it waits for the
    earlier one's row lock, then re-reads) and writes no second set of weights.
    """
    predicted = result.predicted_label
    timings = result.timings if maps_s is None else {**result.timings, "maps_s": maps_s}
    saved = _finish_row(
        session, job, host,
        status="ok", error=None, predicted_label=predicted,
        confidence=float(result.probabilities[predicted]),
        probabilities=[float(p) for p in result.probabilities],
        correct=None if job.true_label is None else predicted == job.true_label,
        score=result.labels[predicted].score, deletion_auc=result.deletion_auc, insertion_auc=result.insertion_auc,
        auc_reference=result.faithfulness_reference, stability=result.stability, n_segments=result.n_segments,
        segments=encode_segments(result.segments), timings={k: round(v, 6) for k, v in timings.items()},
        samples_used=result.sampling.samples, model_calls=result.sampling.model_calls,
        sampling_stop=result.sampling.stop, runtime=runtime, **audited,
    )
    if not saved:
        return False
    areas = result.segment_areas()
    session.execute(  # one multi-row statement
        insert(SegmentWeight).values([
            {"explanation_id": job.explanation_id, "label": label, "segment": s, "weight": float(w), "area": int(areas[s])}
            for label, explained in result.labels.items()
            for s, w in enumerate(explained.weights)
        ])
    )
    count_finished(session, job.run_id)
    return True

def save_failure(session: Session, job: Job, error: str, host: str) -> bool:
    """Mark the job's row failed with the reason; False if another delivery finished it meanwhile."""
    if not _finish_row(session, job, host, status="failed", error=error[:2000]):
        return False
    count_finished(session, job.run_id)
    return True

def _finish_row(session: Session, job: Job, host: str, **values) -> bool:
    """Write `values` into the job's row while it is unfinished; False, writing nothing, if it was finished."""
    return session.execute(
        update(Explanation)
        .where(Explanation.id == job.explanation_id, Explanation.status.not_in(FINISHED))
        .values(**values, worker_host=host, updated_at=utcnow())
        .returning(Explanation.id, _no_disk_wait(session))
        .execution_options(synchronize_session=False)
    ).first() is not None

def count_finished(session: Session, run_id: int) -> None:
    """One more finished image of the run, and the run done if that was the last: one statement on the run's row,
    in the same transaction as the result. Its row lock orders two workers finishing the last two images at once,
    so exactly one of them marks the run done."""
    last = and_(Run.status == "running", Run.finished_count + 1 >= Run.image_count)
    session.execute(
        update(Run).where(Run.id == run_id).values(
            finished_count=Run.finished_count + 1,
            status=case((last, "done"), else_=Run.status),
            finished_at=case((last, utcnow()), else_=Run.finished_at),
        ).execution_options(synchronize_session=False)
    )

def finish_run_if_complete(session: Session, run_id: int) -> bool:
    """Mark a running run done if every image has a finished result (the producer, once it has stored them all, in
    case the workers were faster); True if this call did it."""
    marked = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.finished_count >= Run.image_count)
        .values(status="done", finished_at=utcnow())
    )
    return marked.rowcount > 0

def input_check_sample(session: Session, run_id: int, image_ids: list[int]) -> tuple[Run, list[tuple]]:
    """The run and the images its input check looks at, in order, with their true labels."""
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id}")
    rows = {
        image.id: (image, label)
        for image, label in session.execute(
            select(Image, RunImage.true_label)
            .join(RunImage, Image.id == RunImage.image_id)
            .where(RunImage.run_id == run_id, RunImage.image_id.in_(image_ids))
        )
    }
    return run, [rows[image_id] for image_id in image_ids if image_id in rows]

def save_input_check(session: Session, run_id: int, check: dict) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(input_check=check))

# --- the window: the database holds the job, the broker a bounded window of it (worker.window) ----------------------

@dataclass
class Feedable:
    run_id: int
    next_position: int
    stored: int  # images stored so far (the producer may still be storing)
    finished: int  # images with a finished result: next_position - finished were sent and are not done yet


def runs_to_feed(session: Session) -> list[Feedable]:
    """Runs being stored or running that have images not yet sent, oldest first."""
    return [
        Feedable(*row)
        for row in session.execute(
            select(Run.id, Run.next_position, Run.image_count, Run.finished_count)
            .where(Run.status.in_(("enqueueing", "running")), Run.next_position < Run.image_count)
            .order_by(Run.id)
        )
    ]


def images_at(session: Session, run_id: int, start: int, count: int) -> list[int]:
    """The images at positions start .. start + count - 1 of the run, in order (an index range scan)."""
    return list(session.scalars(
        select(RunImage.image_id)
        .where(RunImage.run_id == run_id, RunImage.position >= start, RunImage.position < start + count)
        .order_by(RunImage.position)
    ))


def take_for_sending(session: Session, feedable: Feedable, image_ids: list[int]) -> bool:
    """Move the run's cursor past these images and record them as queued, unless another sender moved it first
    (then False, nothing written). Commit before sending: an image recorded and not sent is found by the sweep."""
    moved = session.execute(
        update(Run)
        .where(Run.id == feedable.run_id, Run.next_position == feedable.next_position)
        .values(next_position=feedable.next_position + len(image_ids))
        .returning(Run.id, _no_disk_wait(session))
        .execution_options(synchronize_session=False)
    ).first()
    if moved is None:
        return False
    now = utcnow()
    statement = _upsert(session)(Explanation).values([
        {"run_id": feedable.run_id, "image_id": image_id, "status": "queued", "attempts": 0, "updated_at": now}
        for image_id in image_ids
    ])
    session.execute(statement.on_conflict_do_nothing(index_elements=["run_id", "image_id"]))
    return True


def sent_unfinished(
    session: Session, before: datetime | None = None, run_id: int | None = None,
) -> list[tuple[int, int]]:
    """(run, image) of every image sent and not finished (queued, or claimed by a worker) in a run that is being
    stored or running, through the partial index of unfinished rows: at most the window and the running tasks.
    `before`: only rows not touched since then (a task sent a moment ago may not have reached the broker's lists).
    `run_id`: that run's, whatever its status (what `resume` sends again)."""
    query = (
        select(Explanation.run_id, Explanation.image_id)
        .where(Explanation.status.not_in(FINISHED))
        .order_by(Explanation.run_id, Explanation.id)
    )
    if run_id is None:
        query = query.join(Run, Run.id == Explanation.run_id).where(Run.status.in_(("enqueueing", "running")))
    else:
        query = query.where(Explanation.run_id == run_id)
    if before is not None:
        query = query.where(Explanation.updated_at < before)
    return [(run_id, image_id) for run_id, image_id in session.execute(query)]


def runs_without_input_check(session: Session) -> list[int]:
    """Running (or storing) runs whose input check has no result yet."""
    return list(session.scalars(
        select(Run.id).where(Run.status.in_(("enqueueing", "running")), Run.input_check.is_(None)).order_by(Run.id)
    ))
