"""The producer's writes: a run, its model file and its images, and what `resume` sends again. Functions take the
caller's session and never commit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.formats import encode_mask
from db.models import Image, ImageEvidence, ModelFile, Run, RunClass, RunImage, utcnow


def store_model_file(session: Session, sha256: str, content: bytes, metadata: dict) -> None:
    """Keep a model's bytes once per sha256 (a second run of the same model stores nothing, and reads nothing back)."""
    if session.scalar(select(ModelFile.sha256).where(ModelFile.sha256 == sha256)) is None:
        session.add(ModelFile(sha256=sha256, content=content, size=len(content), model_metadata=metadata))
        session.flush()

def create_run(
    session: Session, *, name: str, model_path: str, model_sha256: str, class_names: list[str], params: dict, source: str,
    value_range: list[float], preprocess: str | None = None, outputs: str = "probabilities",
    contract_notes: list[str] | None = None, skipped: list[dict] | None = None, runtime: str = "auto",
) -> Run:
    run = Run(
        name=name, model_path=model_path, model_sha256=model_sha256, class_names=class_names, params=params,
        source=source, status="enqueueing", started_at=utcnow(), value_range=list(value_range), preprocess=preprocess,
        outputs=outputs, contract_notes=contract_notes, skipped=skipped or None, runtime=runtime,
        next_position=0, finished_count=0, image_count=0,
    )
    run.classes = [RunClass(label=i, name=n) for i, n in enumerate(class_names)]
    session.add(run)
    session.flush()
    return run

def defer_durability(session: Session) -> None:
    """This transaction's commit does not wait for PostgreSQL's disk: for the producer's chunks of images, made
    durable by the run's last commit (PostgreSQL writes its log in order, so a commit that waits flushes every one
    before it; a crash before it leaves a run the producer discards or `resume` completes)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))

@dataclass
class NewImage:
    sha256: str
    png: bytes | None  # None: stored by reference, `path` is the file
    source: str
    width: int
    height: int
    channels: int
    true_label: int | None
    path: str | None = None

def add_images(session: Session, run: Run, images: list[NewImage]) -> tuple[list[int], list[int]]:
    """Add images to a run in a few bulk statements, storing each picture once by content hash.

    The run's positions follow the order in which its images are added (0, 1, ...: the order the window sends them
    in). Returns the ids added to the run (in order, without images the run already has) and the ids of images
    stored for the first time. An image known by reference only gets its PNG when a run stores it by copy.
    """
    first_seen: dict[str, NewImage] = {}
    for image in images:
        first_seen.setdefault(image.sha256, image)
    unique = list(first_seen.values())
    known = {}
    without_pixels = set()
    for sha, image_id, path in session.execute(
        select(Image.sha256, Image.id, Image.path).where(Image.sha256.in_([image.sha256 for image in unique]))
    ):
        known[sha] = image_id
        if path is not None:
            without_pixels.add(sha)
    for image in unique:  # a copy now keeps what was only a reference before
        if image.sha256 in without_pixels and image.png is not None:
            session.execute(update(Image).where(Image.id == known[image.sha256]).values(png=image.png, path=None))
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
                    "sha256": image.sha256, "png": image.png if image.png is not None else b"", "path": image.path,
                    "source": image.source, "width": image.width, "height": image.height, "channels": image.channels,
                    "created_at": utcnow(),
                    "true_label": None if image.true_label is None else run.class_names[image.true_label],
                }
                for image in fresh
            ],
        )
        for image_id, sha in rows:
            known[sha] = image_id
            created.append(image_id)
    start = session.scalar(select(Run.image_count).where(Run.id == run.id))
    new_members = [image for image in unique if known[image.sha256] not in in_run]
    members = [
        {"run_id": run.id, "image_id": known[image.sha256], "position": start + offset, "true_label": image.true_label}
        for offset, image in enumerate(new_members)
    ]
    if members:
        session.execute(insert(RunImage), members)
        session.execute(update(Run).where(Run.id == run.id).values(image_count=Run.image_count + len(members)))
    return [member["image_id"] for member in members], created


def store_evidence(session: Session, masks: dict[str, np.ndarray]) -> None:
    """Each image's evidence mask, by the image's content hash: stored once per image (given again, replaced)."""
    if not masks:
        return
    ids = dict(session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(list(masks)))).all())
    upsert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = upsert(ImageEvidence)
    session.execute(
        statement.on_conflict_do_update(index_elements=["image_id"],
                                        set_={"mask": statement.excluded.mask, "pixels": statement.excluded.pixels}),
        [{"image_id": ids[sha], "mask": encode_mask(mask), "pixels": int(mask.sum())} for sha, mask in masks.items()],
    )
