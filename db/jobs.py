"""The workers' protocol: claim the one row of a (run, image), save its result or failure into it only while it is
unfinished, mark the run done; the input check's sample and figures; what the sweeper looks for. Functions take
the caller's session and never commit."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import FINISHED, Explanation, Image, Run, RunImage, SegmentWeight, encode_segments, utcnow
from db.reads import RunNotFound


class RunImageDoesNotExist(LookupError):
    """The (run, image) pair of a task is not in the database (the run was deleted, or never committed)."""

@dataclass
class Job:
    """What a task needs for one (run, image), read in the same transaction that claims its row."""

    explanation_id: int
    status: str
    attempts: int
    true_label: int | None
    png: bytes
    params: dict
    model_sha256: str
    value_range: list[float]
    preprocess: str | None
    outputs: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

def _upsert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert

def claim_explanation(session: Session, run_id: int, image_id: int, host: str) -> Job:
    """Read the job and make or take the one row of (run, image), counting this delivery as an attempt.

    A finished row is left alone (a redelivered task then does nothing); any other row gets
    attempts + 1, so a poison image that kills its worker every time is seen coming back.
    Two statements: a task's database work is kept to few round trips, as workers compete for the cores.
    """
    job = session.execute(
        select(RunImage.true_label, Image.png, Run.params, Run.model_sha256, Run.value_range, Run.preprocess, Run.outputs)
        .join(Image, Image.id == RunImage.image_id)
        .join(Run, Run.id == RunImage.run_id)
        .where(RunImage.run_id == run_id, RunImage.image_id == image_id)
    ).first()
    if job is None:
        raise RunImageDoesNotExist(f"image {image_id} is not part of run {run_id}")
    if session.get_bind().dialect.name == "postgresql":
        # A claim lost in a database crash only loses one count of attempts, so it need not wait for
        # the disk; results are committed durably. Saves an fsync per image.
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    now = utcnow()
    statement = _upsert(session)(Explanation).values(
        run_id=run_id, image_id=image_id, status="running", attempts=1, true_label=job.true_label,
        worker_host=host, updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["run_id", "image_id"],
        set_={"attempts": Explanation.attempts + 1, "status": "running", "worker_host": host, "updated_at": now},
        where=Explanation.status.not_in(FINISHED),
    ).returning(Explanation.id, Explanation.status, Explanation.attempts)
    row = session.execute(statement).first()
    if row is None:  # finished already: the conditional update did nothing
        row = session.execute(
            select(Explanation.id, Explanation.status, Explanation.attempts).where(
                Explanation.run_id == run_id, Explanation.image_id == image_id
            )
        ).one()
    return Job(*row, *job)

def save_explanation(session: Session, job: Job, result, host: str) -> bool:
    """Write an engine result (worker.engine.Explanation) and its segment weights into the job's row;
    False, writing nothing, if the row was finished meanwhile.

    Two deliveries of one image can run at once (a redelivery after a lost connection): the row is
    updated only while unfinished, so the later one finds it finished (on PostgreSQL it waits for the
    earlier one's row lock, then re-reads) and writes no second set of weights.
    """
    predicted = result.predicted_label
    saved = session.execute(
        update(Explanation)
        .where(Explanation.id == job.explanation_id, Explanation.status.not_in(FINISHED))
        .values(
            status="ok", error=None, predicted_label=predicted,
            confidence=float(result.probabilities[predicted]),
            probabilities=[float(p) for p in result.probabilities],
            correct=None if job.true_label is None else predicted == job.true_label,
            score=result.labels[predicted].score, deletion_auc=result.deletion_auc, insertion_auc=result.insertion_auc,
            auc_reference=result.faithfulness_reference, stability=result.stability, n_segments=result.n_segments,
            segments=encode_segments(result.segments), timings={k: round(v, 6) for k, v in result.timings.items()},
            samples_used=result.sampling.samples, model_calls=result.sampling.model_calls,
            sampling_stop=result.sampling.stop,
            worker_host=host, updated_at=utcnow(),
        )
    )
    if saved.rowcount == 0:
        return False
    areas = result.segment_areas()
    session.execute(
        insert(SegmentWeight),
        [
            {"explanation_id": job.explanation_id, "label": label, "segment": s, "weight": float(w), "area": int(areas[s])}
            for label, explained in result.labels.items()
            for s, w in enumerate(explained.weights)
        ],
    )
    return True

def save_failure(session: Session, job: Job, error: str, host: str) -> bool:
    """Mark the job's row failed with the reason; False if another delivery finished it meanwhile."""
    saved = session.execute(
        update(Explanation)
        .where(Explanation.id == job.explanation_id, Explanation.status.not_in(FINISHED))
        .values(status="failed", error=error[:2000], worker_host=host, updated_at=utcnow())
    )
    return saved.rowcount > 0

def finish_run_if_complete(session: Session, run_id: int) -> bool:
    """Mark a running run done once every image has a finished explanation; True if this call did it.

    One statement that counts committed rows: call it after committing a result, so that of two
    workers finishing the last two images at once, the later one sees both.
    """
    finished = (
        select(func.count())
        .select_from(Explanation)
        .where(Explanation.run_id == run_id, Explanation.status.in_(FINISHED))
        .scalar_subquery()
    )
    marked = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.image_count <= finished)
        .values(status="done", finished_at=utcnow())
    )
    return marked.rowcount > 0

def input_check_sample(session: Session, run_id: int, image_ids: list[int]) -> tuple[Run, list[tuple[bytes, int | None]]]:
    """The run and the (PNG, true label) of the images its input check looks at, in the given order."""
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id}")
    rows = {
        image_id: (png, label)
        for image_id, png, label in session.execute(
            select(RunImage.image_id, Image.png, RunImage.true_label)
            .join(Image, Image.id == RunImage.image_id)
            .where(RunImage.run_id == run_id, RunImage.image_id.in_(image_ids))
        )
    }
    return run, [rows[image_id] for image_id in image_ids if image_id in rows]

def save_input_check(session: Session, run_id: int, check: dict) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(input_check=check))

def unfinished_images_of_running_runs(session: Session) -> list[tuple[int, int]]:
    """(run, image) of every image without a finished result in a run whose tasks were all sent."""
    finished = select(Explanation.id).where(
        Explanation.run_id == RunImage.run_id, Explanation.image_id == RunImage.image_id,
        Explanation.status.in_(FINISHED),
    )
    return [
        (run_id, image_id)
        for run_id, image_id in session.execute(
            select(RunImage.run_id, RunImage.image_id)
            .join(Run, Run.id == RunImage.run_id)
            .where(Run.status == "running", ~finished.exists())
            .order_by(RunImage.run_id, RunImage.position)
        )
    ]
