"""Every query of the project, as functions that take the caller's session (they never commit)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import case, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Explanation, Image, ModelFile, Run, RunClass, RunImage, SegmentWeight, utcnow

FINISHED = ("ok", "failed")


class RunNotFound(LookupError):
    """No run has this id or name."""


class RunImageDoesNotExist(LookupError):
    """The (run, image) pair of a task is not in the database (the run was deleted, or never committed)."""


# --- models and runs ---------------------------------------------------------------------------------


def store_model_file(session: Session, sha256: str, content: bytes, metadata: dict) -> None:
    """Keep a model's bytes once per sha256 (a second run of the same model stores nothing)."""
    if session.get(ModelFile, sha256) is None:
        session.add(ModelFile(sha256=sha256, content=content, size=len(content), model_metadata=metadata))
        session.flush()


def create_run(
    session: Session, *, name: str, model_path: str, model_sha256: str, class_names: list[str], params: dict, source: str,
    value_range: list[float], preprocess: str | None = None, outputs: str = "probabilities",
    contract_notes: list[str] | None = None, skipped: list[dict] | None = None,
) -> Run:
    run = Run(
        name=name, model_path=model_path, model_sha256=model_sha256, class_names=class_names, params=params,
        source=source, status="enqueueing", started_at=utcnow(), value_range=list(value_range), preprocess=preprocess,
        outputs=outputs, contract_notes=contract_notes, skipped=skipped or None,
    )
    run.classes = [RunClass(label=i, name=n) for i, n in enumerate(class_names)]
    session.add(run)
    session.flush()
    return run


def find_run(session: Session, ref: str | int) -> Run:
    """A run by id, or by name (the newest of that name)."""
    ref = str(ref)
    run = session.get(Run, int(ref)) if ref.isdigit() else None
    if run is None:
        run = session.scalars(select(Run).where(Run.name == ref).order_by(Run.id.desc()).limit(1)).first()
    if run is None:
        raise RunNotFound(f"no run with id or name {ref!r}")
    return run


def list_runs(session: Session) -> list[tuple[Run, "RunCounts"]]:
    runs = session.scalars(select(Run).order_by(Run.id)).all()
    return [(run, run_counts(session, run.id)) for run in runs]


# --- images ------------------------------------------------------------------------------------------


@dataclass
class NewImage:
    sha256: str
    png: bytes
    source: str
    width: int
    height: int
    channels: int
    true_label: int | None


def add_images(session: Session, run: Run, images: list[tuple[int, NewImage]]) -> tuple[list[int], list[int]]:
    """Add images to a run in a few bulk statements, storing each picture once by content hash.

    `images` are (position in the run, image) pairs. Returns the ids added to the run (in order, without
    images the run already has) and the ids of images stored for the first time.
    """
    first_seen: dict[str, tuple[int, NewImage]] = {}
    for position, image in images:
        first_seen.setdefault(image.sha256, (position, image))
    unique = [image for _, image in first_seen.values()]
    known = {
        sha: image_id
        for sha, image_id in session.execute(
            select(Image.sha256, Image.id).where(Image.sha256.in_([image.sha256 for image in unique]))
        )
    }
    in_run = set(
        session.scalars(select(RunImage.image_id).where(RunImage.run_id == run.id, RunImage.image_id.in_(known.values())))
    )
    fresh = [image for image in unique if image.sha256 not in known]
    created = []
    if fresh:
        rows = session.execute(
            insert(Image).returning(Image.id, Image.sha256, sort_by_parameter_order=True),
            [
                {
                    "sha256": image.sha256, "png": image.png, "source": image.source, "width": image.width,
                    "height": image.height, "channels": image.channels, "created_at": utcnow(),
                    "true_label": None if image.true_label is None else run.class_names[image.true_label],
                }
                for image in fresh
            ],
        )
        for image_id, sha in rows:
            known[sha] = image_id
            created.append(image_id)
    members = [
        {"run_id": run.id, "image_id": known[image.sha256], "position": position, "true_label": image.true_label}
        for position, image in first_seen.values()
        if known[image.sha256] not in in_run
    ]
    if members:
        session.execute(insert(RunImage), members)
        session.execute(update(Run).where(Run.id == run.id).values(image_count=Run.image_count + len(members)))
    return [member["image_id"] for member in members], created


