"""The producer's work as importable functions: choose the model, create the run, send one task per image.

The producer never imports TensorFlow: it reads the model archive's config as JSON and sends tasks by
name, so it starts fast and runs where TensorFlow is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import delete, exists
from sqlalchemy.orm import Session

from db import queries
from db.models import Image, Run, RunImage
from models.artifacts import ModelFileError, ModelMetadata, file_sha256, read_metadata, summarise_keras_file
from producer.sources import LoadedSource, SourceError
from worker.engine import ExplainParams


class EnqueueError(RuntimeError):
    """The run could not be created or sent; nothing of it is left behind."""


@dataclass
class ModelChoice:
    path: Path
    sha256: str
    content: bytes
    metadata: ModelMetadata


def demo_model_path(dataset: str) -> Path:
    from models.cli import default_model_path

    return default_model_path(dataset)


def ensure_demo_model(dataset: str, echo=print) -> Path:
    """The demo model for a built-in data set, trained first (in a subprocess) if it is missing."""
    path = demo_model_path(dataset)
    if not path.exists():
        echo(f"no demo model at {path}: training it (about half a minute)...")
        done = subprocess.run(
            [sys.executable, "-m", "models", "train", "--dataset", dataset, "--out", str(path)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise EnqueueError(f"training the demo model failed: {done.stderr.strip().splitlines()[-1:]}")
    return path


def choose_model(path: Path) -> ModelChoice:
    """Read and check a model file without running it: a Keras archive, no Lambda layer, an image input."""
    try:
        summary = summarise_keras_file(path)
    except ModelFileError as error:
        raise EnqueueError(str(error)) from None
    if summary.has_lambda:
        raise EnqueueError(f"{path.name} holds a Lambda layer (arbitrary Python code); refused, nothing was executed")
    content = path.read_bytes()
    sha256 = file_sha256(path)
    metadata = read_metadata(path)
    if metadata is not None and metadata.sha256 and metadata.sha256 != sha256:
        raise EnqueueError(f"{path.name} does not match its metadata (sha256 differs): the file was replaced")
    if metadata is None:
        if summary.input_shape is None or len(summary.input_shape) != 3 or None in summary.input_shape:
            raise EnqueueError(f"{path.name}: cannot tell its image input shape; add a metadata .json beside it")
        outputs = max(2, summary.outputs or 2)
        metadata = ModelMetadata(class_names=[str(i) for i in range(outputs)], input_shape=summary.input_shape)
    metadata.sha256 = sha256
    return ModelChoice(path, sha256, content, metadata)


def run_class_names(model: ModelChoice, source: LoadedSource) -> list[str]:
    """The run's class names, and each source label re-indexed to them (folders are matched by name)."""
    names = list(model.metadata.class_names)
    if source.class_names is None or source.class_names == names:
        return names
    generic = names == [str(i) for i in range(len(names))]
    if generic and len(source.class_names) <= len(names):
        # a model without class names: the folder names stand for its outputs, in sorted order
        return list(source.class_names) + names[len(source.class_names) :]
    unknown = [name for name in source.class_names if name not in names]
    if unknown:
        raise EnqueueError(f"source classes {unknown} are not among the model's classes {names}")
    for image in source.images:
        if image.true_label is not None:
            image.true_label = names.index(source.class_names[image.true_label])
    return names


def fit_to_model(model: ModelChoice, source: LoadedSource) -> int:
    """Resize the images whose size differs from the model's input (only when asked to); how many."""
    from producer.sources import resize

    height, width = model.metadata.input_shape[:2]
    resized = 0
    for i, image in enumerate(source.images):
        if image.pixels.shape[:2] != (height, width):
            source.images[i] = resize(image, height, width)
            resized += 1
    return resized


def check_images(model: ModelChoice, source: LoadedSource, class_names: list[str]) -> None:
    if not source.images:
        raise EnqueueError(f"{source.description} holds no images")
    height, width = model.metadata.input_shape[:2]
    for image in source.images:
        if image.pixels.shape[:2] != (height, width):
            h, w = image.pixels.shape[:2]
            raise EnqueueError(f"{image.source} is {h}x{w}, the model wants {height}x{width} (--resize scales it)")
        if image.true_label is not None and not 0 <= image.true_label < len(class_names):
            raise EnqueueError(f"{image.source}: label {image.true_label} is not one of {len(class_names)} classes")


