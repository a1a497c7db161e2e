"""What the commands, the report and the tests read: runs, counts, the views, one explanation with its weights,
comparisons. Functions take the caller's session and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import case, func, literal, select, text, union_all
from sqlalchemy.orm import Session

from db.models import Explanation, Image, Run, RunClass, RunImage, SegmentWeight, utcnow


class RunNotFound(LookupError):
    """No run has this id or name."""

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

@dataclass
class RunProgress:
    """Where a run stands, from its row and index lookups over its unfinished and failed rows only: cheap enough to
    poll on a run of a million images (RunCounts reads every result, for the accuracy)."""

    total: int
    finished: int
    failed: int
    queued: int
    running: int

    @property
    def remaining(self) -> int:
        return self.total - self.finished

    @property
    def ok(self) -> int:
        return self.finished - self.failed


@dataclass
class RunCounts(RunProgress):
    """Where a run stands and how right the model was: reads every result of the run (RunProgress does not)."""

    correct: int
    labelled: int  # explained images with a true label: accuracy is over these alone

    @property
    def misclassified(self) -> int:
        return self.labelled - self.correct

    @property
    def accuracy(self) -> float | None:
        """Over the explained images that have a true label; None when none has."""
        return self.correct / self.labelled if self.labelled else None

def run_counts(session: Session, run_id: int) -> RunCounts:
    total = session.scalar(select(func.count()).select_from(RunImage).where(RunImage.run_id == run_id)) or 0
    ok, failed, correct, labelled, queued, running = session.execute(
        select(
            *(func.coalesce(func.sum(case((condition, 1), else_=0)), 0) for condition in (
                Explanation.status == "ok", Explanation.status == "failed", Explanation.correct.is_(True),
                Explanation.correct.is_not(None), Explanation.status == "queued", Explanation.status == "running",
            ))
        ).where(Explanation.run_id == run_id)
    ).one()
    return RunCounts(total=total, finished=int(ok) + int(failed), failed=int(failed), queued=int(queued),
                     running=int(running), correct=int(correct), labelled=int(labelled))

def run_progress(session: Session, run_id: int) -> RunProgress:
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id}")
    counts = dict(session.execute(
        select(Explanation.status, func.count())
        .where(Explanation.run_id == run_id, Explanation.status.in_(("failed", "queued", "running")))
        .group_by(Explanation.status)
    ).all())
    return RunProgress(run.image_count, run.finished_count, counts.get("failed", 0), counts.get("queued", 0),
                       counts.get("running", 0))


def faithfulness_means(session: Session, run_id: int) -> tuple[float, float, float | None] | None:
    """Mean deletion AUC, insertion AUC and stability of the run's explanations measured with the fixed
    reference (rows from before it are left out); None when there are none."""
    deletion, insertion, stability = session.execute(
        select(func.avg(Explanation.deletion_auc), func.avg(Explanation.insertion_auc), func.avg(Explanation.stability))
        .where(Explanation.run_id == run_id, Explanation.status == "ok", Explanation.insertion_auc.is_not(None))
    ).one()
    return None if deletion is None else (float(deletion), float(insertion), None if stability is None else float(stability))

@dataclass
class SamplingSpread:
    """How many samples a run's explanations used (they differ with --num-samples auto)."""

    fewest: int
    median: float
    most: int
    mean_model_calls: float
    stops: dict[str, int]  # why sampling stopped: "settled", "cap" (or "fixed") -> explanations


