"""The producer's writes: a run, its model file and its images, and what `resume` sends again. Functions take the
caller's session and never commit."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db.models import FINISHED, Explanation, Image, ModelFile, Run, RunClass, RunImage, utcnow


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