def run_labels(session: Session, run_id: int) -> list[tuple[int, int | None]]:
    """(image id, true label) of every image of the run, in its order."""
    return [
        (image_id, label)
        for image_id, label in session.execute(
            select(RunImage.image_id, RunImage.true_label).where(RunImage.run_id == run_id).order_by(RunImage.position)
        )
    ]


def images_without_result(session: Session, run_id: int) -> list[int]:
    """Images of the run with no finished (ok or failed) explanation: what `resume` sends again."""
    finished = select(Explanation.image_id).where(Explanation.run_id == run_id, Explanation.status.in_(FINISHED))
    return list(
        session.scalars(
            select(RunImage.image_id)
            .where(RunImage.run_id == run_id, RunImage.image_id.not_in(finished))
            .order_by(RunImage.position)
        )
    )


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


# --- explanations ------------------------------------------------------------------------------------


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


def encode_segments(segments: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, segments=segments.astype(np.uint16))
    return buffer.getvalue()


def decode_segments(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob))["segments"].astype(np.int32)


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


# --- progress and results ----------------------------------------------------------------------------


@dataclass
class RunCounts:
    total: int
    ok: int
    failed: int
    correct: int
    labelled: int  # explained images with a true label: accuracy is over these alone

    @property
    def finished(self) -> int:
        return self.ok + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.finished

    @property
    def misclassified(self) -> int:
        return self.labelled - self.correct

    @property
    def accuracy(self) -> float | None:
        """Over the explained images that have a true label; None when none has."""
        return self.correct / self.labelled if self.labelled else None


def run_counts(session: Session, run_id: int) -> RunCounts:
    total = session.scalar(select(func.count()).select_from(RunImage).where(RunImage.run_id == run_id)) or 0
    ok, failed, correct, labelled = session.execute(
        select(
            func.coalesce(func.sum(case((Explanation.status == "ok", 1), else_=0)), 0),
            func.coalesce(func.sum(case((Explanation.status == "failed", 1), else_=0)), 0),
            func.coalesce(func.sum(case((Explanation.correct.is_(True), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Explanation.correct.is_not(None), 1), else_=0)), 0),
        ).where(Explanation.run_id == run_id)
    ).one()
    return RunCounts(total, int(ok), int(failed), int(correct), int(labelled))


def faithfulness_means(session: Session, run_id: int) -> tuple[float, float, float | None] | None:
    """Mean deletion AUC, insertion AUC and stability of the run's explanations measured with the fixed
    reference (rows from before it are left out); None when there are none."""
    deletion, insertion, stability = session.execute(
        select(func.avg(Explanation.deletion_auc), func.avg(Explanation.insertion_auc), func.avg(Explanation.stability))
        .where(Explanation.run_id == run_id, Explanation.status == "ok", Explanation.insertion_auc.is_not(None))
    ).one()
    return None if deletion is None else (float(deletion), float(insertion), None if stability is None else float(stability))


def predicted_classes(session: Session, run_id: int) -> list[tuple[str, int]]:
    """How many explained images the model put in each class, most common first."""
    rows = session.execute(
        select(RunClass.name, func.count())
        .select_from(Explanation)
        .join(RunClass, (RunClass.run_id == Explanation.run_id) & (RunClass.label == Explanation.predicted_label))
        .where(Explanation.run_id == run_id, Explanation.status == "ok")
        .group_by(RunClass.label, RunClass.name)
        .order_by(func.count().desc(), RunClass.label)
    )
    return [(name, int(n)) for name, n in rows]


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