def _metadata_dict(metadata: ModelMetadata) -> dict:
    from dataclasses import asdict

    return asdict(metadata)


def check_broker(app, timeout: float = 5.0) -> None:
    """Fail fast, before anything is stored, when no broker answers."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:
        raise EnqueueError(f"cannot reach the broker at {_safe_url(app.conf.broker_url)}: {error}") from None


def discard_run(session: Session, run_id: int, new_image_ids: list[int]) -> None:
    """Remove a run that could not be sent, and the images only it had brought."""
    session.execute(delete(Run).where(Run.id == run_id))
    if new_image_ids:
        session.execute(
            delete(Image).where(
                Image.id.in_(new_image_ids), ~exists().where(RunImage.image_id == Image.id)
            )
        )
    session.commit()


ENQUEUE_CHUNK = 32  # images stored and committed before their tasks go out: workers start early


def enqueue(
    session_factory, app, *, name: str | None, model: ModelChoice, source: LoadedSource, params: ExplainParams
) -> tuple[int, int]:
    """Create the run, store its images and send their tasks, chunk by chunk; all or nothing.

    Returns (run id, images sent). If anything fails on the way (the broker, the database, Ctrl-C),
    the run and the images only it brought are removed again; tasks already sent for it then find
    no run and do nothing.
    """
    from worker.celery import send_explain_tasks

    check_broker(app)
    class_names = run_class_names(model, source)
    check_images(model, source, class_names)
    with session_factory() as session:
        queries.store_model_file(session, model.sha256, model.content, _metadata_dict(model.metadata))
        run = queries.create_run(
            session, name=name or default_run_name(source), model_path=str(model.path.resolve()),
            model_sha256=model.sha256, class_names=class_names, params=params.to_dict(), source=source.description,
        )
        session.commit()
        run_id, sent, created = run.id, 0, []
        try:
            with app.producer_or_acquire() as producer:
                for start in range(0, len(source.images), ENQUEUE_CHUNK):
                    chunk = [image.as_new_image() for image in source.images[start : start + ENQUEUE_CHUNK]]
                    to_send, new = queries.add_images(session, run, chunk, start)
                    session.commit()
                    created += new
                    send_explain_tasks(app, run_id, to_send, producer)
                    sent += len(to_send)
            run.status = "running"
            session.commit()
            queries.finish_run_if_complete(session, run_id)  # in case the workers were faster than us
            session.commit()
        except BaseException as error:
            session.rollback()
            discard_run(session, run_id, created)
            if isinstance(error, Exception):
                raise EnqueueError(f"enqueueing failed, run {run_id} discarded: {error}") from None
            raise
    return run_id, sent


def resume(session_factory, app, run_ref: str) -> tuple[int, int]:
    """Send again every image of the run that has no finished result. Returns (run id, images sent)."""
    from worker.celery import send_explain_tasks

    check_broker(app)
    with session_factory() as session:
        run = queries.find_run(session, run_ref)
        missing = queries.images_without_result(session, run.id)
        if missing or run.status != "done":  # also completes a run whose producer died after sending
            run.status = "running"
            run.finished_at = None
            session.commit()
        send_explain_tasks(app, run.id, missing)
        queries.finish_run_if_complete(session, run.id)
        session.commit()
        return run.id, len(missing)


def default_run_name(source: LoadedSource) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{source.description.split()[0]}-{stamp}"


def _safe_url(url: str) -> str:
    """A broker URL without its password, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def wait_for_run(session_factory, run_id: int, on_progress, poll_s: float = 0.5) -> queries.RunCounts:
    """Poll the run's counts until every image is finished, calling on_progress(counts) each time."""
    while True:
        with session_factory() as session:
            counts = queries.run_counts(session, run_id)
        on_progress(counts)
        if counts.remaining == 0:
            return counts
        time.sleep(poll_s)


__all__ = ["EnqueueError", "SourceError", "choose_model", "enqueue", "ensure_demo_model", "resume", "wait_for_run"]
