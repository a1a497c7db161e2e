"""The tasks' names and the functions that send them, apart from the Celery app module: the producer and the
sweeper send tasks by name, so neither imports the tasks (or TensorFlow), and nothing imports in a circle."""

from __future__ import annotations

from celery import Celery

EXPLAIN_TASK = "worker.tasks.explain_image"
CHECK_TASK = "worker.tasks.check_input"


def send_explain_tasks(celery_app: Celery, run_id: int, image_ids: list[int], producer=None) -> None:
    """One task per image, by name, over one connection."""
    with celery_app.producer_or_acquire(producer) as connection:
        for image_id in image_ids:
            celery_app.send_task(EXPLAIN_TASK, args=[run_id, image_id], producer=connection)


def send_input_check(celery_app: Celery, run_id: int, image_ids: list[int], producer=None) -> None:
    """The run's input check, by name: sent before the image tasks, so a worker takes it first."""
    with celery_app.producer_or_acquire(producer) as connection:
        celery_app.send_task(CHECK_TASK, args=[run_id, image_ids], producer=connection)


def send_input_check_again(celery_app: Celery, session, run_id: int) -> None:
    """The run's input check once more (`resume`, the sweeper), on the images it was first sent with: the run's first
    CHECK_IMAGES, which the producer stores first."""
    from db import jobs
    from worker.input_check import CHECK_IMAGES

    send_input_check(celery_app, run_id, jobs.images_at(session, run_id, 0, CHECK_IMAGES))
