"""A migrated database of each kind per test, and a run to work on."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import sessionmaker

from audit.maps import audit_columns
from core import images
from db import jobs, runs
from db.migrate import upgrade
from db.session import make_engine
from tests.services import empty_database


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request, tmp_path):
    with empty_database(request.param, tmp_path) as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            yield sessionmaker(engine, expire_on_commit=False)
        finally:
            engine.dispose()


def new_image(seed: int, label: int | None) -> runs.NewImage:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return runs.NewImage(images.pixels_sha256(pixels), images.png_bytes(pixels), f"image-{seed}.png", 8, 8, 3, label)


def claimed(session, run_id: int, image_id: int, host: str) -> jobs.Job:
    """A worker's claim of (run, image), as the task makes it."""
    return jobs.claim(session, jobs.read_job(session, run_id, image_id), host)


def save_result(session, job: jobs.Job, result, host: str) -> bool:
    """An engine result saved as the task saves it, with the audit's columns made of it first."""
    audited = audit_columns(result, job.true_label, job.evidence)
    return jobs.save_explanation(session, job, result, host, audited=audited)


def image_ids(sessions, run_id: int) -> list[int]:
    with sessions() as session:
        return jobs.images_at(session, run_id, 0, 1000)


@pytest.fixture
def run(sessions):
    """A running run of three images (labels 0, 1 and none) of a stored model."""
    with sessions() as session:
        runs.store_model_file(session, "a" * 64, b"model", {"class_names": ["cat", "dog"]})
        run = runs.create_run(
            session, name="cats", model_path="m.keras", model_sha256="a" * 64, class_names=["cat", "dog"],
            params={"num_samples": 10}, source="test", value_range=[0.0, 1.0],
        )
        runs.add_images(session, run, [new_image(0, 0), new_image(1, 1), new_image(2, None)])
        run.status = "running"
        session.commit()
        return run.id
