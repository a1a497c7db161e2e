"""SQLAlchemy 2.0 typed models of runs, images, explanations and segment weights.

The schema itself is made by Alembic (`python -m db upgrade`), never by `create_all` at run time.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.images import stored_pixels


FINISHED = ("ok", "failed")  # an explanation's status once no delivery will change it
# Unfinished: "queued" (its task was sent, by the window), "running" (a worker claimed it). The few rows of a run that
# are neither waiting to be sent nor finished: the sweep reads them through a partial index.
UNFINISHED_ROWS = text("status NOT IN ('ok', 'failed')")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelFile(Base):
    """A model's `.keras` bytes, stored once by sha256 so that any worker can fetch it."""

    __tablename__ = "model_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    model_metadata: Mapped[dict] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """One explanation job: a model, its parameters, and the images it covers."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    model_path: Mapped[str] = mapped_column(Text)
    model_sha256: Mapped[str] = mapped_column(ForeignKey("model_files.sha256"))
    class_names: Mapped[list] = mapped_column(JSON)
    params: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="enqueueing")  # enqueueing | running | done
    # The window: images at positions below next_position have been sent to the broker (worker.window); the rest wait
    # in the database, so the broker never holds more of a run than MAX_QUEUED tasks.
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    # Images with a finished result, counted as each is saved: the run is done when it reaches image_count.
    finished_count: Mapped[int] = mapped_column(Integer, default=0)
    # The model's input contract for this run (models.contract): the workers feed the model by it.
    value_range: Mapped[list] = mapped_column(JSON)  # [low, high]; filled for every run (revision 0002)
    preprocess: Mapped[str | None] = mapped_column(String(40))
    outputs: Mapped[str] = mapped_column(String(20), default="probabilities")
    contract_notes: Mapped[list | None] = mapped_column(JSON)  # how each part of the contract was decided
    # The runtime asked for (models.runtimes.RUNTIMES); what `auto` chose, and why, is the input check's `runtime`.
    runtime: Mapped[str] = mapped_column(String(20), default="auto", server_default="keras")
    # The input check of its first images (worker.input_check): accuracy, spread, warning; None until done.
    input_check: Mapped[dict | None] = mapped_column(JSON)
    skipped: Mapped[list | None] = mapped_column(JSON)  # files left out with --skip-bad: [{source, reason}]
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    classes: Mapped[list["RunClass"]] = relationship(cascade="all, delete-orphan", order_by="RunClass.label")


class RunClass(Base):
    """A run's class names as rows, so plain SQL (in SQLite and PostgreSQL alike) can join label -> name."""

    __tablename__ = "run_classes"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Image(Base):
    """An image stored once by content hash: its PNG bytes, so results outlive the source files (`--images copy`),
    or only the path of a file every worker can read (`--images reference`; png is then empty)."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(Text)
    true_label: Mapped[str | None] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(Text)  # the file, for an image stored by reference
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def pixels(self) -> np.ndarray:
        """The stored pixels (uint8, height x width x channels), from the PNG or, stored by reference, the file
        (core.images.ReferenceFileError when it is gone or changed)."""
        return stored_pixels(self.png, self.path, self.sha256, (self.height, self.width))


class RunImage(Base):
    """Membership of an image in a run, with its true label (class index) in that run."""

    __tablename__ = "run_images"
    __table_args__ = (Index("ix_run_images_position", "run_id", "position", unique=True),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    true_label: Mapped[int | None] = mapped_column(Integer)


class Explanation(Base):
    """The result for one (run, image): exactly one row, whatever the deliveries."""

    __tablename__ = "explanations"
    __table_args__ = (
        UniqueConstraint("run_id", "image_id", name="uq_explanations_run_image"),
        Index("ix_explanations_unfinished", "run_id", "updated_at", sqlite_where=UNFINISHED_ROWS,
              postgresql_where=UNFINISHED_ROWS),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    status: Mapped[str] = mapped_column(String(20))  # queued | running | ok | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    predicted_label: Mapped[int | None] = mapped_column(Integer)
    true_label: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[list | None] = mapped_column(JSON)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    deletion_auc: Mapped[float | None] = mapped_column(Float)  # faithfulness: lower is better
    insertion_auc: Mapped[float | None] = mapped_column(Float)  # faithfulness: higher is better
    auc_reference: Mapped[str | None] = mapped_column(String(200))  # what both AUCs were measured against
    stability: Mapped[float | None] = mapped_column(Float)  # top-5 Jaccard across seeds (--stability K)
    # How the samples were drawn (worker.engine.Sampling): how many, the distinct masks the model predicted, and why
    # sampling stopped: "fixed", or with --num-samples auto "settled" or "cap".
    samples_used: Mapped[int | None] = mapped_column(Integer)
    model_calls: Mapped[int | None] = mapped_column(Integer)
    sampling_stop: Mapped[str | None] = mapped_column(String(16))
    n_segments: Mapped[int | None] = mapped_column(Integer)
    segments: Mapped[bytes | None] = mapped_column(LargeBinary)  # db.formats.encode_segments: the id per pixel
    timings: Mapped[dict | None] = mapped_column(JSON)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    runtime: Mapped[str | None] = mapped_column(String(20))  # what computed it: keras | openvino (empty: from before)
    # What the model looked at, on the run's common grid (audit.maps; stored as db.formats.encode_maps): the predicted
    # label's map, then the true label's when it differs; made at save time, or by the audit for rows from before.
    relevance: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Against the image's evidence (image_evidence), for the true label (the predicted one without): is the top
    # superpixel on it, and the share of the positive weight x area that lies on it. None without evidence.
    pointing: Mapped[bool | None] = mapped_column(Boolean)
    evidence_share: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    weights: Mapped[list["SegmentWeight"]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class SegmentWeight(Base):
    """One superpixel's weight for one explained label, and its area in pixels."""

    __tablename__ = "segment_weights"

    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment: Mapped[int] = mapped_column(Integer, primary_key=True)
    weight: Mapped[float] = mapped_column(Float)
    area: Mapped[int] = mapped_column(Integer)