def run_wall_seconds(run: Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or utcnow()
    return (as_utc(end) - as_utc(run.started_at)).total_seconds()


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for the UTC values we stored
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


MISCLASSIFIED_COLUMNS = (
    "image_id", "source", "true_label", "predicted_label", "confidence", "deletion_auc", "insertion_auc", "stability",
)


def misclassified(session: Session, run_id: int) -> list[dict]:
    """Rows of the `misclassifications` view for a run, most confident mistakes first."""
    rows = session.execute(
        text(
            f"SELECT {', '.join(MISCLASSIFIED_COLUMNS)} "
            "FROM misclassifications WHERE run_id = :run_id ORDER BY confidence DESC, image_id"
        ),
        {"run_id": run_id},
    )
    return [dict(row._mapping) for row in rows]


def confusion(session: Session, run_id: int) -> list[dict]:
    rows = session.execute(
        text("SELECT true_label, predicted_label, n FROM confusion WHERE run_id = :run_id ORDER BY true_label, predicted_label"),
        {"run_id": run_id},
    )
    return [dict(row._mapping) for row in rows]


# --- one explanation, comparisons, pictures ---------------------------------------------------------


@dataclass
class ExplanationDetail:
    """Everything about one explained image of a run: the row, its image, and weights per label."""

    run: Run
    explanation: Explanation
    image: Image
    weights: dict[int, np.ndarray]  # label -> weight per segment
    areas: np.ndarray  # pixel area per segment

    @property
    def class_names(self) -> list[str]:
        return self.run.class_names

    def label_name(self, label: int | None) -> str:
        return "-" if label is None else self.class_names[label]


def explanation_details(
    session: Session, run_id: int, *, image_id: int | None = None, misclassified_only: bool = False
) -> list[ExplanationDetail]:
    """Finished explanations of a run (one image, or the mistakes only), with their weights."""
    run = session.get(Run, run_id)
    query = (
        select(Explanation, Image)
        .join(Image, Image.id == Explanation.image_id)
        .where(Explanation.run_id == run_id, Explanation.status == "ok")
        .order_by(Explanation.image_id)
    )
    if image_id is not None:
        query = query.where(Explanation.image_id == image_id)
    if misclassified_only:
        query = query.where(Explanation.correct.is_(False))
    pairs = session.execute(query).all()
    weights: dict[int, dict[int, np.ndarray]] = {explanation.id: {} for explanation, _ in pairs}
    areas = {explanation.id: np.zeros(explanation.n_segments or 0, dtype=np.int64) for explanation, _ in pairs}
    sizes = {explanation.id: explanation.n_segments or 0 for explanation, _ in pairs}
    rows = session.execute(
        select(SegmentWeight.explanation_id, SegmentWeight.label, SegmentWeight.segment, SegmentWeight.weight,
               SegmentWeight.area)
        .where(SegmentWeight.explanation_id.in_(list(weights)))
    ) if weights else []
    for explanation_id, label, segment, weight, area in rows:
        weights[explanation_id].setdefault(label, np.zeros(sizes[explanation_id]))[segment] = weight
        areas[explanation_id][segment] = area
    return [
        ExplanationDetail(run, explanation, image, weights[explanation.id], areas[explanation.id])
        for explanation, image in pairs
    ]


def prediction_changes(session: Session, run_a: int, run_b: int) -> list[dict]:
    """Images explained in both runs whose predicted label differs (e.g. two models on one set)."""
    rows = session.execute(
        text(
            "SELECT a.image_id, i.source, ta.name AS true_label, pa.name AS predicted_a, "
            "a.confidence AS confidence_a, pb.name AS predicted_b, b.confidence AS confidence_b "
            "FROM explanations a "
            "JOIN explanations b ON b.image_id = a.image_id AND b.run_id = :run_b "
            "JOIN images i ON i.id = a.image_id "
            "JOIN run_classes pa ON pa.run_id = a.run_id AND pa.label = a.predicted_label "
            "JOIN run_classes pb ON pb.run_id = b.run_id AND pb.label = b.predicted_label "
            "LEFT JOIN run_classes ta ON ta.run_id = a.run_id AND ta.label = a.true_label "
            "WHERE a.run_id = :run_a AND a.status = 'ok' AND b.status = 'ok' AND pa.name <> pb.name "
            "ORDER BY a.image_id"
        ),
        {"run_a": run_a, "run_b": run_b},
    )
    return [dict(row._mapping) for row in rows]


CHANGE_COLUMNS = ("image_id", "source", "true_label", "predicted_a", "confidence_a", "predicted_b", "confidence_b")