def sampling_spread(session: Session, run_id: int) -> SamplingSpread | None:
    """The spread of samples used by the run's explanations; None when none recorded it. Counted in SQL, per number
    of samples and per stop, so that it reads a few rows however large the run."""
    recorded = (Explanation.run_id == run_id, Explanation.status == "ok", Explanation.samples_used.is_not(None))
    counts = session.execute(
        select(Explanation.samples_used, func.count()).where(*recorded)
        .group_by(Explanation.samples_used).order_by(Explanation.samples_used)
    ).all()
    if not counts:
        return None
    total = sum(count for _, count in counts)
    below, middle = 0, []  # the values at the sorted positions (total - 1) // 2 and total // 2, as np.median takes
    for value, count in counts:
        middle += [value] * sum(below <= position < below + count for position in {(total - 1) // 2, total // 2})
        below += count
    stops = dict(session.execute(select(Explanation.sampling_stop, func.count()).where(*recorded)
                                 .group_by(Explanation.sampling_stop)).all())
    mean_calls = session.scalar(select(func.avg(Explanation.model_calls)).where(*recorded))
    return SamplingSpread(int(counts[0][0]), float(np.mean(middle)), int(counts[-1][0]), float(mean_calls), stops)


def runtime_counts(session: Session, run_id: int) -> dict[str, int]:
    """How many of the run's explanations each runtime computed, most first (rows from before runtimes were
    recorded count as Keras, which computed them)."""
    runtime = func.coalesce(Explanation.runtime, "keras")
    rows = session.execute(
        select(runtime, func.count()).where(Explanation.run_id == run_id, Explanation.status == "ok")
        .group_by(runtime).order_by(func.count().desc())
    ).all()
    return {name: count for name, count in rows}


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

def misclassified(session: Session, run_id: int, limit: int | None = None) -> list[dict]:
    """Rows of the `misclassifications` view for a run, most confident mistakes first; the first `limit` only when
    given."""
    rows = session.execute(
        text(
            f"SELECT {', '.join(MISCLASSIFIED_COLUMNS)} "
            "FROM misclassifications WHERE run_id = :run_id ORDER BY confidence DESC, image_id"
            + ("" if limit is None else " LIMIT :limit")
        ),
        {"run_id": run_id, "limit": limit},
    )
    return [dict(row._mapping) for row in rows]

@dataclass
class ClassMistakes:
    """One class of a run and its mistakes both ways, over the explained images."""

    label: int
    images: int  # explained images whose true class it is
    predicted: int  # explained images the model put in it
    missed: int  # its images the model put in another class
    taken: int  # images of another class the model put in it

    @property
    def mistakes(self) -> int:
        return self.missed + self.taken


def classes_by_mistakes(session: Session, run_id: int, limit: int | None = None) -> list[ClassMistakes]:
    """The classes that have an explained image (as true or predicted class), most mistakes first (then most images,
    then by label: a run without true labels comes out most predicted first); the first `limit` only when given. One
    grouped pass over the run's results, whatever the number of classes."""
    ok = (Explanation.run_id == run_id) & (Explanation.status == "ok")
    wrong = func.sum(case((Explanation.correct.is_(False), 1), else_=0))
    nothing = literal(0)
    as_true = (select(Explanation.true_label.label("label"), func.count().label("images"), nothing.label("predicted"),
                      wrong.label("missed"), nothing.label("taken"))
               .where(ok, Explanation.true_label.is_not(None)).group_by(Explanation.true_label))
    as_predicted = (select(Explanation.predicted_label, nothing, func.count(), nothing, wrong)
                    .where(ok).group_by(Explanation.predicted_label))
    both = union_all(as_true, as_predicted).subquery()
    totals = [func.sum(both.c[name]) for name in ("images", "predicted", "missed", "taken")]
    query = (select(both.c.label, *totals).group_by(both.c.label)
             .order_by((totals[2] + totals[3]).desc(), (totals[0] + totals[1]).desc(), both.c.label))
    rows = session.execute(query if limit is None else query.limit(limit))
    return [ClassMistakes(int(label), *(int(n) for n in counts)) for label, *counts in rows]

def confusion(session: Session, run_id: int) -> list[dict]:
    rows = session.execute(
        text("SELECT true_label, predicted_label, n FROM confusion WHERE run_id = :run_id ORDER BY true_label, predicted_label"),
        {"run_id": run_id},
    )
    return [dict(row._mapping) for row in rows]

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
    return _shared(session, run_a, run_b, "AND pa.name <> pb.name ")


def shared_predictions(session: Session, run_a: int, run_b: int) -> list[dict]:
    """Every image explained in both runs, with both predictions."""
    return _shared(session, run_a, run_b, "")


def _shared(session: Session, run_a: int, run_b: int, condition: str) -> list[dict]:
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
            "WHERE a.run_id = :run_a AND a.status = 'ok' AND b.status = 'ok' " + condition +
            "ORDER BY a.image_id"
        ),
        {"run_a": run_a, "run_b": run_b},
    )
    return [dict(row._mapping) for row in rows]

CHANGE_COLUMNS = ("image_id", "source", "true_label", "predicted_a", "confidence_a", "predicted_b", "confidence_b")