class ImageEvidence(Base):
    """Where the user says the evidence of an image is (`--evidence` masks, `--boxes`): stored once per image."""

    __tablename__ = "image_evidence"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    mask: Mapped[bytes] = mapped_column(LargeBinary)  # db.formats.encode_mask: packed bits, height x width
    pixels: Mapped[int] = mapped_column(Integer)  # how many pixels are evidence


class RunAudit(Base):
    """The last audit of a run (audit.service): the grid its maps share, and what it covered."""

    __tablename__ = "run_audits"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    grid_height: Mapped[int] = mapped_column(Integer)
    grid_width: Mapped[int] = mapped_column(Integer)
    explanations: Mapped[int] = mapped_column(Integer)  # explained images it covered
    finished_count: Mapped[int] = mapped_column(Integer)  # the run's count then: a different count means stale
    details: Mapped[dict] = mapped_column(JSON)  # per class: groups chosen, the eigenvalues behind the choice
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClassMap(Base):
    """The mean map of the images predicted as a class (true_label None), or of one confusion cell."""

    __tablename__ = "class_maps"
    __table_args__ = (Index("ix_class_maps_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    true_label: Mapped[int | None] = mapped_column(Integer)
    predicted_label: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer)
    mean_map: Mapped[bytes] = mapped_column(LargeBinary)  # db.formats.encode_maps, one map
    mean_image: Mapped[bytes | None] = mapped_column(LargeBinary)  # PNG: the mean of a bounded sample of its images


class StrategyGroup(Base):
    """A group of explanations of one predicted class that look at the same place (audit.strategies)."""

    __tablename__ = "strategy_groups"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)  # the predicted class
    strategy: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 is the class's largest group
    size: Mapped[int] = mapped_column(Integer)
    labelled: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    error_rate: Mapped[float | None] = mapped_column(Float)  # over its labelled members
    class_error_rate: Mapped[float | None] = mapped_column(Float)
    location: Mapped[str] = mapped_column(String(40))  # where its mean map looks, in words
    suspected: Mapped[bool] = mapped_column(Boolean)  # error rate well above its class's: a candidate shortcut
    rank: Mapped[int] = mapped_column(Integer)  # order of the run's groups in the summary: suspected first
    mean_map: Mapped[bytes] = mapped_column(LargeBinary)  # db.formats.encode_maps, one map


class StrategyMember(Base):
    """Which group an explanation falls in, and how typical of it it is (distance to the group's mean map)."""

    __tablename__ = "strategy_members"
    __table_args__ = (Index("ix_strategy_members_group", "run_id", "label", "strategy", "distance"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column(Float)
