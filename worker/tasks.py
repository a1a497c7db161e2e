"""Thin tasks: take ids, load, call the engine, make the audit's maps, save. All logic lives in worker.engine,
audit.maps and db.jobs."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace

from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import numpy as np

from audit.maps import audit_columns
from core.images import stored_pixels
from core.settings import settings
from db import jobs, reads
from db.models import utcnow
from db.session import session_factory
from worker.celery import app
from worker.engine import ExplainParams, explain
from worker.engine.inputs import conform_image
from worker.input_check import CHECK_IMAGES, check_input as check_predictions
from worker.messages import CHECK_TASK, EXPLAIN_TASK
from worker.model_cache import classifier_for

logger = get_task_logger(__name__)


# The database went away (restart, network): retry with exponential backoff, the image is not at fault.
RETRY_WHILE_THE_DATABASE_IS_AWAY = dict(
    autoretry_for=(OperationalError,), retry_backoff=2, retry_backoff_max=settings.database_retry_max_s,
    retry_jitter=True, max_retries=12,
)


@app.task(name=EXPLAIN_TASK, bind=True, **RETRY_WHILE_THE_DATABASE_IS_AWAY)
def explain_image(self, run_id: int, image_id: int) -> str:
    """Explain one image of a run and upsert its result; a redelivery never makes a second row."""
    host = f"{socket.gethostname()}:{os.getpid()}"
    with session_factory()() as session:
        try:
            return _claim_explain_save(session, run_id, image_id, host)
        except SoftTimeLimitExceeded:
            # Struck while claiming or saving, not while explaining: nothing was stored. Acknowledging
            # would leave the image unfinished for good; requeued, the next delivery counts one more attempt.
            raise Reject("soft time limit struck outside the engine", requeue=True) from None


def _claim_explain_save(session: Session, run_id: int, image_id: int, host: str) -> str:
    """Two commits per image: the claim (the attempt counts even if this process dies while explaining), then the
    result with the run's count."""
    try:
        job = jobs.read_job(session, run_id, image_id)
    except jobs.RunImageDoesNotExist as missing:
        logger.warning("skipped: %s", missing)
        return "missing"
    if job.finished:  # a redelivery of a finished image: nothing to write
        session.rollback()
        return job.status
    classifier, error = None, None
    try:  # read before the claim writes (loading a model, or choosing its runtime, takes seconds)
        classifier = classifier_for(
            session, job.model_sha256, preprocess=job.preprocess, outputs=job.outputs, runtime=job.runtime,
            check_images=lambda model: check_images(session, run_id, job.value_range, model),
        )
    except OperationalError:
        raise
    except Exception as failure:  # a model the workers cannot load: every image of the run fails with the reason
        error = failure_reason(failure)
    job = jobs.claim(session, job, host)
    session.commit()
    if job.finished:
        return job.status

    if job.attempts > settings.max_attempts:
        error = f"gave up after {job.attempts - 1} attempts: the worker died or timed out every time"
    elif error is None:
        try:
            pixels = stored_pixels(job.png, job.path, job.sha256, (job.height, job.width))
            params = ExplainParams(**job.params)
            if params.batch_size is None:  # left to the device: the classifier's batch for it (larger on a GPU)
                params = replace(params, batch_size=classifier.batch_size)
            result = explain(
                pixels, classifier.predict, params, true_label=job.true_label, input_shape=classifier.input_shape,
                value_range=tuple(job.value_range),
            )
        except Exception as failure:  # the time limit, or this image's fault: store it, the run goes on
            error = failure_reason(failure)

    if error is None:
        started = time.perf_counter()
        audited = audit_columns(result, job.true_label, job.evidence)
        saved = jobs.save_explanation(session, job, result, host, audited=audited,
                                      maps_s=time.perf_counter() - started, runtime=classifier.runtime.name)
    else:
        logger.warning("run %s image %s failed: %s", run_id, image_id, error)
        saved = jobs.save_failure(session, job, error, host)
    session.commit()
    if not saved:  # another delivery of this image finished first; its result stands
        return "duplicate"
    return "ok" if error is None else "failed"


def check_images(session: Session, run_id: int, value_range, classifier) -> np.ndarray:
    """The input check's images (the run's first positions) as the run feeds them: what a runtime is checked
    against Keras on. An image that cannot be read or fed (a referenced file gone, a broken PNG) is left out: it
    fails on its own. Ends the session's read transaction: choosing a runtime takes seconds."""
    image_ids = jobs.images_at(session, run_id, 0, CHECK_IMAGES)
    _, sample = jobs.input_check_sample(session, run_id, image_ids)
    images = []
    for image, _ in sample:
        try:
            images.append(conform_image(image.pixels(), classifier.input_shape, tuple(value_range)))
        except Exception:  # whatever makes this image fail, it fails when explained, not here
            continue
    session.rollback()
    return np.array(images, np.float32).reshape(-1, *classifier.input_shape)


def failure_reason(failure: BaseException) -> str:
    """One line for the row: the soft time limit, even when a library wrapped it (TensorFlow re-raises an
    error met while binding a function's inputs as a TypeError that prints the whole batch), or else
    the error's type and first line."""
    cause = failure
    while cause is not None:
        if isinstance(cause, SoftTimeLimitExceeded):
            return f"time limit of {settings.task_soft_time_limit_s} s exceeded"
        cause = cause.__cause__ or cause.__context__
    first_line = next(iter(str(failure).strip().splitlines()), "")
    return f"{type(failure).__name__}: {first_line}"[:500]


@app.task(
    name=CHECK_TASK,
    # Advisory and quick: acknowledged on receipt, so an input that kills its worker is not checked forever.
    # `producer resume` sends it again if it never finished.
    acks_late=False,
    **RETRY_WHILE_THE_DATABASE_IS_AWAY,
)
def check_input(run_id: int, image_ids: list[int]) -> str:
    """Predict a sample of the run's images as the run feeds them, and store the figures and any warning."""
    with session_factory()() as session:
        try:
            run, sample = jobs.input_check_sample(session, run_id, image_ids)
        except reads.RunNotFound as missing:
            logger.warning("input check skipped: %s", missing)
            return "missing"
        try:
            images, labels = [image.pixels() for image, _ in sample], [label for _, label in sample]
            classifier = classifier_for(
                session, run.model_sha256, preprocess=run.preprocess, outputs=run.outputs, runtime=run.runtime,
                check_images=lambda model: check_images(session, run_id, run.value_range, model),
            )
            session.commit()
            check = check_predictions(
                images, labels, classifier.predict, value_range=run.value_range, input_shape=classifier.input_shape,
                class_names=run.class_names, model_path=run.model_path,
            )
            check["runtime"] = classifier.choice.as_dict()
        except OperationalError:
            raise
        except Exception as failure:  # the model cannot take these images at all: that is the finding
            check = {"images": len(sample), "warning": f"input check failed: {failure_reason(failure)}"}
        check["checked_at"] = utcnow().isoformat()
        if check["warning"]:
            logger.warning("run %s: %s", run_id, check["warning"])
        jobs.save_input_check(session, run_id, check)
        session.commit()
        return "warning" if check["warning"] else "ok"
